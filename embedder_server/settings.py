"""`imagesim-embedder` settings, declared once (imagesim.settings_base): the model, batching and
decoding, with the image limits nested (preprocess.ImageLimits). Each field is a flag and an
IMAGESIM_EMBEDDER_* variable."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from imagesim.embedder_server.preprocess import ImageLimits
from imagesim.settings_base import setting


def batch_time(value: str) -> float | None:
    """Milliseconds, or "auto" (None)."""
    return None if value == "auto" else float(value)


@dataclass(frozen=True)
class EmbedderSettings:
    weights: str = setting(
        "imagenet",
        "'imagenet' (Keras' ImageNet weights, downloaded once and cached), a path to a weights "
        "file, or 'none' (untrained, seeded network: tests and offline use)",
    )
    runtime: str = setting(
        "auto",
        "inference runtime (auto: OpenVINO where it is installed and supports the CPU, "
        "TensorFlow otherwise or where TensorFlow sees a GPU)",
        choices=("auto", "openvino", "tensorflow"),
    )
    precision: str = setting(
        "auto",
        "model arithmetic, mapped to the runtime's own setting (auto: bfloat16 where the CPU "
        "computes it natively, AVX512-BF16 or AMX, and it kept >= 0.99 of float32's top-10 "
        "neighbours; float32 elsewhere). int8 (OpenVINO only, never chosen by auto): the model "
        "quantized once by NNCF on --calibration photos; faster, its vectors are not mixed "
        "with float vectors in a collection",
        choices=("float32", "bfloat16", "int8", "auto"),
    )
    calibration: Path | None = setting(
        None,
        "folder of photos --precision int8 is calibrated on: a few hundred of your own data "
        "(searched recursively, up to 300 used). Quantized once per model, folder content and "
        "NNCF version, cached in --model-cache",
        default_text="the bundled sample photos, which need scikit-image",
    )
    model_cache: Path | None = setting(
        None,
        "directory of the converted OpenVINO models; checked on every start, rebuilt when "
        "stale or corrupt",
        default_text="$KERAS_HOME/imagesim-ir, i.e. ~/.keras/imagesim-ir",
    )
    max_batch_size: int = setting(
        8,
        "largest batch the model runs (8: OpenVINO f32 gets 95% of batch 16's throughput on an "
        "AVX2 CPU with ~100 MB less memory, and half the longest batch time)",
    )
    max_batch_time_ms: float | None = setting(  # None: from the measured batch-1 time
        None,
        "longest wait for a batch to fill, ms (auto: a quarter of the model's batch-1 time, "
        "at most 5 ms; no wait while requests come one at a time)",
        parse=batch_time,
        default_text="auto",
    )
    decode_threads: int = setting(
        help="images decoded at once",
        factory=lambda: max(2, os.cpu_count() or 1),
        default_text="the number of CPUs, at least 2",
    )
    reducer: Path | None = setting(
        None, "directory of a reducer (`imagesim reducer train`): also serve the reduced space"
    )
    limits: ImageLimits = field(default_factory=ImageLimits)
