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
model call and no TensorFlow graph. Training: imagesim.reduction.train (the autoencoder needs
Keras: the `reduction` extra).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from imagesim.errors import FailedPrecondition, InvalidArgument
from imagesim.pca import l2_normalise

METHODS = ("pca", "autoencoder")
REDUCER_FILE = "reducer.json"
WEIGHTS_FILE = "weights.npz"


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
        np.savez(directory / WEIGHTS_FILE, **self.arrays)  # type: ignore[arg-type]
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
