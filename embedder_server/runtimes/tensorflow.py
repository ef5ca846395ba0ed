"""The TensorFlow runtime: the Keras model itself, as a `tf.function` with a fixed input
signature (bfloat16 = Keras' mixed_bfloat16 policy). The reference every other runtime is
measured against, and the runtime where TensorFlow sees a GPU."""

from __future__ import annotations

import logging
import time

import numpy as np

from imagesim.embedder_server.model import (
    FEATURE_DIM,
    INPUT_SIZE,
    MODEL_NAME,
    WeightsSource,
    build_keras_model,
    keras_fingerprint,
)
from imagesim.embedder_server.runtimes.base import ModelInfo
from imagesim.enums import Precision, Runtime

log = logging.getLogger(__name__)


def tensorflow_sees_gpu() -> bool:
    """True when TensorFlow lists a GPU (imports TensorFlow)."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


class TensorFlowRuntime:
    """uint8 (n, 299, 299, 3) -> float32 (n, 2048) with Keras' InceptionV3."""

    def __init__(self, weights: WeightsSource, precision: Precision) -> None:
        import tensorflow as tf

        started = time.perf_counter()
        model = build_keras_model(weights, precision.value)
        self.info = ModelInfo(
            name=MODEL_NAME,
            weights=weights.label,
            untrained=weights.untrained,
            runtime=Runtime.TENSORFLOW,
            precision=precision,
            fingerprint=keras_fingerprint(model),
            dimension=FEATURE_DIM,
            input_size=INPUT_SIZE,
            notes=(
                "TensorFlow float32 is the reference other runtimes are compared with"
                if precision is Precision.FLOAT32
                else "Keras mixed_bfloat16: top-10 agreement with float32 measured by `make bench`",
            ),
        )
        width, height = INPUT_SIZE

        def features(batch: tf.Tensor) -> tf.Tensor:
            # keras.applications.inception_v3.preprocess_input: x / 127.5 - 1
            x = tf.cast(batch, tf.float32) / 127.5 - 1.0
            return tf.cast(model(x, training=False), tf.float32)

        self.model = model
        self._features = tf.function(
            features, input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8)]
        )
        log.info("TensorFlow runtime ready in %.1f s", time.perf_counter() - started)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._features(batch).numpy()
