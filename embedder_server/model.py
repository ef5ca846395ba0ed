"""The model's source of truth: InceptionV3 (no top, global average pool) built by Keras, with
its weights from ImageNet, a file, or seeded untrained. Every runtime starts from here: the
TensorFlow runtime runs this Keras model; the OpenVINO runtime converts it once and caches the IR.

`WeightsSource` names the weights and their identity without importing TensorFlow (a sha256 of
the weights file, or the seed and Keras version of an untrained network), so a cached IR can be
found, and loaded, by a process that never imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagesim.errors import FailedPrecondition

log = logging.getLogger(__name__)

MODEL_NAME = "InceptionV3"
# What the network is, for cache keys: architecture, head and input shape.
ARCHITECTURE = "keras.applications.InceptionV3(include_top=False, pooling='avg') 299x299x3"
INPUT_SIZE = (299, 299)  # (width, height)
FEATURE_DIM = 2048
UNTRAINED_SEED = 0

# Keras' published no-top ImageNet weights for InceptionV3 (what weights="imagenet" fetches).
IMAGENET_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + IMAGENET_FILE
)
IMAGENET_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"


class WeightsUnavailable(FailedPrecondition):
    """The requested weights cannot be loaded; the message says how to fix it."""


def keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))


def keras_cache_dir() -> Path:
    return keras_home() / "models"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_imagenet_weights() -> Path:
    """The cached ImageNet weights file, downloading it once if needed (imports Keras)."""
    cached = keras_cache_dir() / IMAGENET_FILE
    import keras

    try:
        return Path(
            keras.utils.get_file(
                IMAGENET_FILE, IMAGENET_URL, cache_subdir="models", file_hash=IMAGENET_MD5
            )
        )
    except Exception as exc:
        raise WeightsUnavailable(
            f"cannot get the ImageNet weights for {MODEL_NAME}: download of {IMAGENET_URL} "
            f"failed ({type(exc).__name__}: {exc}).\n"
            "Fix it one of these ways:\n"
            f"  - run once on a machine with internet access (the file is cached at {cached});\n"
            f"  - download {IMAGENET_URL} elsewhere and pass --weights /path/to/{IMAGENET_FILE};\n"
            "  - for tests or offline trials only: --weights none (untrained, seeded network; "
            "its vectors carry no meaning)."
        ) from exc


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights come from: `spec` is "imagenet", a file path, or "none"."""

    spec: str

    @property
    def untrained(self) -> bool:
        return self.spec == "none"

    @property
    def label(self) -> str:
        """What Info reports as the weights."""
        return self.spec

    def local_file(self) -> Path | None:
        """The weights file if it is on disk now (no download); None for untrained weights
        or ImageNet weights not cached yet. WeightsUnavailable for a missing given file."""
        if self.untrained:
            return None
        if self.spec == "imagenet":
            cached = keras_cache_dir() / IMAGENET_FILE
            return cached if cached.is_file() else None
        path = Path(self.spec).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(
                f"weights file {path} does not exist. Pass --weights imagenet "
                f"(downloads {IMAGENET_FILE} once), a path to that file, or --weights none."
            )
        return path

    def file(self) -> Path | None:
        """The weights file, downloading the ImageNet weights once if needed (imports Keras)."""
        if self.spec == "imagenet":
            return self.local_file() or fetch_imagenet_weights()
        return self.local_file()

    def identity(self, path: Path | None) -> str:
        """What makes these weights these weights, without importing TensorFlow: the sha256
        of the file, or the seed and Keras version that generate the untrained network."""
        if path is None:
            keras_version = importlib.metadata.version("keras")
            return f"untrained seed={UNTRAINED_SEED} keras={keras_version}"
        return f"sha256={file_sha256(path)}"


def build_keras_model(weights: WeightsSource, precision: str = "float32") -> Any:
    """The Keras model with its weights loaded (imports TensorFlow). `precision` "bfloat16"
    builds it under Keras' mixed_bfloat16 policy (the TensorFlow runtime's bf16 mode)."""
    import keras

    weights_file = weights.file()
    keras.mixed_precision.set_global_policy(
        "mixed_bfloat16" if precision == "bfloat16" else "float32"
    )
    if weights_file is None:
        keras.utils.set_random_seed(UNTRAINED_SEED)
    model = keras.applications.InceptionV3(
        include_top=False, weights=None, pooling="avg", input_shape=(*INPUT_SIZE[::-1], 3)
    )
    if weights_file is not None:
        try:
            model.load_weights(str(weights_file))
        except Exception as exc:
            raise WeightsUnavailable(
                f"cannot load weights from {weights_file}: {exc}. The file must hold "
                f"{MODEL_NAME} weights without the top (as {IMAGENET_FILE} does)."
            ) from exc
    return model


def keras_fingerprint(model: Any) -> str:
    """sha256 over the architecture name and every weight array (as float32), in order: the
    same for every runtime and precision that runs these weights."""
    digest = hashlib.sha256(MODEL_NAME.encode())
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy(), dtype=np.float32).tobytes())
    return digest.hexdigest()
