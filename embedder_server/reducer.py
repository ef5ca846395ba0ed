"""Reductions of the full vectors to a smaller space (e.g. 2048 -> 256): PCA or an autoencoder.

Both are trained on a dump of the data set's full vectors (`imagesim reducer train`) and saved
as a directory:
    reducer.json   method, input/output dims, training-set size, the fingerprint of the embedding
                   model the vectors came from, options, training metrics
    weights.npz    what `transform` needs, as plain arrays
    autoencoder.keras  (autoencoder only) the whole trained Keras model, for inspection/retraining

Inputs are L2-normalised first: the index compares directions (angular), so a vector's length
carries nothing the reduction should spend dimensions on.

Serving runs in numpy (a few small matrix products per vector), so the reduced space adds no
model call and no TensorFlow graph; training the autoencoder needs Keras.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from imagesim.errors import FailedPrecondition, InvalidArgument

METHODS = ("pca", "autoencoder")
REDUCER_FILE = "reducer.json"
WEIGHTS_FILE = "weights.npz"


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


@dataclass
class ReducerSpec:
    method: str
    input_dim: int
    output_dim: int
    training_size: int
    model_fingerprint: str
    options: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    created: float = field(default_factory=time.time)


class Reducer:
    """A trained reduction: `transform` maps (n, input_dim) -> (n, output_dim) float32."""

    def __init__(self, spec: ReducerSpec, arrays: dict[str, np.ndarray]) -> None:
        self.spec = spec
        self.arrays = arrays
        self.input_dim = spec.input_dim
        self.output_dim = spec.output_dim
        whiten = " whitened" if spec.options.get("whiten") else ""
        self.description = (
            f"{spec.method}{whiten} {spec.input_dim} -> {spec.output_dim}, trained on "
            f"{spec.training_size} vectors"
        )

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        x = l2_normalise(vectors)
        if x.shape[-1] != self.input_dim:
            raise InvalidArgument(
                f"the reducer takes {self.input_dim}-d vectors, not {x.shape[-1]}-d"
            )
        a = self.arrays
        if self.spec.method == "pca":
            return ((x - a["mean"]) @ a["components"].T / a["scale"]).astype(np.float32)
        for n in range(len([k for k in a if k.startswith("kernel_")])):
            x = x @ a[f"kernel_{n}"] + a[f"bias_{n}"]
            if a[f"relu_{n}"]:
                x = np.maximum(x, 0.0)
        return x.astype(np.float32)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / WEIGHTS_FILE, **self.arrays)
        (directory / REDUCER_FILE).write_text(json.dumps(asdict(self.spec), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Reducer:
        directory = Path(directory)
        try:
            spec = ReducerSpec(**json.loads((directory / REDUCER_FILE).read_text()))
            with np.load(directory / WEIGHTS_FILE) as arrays:
                loaded = {k: arrays[k] for k in arrays.files}
        except (OSError, ValueError, TypeError) as exc:
            raise FailedPrecondition(
                f"{directory} is not a reducer made by `imagesim reducer train`: {exc}"
            ) from exc
        if spec.method not in METHODS:
            raise FailedPrecondition(f"{directory}: unknown reduction method {spec.method!r}")
        return cls(spec, loaded)

    def check_compatible(self, input_dim: int, model_fingerprint: str) -> None:
        """Refuse a reducer trained for another model or dimension."""
        if self.input_dim != input_dim:
            raise FailedPrecondition(
                f"the reducer takes {self.input_dim}-d vectors but the model makes "
                f"{input_dim}-d vectors"
            )
        if self.spec.model_fingerprint != model_fingerprint:
            raise FailedPrecondition(
                "the reducer was trained on vectors of another embedding model (fingerprint "
                f"{self.spec.model_fingerprint[:12]}, this model is {model_fingerprint[:12]}): "
                "dump vectors with this model and train it again"
            )


def train_pca(
    vectors: np.ndarray, dims: int, model_fingerprint: str, whiten: bool = False
) -> Reducer:
    """PCA in numpy: eigenvectors of the covariance of the L2-normalised vectors."""
    started = time.perf_counter()
    x = l2_normalise(vectors).astype(np.float64)
    n, input_dim = x.shape
    if dims >= input_dim or dims < 1 or n < 2:
        raise InvalidArgument(f"cannot reduce {n} {input_dim}-d vectors to {dims} dims")
    mean = x.mean(axis=0)
    centred = x - mean
    covariance = centred.T @ centred / (n - 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1][:dims]
    variances = np.clip(eigenvalues[order], 1e-12, None)
    components = eigenvectors[:, order].T
    scale = np.sqrt(variances) if whiten else np.ones(dims)
    spec = ReducerSpec(
        method="pca",
        input_dim=input_dim,
        output_dim=dims,
        training_size=n,
        model_fingerprint=model_fingerprint,
        options={"whiten": whiten},
        metrics={
            "explained_variance": float(variances.sum() / eigenvalues.clip(0).sum()),
            "train_seconds": time.perf_counter() - started,
        },
    )
    arrays = {
        "mean": mean.astype(np.float32),
        "components": components.astype(np.float32),
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
    import keras

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
