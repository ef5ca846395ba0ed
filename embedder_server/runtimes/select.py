"""Which runtime and precision run the model, and loading it.

Runtime `auto`: TensorFlow where it sees a GPU (checked only when an NVIDIA device node exists,
so a CPU-only start never imports TensorFlow to ask); otherwise OpenVINO where it is installed
and its CPU plugin supports this CPU; otherwise TensorFlow.
Precision `auto`: with OpenVINO, bfloat16 where the CPU computes it natively (AVX512-BF16 / AMX)
and bfloat16 kept >= 0.99 of TensorFlow float32's top-10 neighbours (and cosine >= 0.999) on the
probe images when the IR was converted (recorded in the cache); float32 otherwise. With
TensorFlow, float32 (its bfloat16 is not measured at start; ask for it explicitly).
Precision int8 is never chosen by `auto` (its vectors differ more from float32's; a collection
never mixes them with float vectors): OpenVINO only, the IR quantized by NNCF on the photos of
`calibration` (default: the bundled sample photos), cached (see quantize).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from imagesim.embedder_server.model import WeightsSource, keras_home
from imagesim.embedder_server.runtimes import openvino as ovrt
from imagesim.embedder_server.runtimes.base import ModelRuntime
from imagesim.embedder_server.runtimes.ir_cache import IRCache
from imagesim.enums import Precision, Runtime
from imagesim.errors import FailedPrecondition, Internal

log = logging.getLogger(__name__)

AUTO = "auto"
RUNTIME_CHOICES = (AUTO, Runtime.OPENVINO.value, Runtime.TENSORFLOW.value)
PRECISION_CHOICES = (AUTO, *(p.value for p in Precision))


MODEL_CACHE_ENV = "IMAGESIM_EMBEDDER_MODEL_CACHE"  # the server's --model-cache default too


def default_model_cache() -> Path:
    """$IMAGESIM_EMBEDDER_MODEL_CACHE, else beside the Keras weights the IR is made from:
    $KERAS_HOME/imagesim-ir (~/.keras/imagesim-ir)."""
    configured = os.environ.get(MODEL_CACHE_ENV)
    return Path(configured) if configured else keras_home() / "imagesim-ir"


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: Runtime
    reason: str


def nvidia_device_present() -> bool:
    return any(Path("/dev").glob("nvidia[0-9]*"))


def choose_runtime(requested: str) -> RuntimeChoice:
    if requested == Runtime.TENSORFLOW.value:
        return RuntimeChoice(Runtime.TENSORFLOW, "requested")
    if requested == Runtime.OPENVINO.value:
        if not ovrt.openvino_installed():
            raise FailedPrecondition(
                "--runtime openvino: OpenVINO is not installed (pip install 'imagesim[embedder]')"
            )
        if not ovrt.cpu_supported():
            raise FailedPrecondition("--runtime openvino: OpenVINO cannot run on this CPU")
        return RuntimeChoice(Runtime.OPENVINO, "requested")
    if requested != AUTO:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIME_CHOICES)}, not {requested!r}")
    if nvidia_device_present():
        from imagesim.embedder_server.runtimes.tensorflow import tensorflow_sees_gpu

        if tensorflow_sees_gpu():
            return RuntimeChoice(Runtime.TENSORFLOW, "auto: TensorFlow sees a GPU")
    if not ovrt.openvino_installed():
        return RuntimeChoice(Runtime.TENSORFLOW, "auto: OpenVINO is not installed")
    if not ovrt.cpu_supported():
        return RuntimeChoice(Runtime.TENSORFLOW, "auto: OpenVINO does not support this CPU")
    return RuntimeChoice(Runtime.OPENVINO, "auto: OpenVINO supports this CPU")


def load_runtime(
    weights: str,
    runtime: str = AUTO,
    precision: str = AUTO,
    model_cache: Path | None = None,
    calibration: Path | None = None,
) -> ModelRuntime:
    """The model ready to run. WeightsUnavailable / FailedPrecondition say what to fix.
    `calibration`: the photos an int8 model is calibrated on (None: the sample photos)."""
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}")
    if calibration is not None and precision != Precision.INT8.value:
        raise FailedPrecondition("--calibration is for --precision int8 only")
    source = WeightsSource(weights)
    choice = choose_runtime(runtime)
    log.info("runtime %s (%s)", choice.runtime.value, choice.reason)
    if choice.runtime is Runtime.TENSORFLOW and precision == Precision.INT8.value:
        raise FailedPrecondition(
            f"--precision int8 runs on OpenVINO only, and the runtime is TensorFlow "
            f"({choice.reason}): install OpenVINO (pip install 'imagesim[embedder]') and use "
            "--runtime openvino or auto"
        )
    if choice.runtime is Runtime.TENSORFLOW:
        from imagesim.embedder_server.runtimes.tensorflow import TensorFlowRuntime

        # auto is float32: Keras' mixed_bfloat16 is not checked against float32 at start (the
        # top-10 agreement measured 0.989-0.997 on untrained real-photo vectors).
        chosen = Precision.FLOAT32 if precision == AUTO else Precision(precision)
        loaded: ModelRuntime = TensorFlowRuntime(source, chosen)
    else:
        cache = IRCache(model_cache or default_model_cache())
        loaded = _load_openvino(source, precision, cache, calibration)
    info = loaded.info
    loaded.info = replace(info, notes=(f"runtime {choice.reason}", *info.notes))
    return loaded


def _load_openvino(
    source: WeightsSource, precision: str, cache: IRCache, calibration: Path | None
) -> ModelRuntime:
    from imagesim.embedder_server.runtimes.convert import convert_in_subprocess

    key = ovrt.cache_key(source)
    entry = cache.load(key) if key is not None else None
    if entry is None:
        convert_in_subprocess(source, cache)
        key = ovrt.cache_key(source)
        entry = cache.load(key) if key is not None else None
        if entry is None:
            raise Internal(f"the IR converted into {cache.root} cannot be read back")
    else:
        log.info("OpenVINO IR from cache %s", entry.directory)
    if precision == AUTO:
        chosen = Precision.FLOAT32
        if ovrt.native_bf16() and ovrt.bf16_agreement_ok(entry):
            chosen = Precision.BFLOAT16
    else:
        chosen = Precision(precision)
    if chosen is Precision.INT8:
        from imagesim.embedder_server.runtimes.quantize import load_quantized

        entry = load_quantized(entry, calibration, cache)
    return ovrt.OpenVINORuntime(entry, source, chosen)
