"""Training the reductions (`imagesim reducer train`): PCA in numpy, the autoencoder in Keras."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from imagesim.errors import InvalidArgument, MissingExtra
from imagesim.pca import fit_pca, l2_normalise
from imagesim.reduction.reducer import Reducer, ReducerSpec


def train_pca(
    vectors: np.ndarray, dims: int, model_fingerprint: str, whiten: bool = False
) -> Reducer:
    """PCA in numpy: eigenvectors of the covariance of the L2-normalised vectors."""
    started = time.perf_counter()
    x = l2_normalise(vectors).astype(np.float64)
    n, input_dim = x.shape
    if dims >= input_dim or dims < 1 or n < 2:
        raise InvalidArgument(f"cannot reduce {n} {input_dim}-d vectors to {dims} dims")
    pca = fit_pca(x, dims)
    variances = np.clip(pca.variances, 1e-12, None)
    scale = np.sqrt(variances) if whiten else np.ones(dims)
    spec = ReducerSpec(
        method="pca",
        input_dim=input_dim,
        output_dim=dims,
        training_size=n,
        model_fingerprint=model_fingerprint,
        options={"whiten": whiten},
        metrics={
            "explained_variance": pca.explained_variance,
            "train_seconds": time.perf_counter() - started,
        },
    )
    arrays = {
        "mean": pca.mean.astype(np.float32),
        "components": pca.components.astype(np.float32),
        "scale": scale.astype(np.float32),
    }
    return Reducer(spec, arrays)


def train_autoencoder(
    vectors: np.ndarray,
    dims: int,
    model_fingerprint: str,
    hidden: int = 1024,
    epochs: int = 200,
    batch_size: int = 256,
    validation_split: float = 0.1,
    patience: int = 10,
    seed: int = 0,
    save_to: Path | None = None,
) -> Reducer:
    """A dense autoencoder in Keras: input -> hidden (relu) -> dims (linear) -> hidden (relu)
    -> input (linear), trained to reconstruct the L2-normalised, centred vectors with MSE.

    Why this shape: one hidden layer gives a non-linear code at modest cost (the 2048x1024
    layers hold most of the 5 M weights); the linear bottleneck keeps signs, so angular
    distance in the code space stays meaningful; centring removes the large direction every
    InceptionV3 vector shares. Validation split and early stopping (restoring the best
    weights) guard against over-fitting small data sets.
    """
    try:
        import keras
    except ImportError as exc:
        raise MissingExtra("the autoencoder needs Keras", "reduction") from exc

    started = time.perf_counter()
    x = l2_normalise(vectors)
    n, input_dim = x.shape
    if n < 10:
        raise InvalidArgument(f"need at least 10 vectors to train an autoencoder, not {n}")
    mean = x.mean(axis=0)
    centred = (x - mean).astype(np.float32)
    scale = float(centred.std()) or 1.0
    data = centred / scale
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((input_dim,))
    h = keras.layers.Dense(hidden, activation="relu", name="encoder_hidden")(inputs)
    code = keras.layers.Dense(dims, name="code")(h)
    h2 = keras.layers.Dense(hidden, activation="relu", name="decoder_hidden")(code)
    outputs = keras.layers.Dense(input_dim, name="reconstruction")(h2)
    model = keras.Model(inputs, outputs, name="imagesim_autoencoder")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    order = np.random.default_rng(seed).permutation(n)  # validation split takes the tail
    history = model.fit(
        data[order],
        data[order],
        epochs=epochs,
        batch_size=batch_size,
        validation_split=validation_split,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            )
        ],
        verbose=0,
        shuffle=True,
    )
    if save_to is not None:
        Path(save_to).mkdir(parents=True, exist_ok=True)
        model.save(Path(save_to) / "autoencoder.keras")
    hidden_kernel, hidden_bias = model.get_layer("encoder_hidden").get_weights()
    code_kernel, code_bias = model.get_layer("code").get_weights()
    # Fold centring and scaling into the first layer: x -> ((x - mean) / scale) @ W + b.
    first_kernel = hidden_kernel / scale
    first_bias = hidden_bias - (mean / scale) @ hidden_kernel
    arrays = {
        "kernel_0": first_kernel.astype(np.float32),
        "bias_0": first_bias.astype(np.float32),
        "relu_0": np.array(True),
        "kernel_1": code_kernel.astype(np.float32),
        "bias_1": code_bias.astype(np.float32),
        "relu_1": np.array(False),
    }
    val_loss = history.history["val_loss"]
    spec = ReducerSpec(
        method="autoencoder",
        input_dim=input_dim,
        output_dim=dims,
        training_size=n,
        model_fingerprint=model_fingerprint,
        options={
            "hidden": hidden,
            "batch_size": batch_size,
            "validation_split": validation_split,
            "patience": patience,
            "seed": seed,
        },
        metrics={
            "epochs": len(val_loss),
            "best_val_loss": float(min(val_loss)),
            "train_loss": float(history.history["loss"][int(np.argmin(val_loss))]),
            "train_seconds": time.perf_counter() - started,
        },
    )
    return Reducer(spec, arrays)
