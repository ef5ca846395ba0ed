"""The OpenVINO runtime: runs the IR converted from the Keras model (see ir_cache and convert),
on the CPU, with OpenVINO's own precision setting (INFERENCE_PRECISION_HINT f32 or bf16), or
the IR quantized to INT8 by NNCF (see quantize).

Loading needs neither TensorFlow nor Keras. The input is the decoded uint8 image batch: the
model's scaling (x / 127.5 - 1) runs inside the compiled graph (PrePostProcessor), so no float
copy of the batch is made in Python, and the batch is handed to OpenVINO without a copy.

No telemetry: OpenVINO sends usage events (on import, on conversion) through the optional
openvino-telemetry package unless the user has opted out; its own fallback when that package is
absent is a no-op stub. `import_openvino()` makes the package unimportable in this process
before OpenVINO is first imported, so that stub is what runs: nothing is sent and no consent or
client-id file is written.

Memory: OpenVINO maps the IR's weights file (model.bin) and keeps the mapping, but after the
first inference the CPU plugin runs on its own repacked copy of the weights and never reads the
file's pages again; they still count in the process's RSS (83 MB for float32). After the first
inference the runtime drops those pages (madvise MADV_DONTNEED on the read-only mapping: should
anything read them again, the kernel reloads them from the file).
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from imagesim.embedder_server.model import (
    ARCHITECTURE,
    FEATURE_DIM,
    INPUT_SIZE,
    MODEL_NAME,
    WeightsSource,
)
from imagesim.embedder_server.runtimes.base import ModelInfo, cpu_has_native_bf16
from imagesim.embedder_server.runtimes.ir_cache import CachedIR, CacheKey
from imagesim.enums import Precision, Runtime
from imagesim.errors import FailedPrecondition

log = logging.getLogger(__name__)

TELEMETRY_MODULE = "openvino_telemetry"
OV_PRECISION = {Precision.FLOAT32: "f32", Precision.BFLOAT16: "bf16", Precision.INT8: "f32"}
# bfloat16 is offered by `auto` only when it kept at least this share of float32's top-10
# neighbours (and this cosine) on the probe images when the IR was converted.
MIN_TOP10_AGREEMENT = 0.99
MIN_COSINE = 0.999


def openvino_installed() -> bool:
    try:
        return importlib.util.find_spec("openvino") is not None
    except ValueError:  # imported as None: blocked
        return False


def import_openvino() -> ModuleType:
    """`import openvino` with telemetry off (see the module docstring)."""
    if "openvino" not in sys.modules:
        if sys.modules.get(TELEMETRY_MODULE) is not None:
            log.warning("%s was imported before OpenVINO: cannot keep it off", TELEMETRY_MODULE)
        else:
            sys.modules[TELEMETRY_MODULE] = None  # type: ignore[assignment]
    import openvino

    return openvino


def openvino_version() -> str:
    return str(import_openvino().get_version())


def cpu_supported() -> bool:
    """True when OpenVINO's CPU plugin can run here."""
    try:
        return "CPU" in import_openvino().Core().available_devices
    except Exception as exc:  # an unsupported CPU makes the plugin fail to load
        log.info("OpenVINO cannot use this CPU: %s", exc)
        return False


def native_bf16() -> bool:
    """bfloat16 computed natively by this CPU, as OpenVINO's CPU plugin sees it."""
    caps = import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "BF16" in caps and cpu_has_native_bf16()


def cache_key(weights: WeightsSource) -> CacheKey | None:
    """The IR cache key, computed without TensorFlow; None when the weights are not on disk
    yet (ImageNet weights still to be downloaded by the converter)."""
    if weights.spec == "imagenet" and weights.local_file() is None:
        return None
    identity = weights.identity(weights.local_file())
    return CacheKey(ARCHITECTURE, identity, openvino_version())


def bf16_agreement_ok(entry: CachedIR) -> bool:
    measured = entry.agreement.get(Precision.BFLOAT16.value)
    return bool(
        measured
        and measured.get("top10_agreement", 0.0) >= MIN_TOP10_AGREEMENT
        and measured.get("min_cosine", 0.0) >= MIN_COSINE
    )


def agreement_note(precision: Precision, entry: CachedIR) -> str | None:
    measured = entry.agreement.get(precision.value)
    if not measured:
        return None
    against = measured.get("against") or (
        f"TensorFlow float32 on {int(measured['probes'])} probe images at conversion"
    )
    return (
        f"vs {against}: "
        f"top-10 agreement {measured['top10_agreement']:.3f}, "
        f"min cosine {measured['min_cosine']:.6f}"
    )


def with_uint8_input(model: Any) -> Any:
    """The model taking the decoded uint8 NHWC batch, its input scaling (x / 127.5 - 1) in
    the graph; returned as is when it already takes uint8 (the INT8 IR is saved so)."""
    ov = import_openvino()
    from openvino.preprocess import PrePostProcessor

    if model.input(0).get_element_type() == ov.Type.u8:
        return model
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8)
    ppp.input().preprocess().convert_element_type(ov.Type.f32).mean(127.5).scale(127.5)
    return ppp.build()


def compile_ir(model_or_path: Any, precision: Precision) -> Any:
    """Compile for the CPU with uint8 NHWC input scaled in-graph; returns the compiled model.
    For INT8 (an IR quantized by NNCF) the precision hint is f32: the quantized operations run
    in int8, the few left unquantized in float32."""
    ov = import_openvino()
    core = ov.Core()
    model = model_or_path
    if not isinstance(model, ov.Model):
        model = core.read_model(model)
    return core.compile_model(
        with_uint8_input(model),
        "CPU",
        {"INFERENCE_PRECISION_HINT": OV_PRECISION[precision], "PERFORMANCE_HINT": "LATENCY"},
    )


MADV_DONTNEED = 4


def release_file_pages(path: Path) -> int:
    """Drop this process's resident pages of the read-only mappings of `path` (they reload
    from the file if read again); returns the bytes of the mappings (0 where none, or not on
    Linux)."""
    target = str(path.resolve())
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for line in maps:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or fields[5] != target or "w" in fields[1]:
            continue  # a writable mapping's pages could hold changes: never dropped
        start, end = (int(value, 16) for value in fields[0].split("-"))
        if madvise(start, end - start, MADV_DONTNEED) == 0:
            released += end - start
    return released


class OpenVINORuntime:
    """uint8 (n, 299, 299, 3) -> float32 (n, 2048) with the cached OpenVINO IR."""

    def __init__(self, entry: CachedIR, weights: WeightsSource, precision: Precision) -> None:
        started = time.perf_counter()
        ov = import_openvino()
        compiled = compile_ir(entry.xml, precision)
        actual = compiled.get_property("INFERENCE_PRECISION_HINT")
        if actual != getattr(ov.Type, OV_PRECISION[precision]):
            raise FailedPrecondition(
                f"OpenVINO runs {actual.get_type_name()} here, not the requested "
                f"{precision.value} (no native bfloat16 on this CPU): start with --precision "
                "float32 or auto"
            )
        self._request = compiled.create_infer_request()
        self._weights_file: Path | None = entry.directory / "model.bin"
        notes = [f"OpenVINO {openvino_version()}, IR cached at {entry.directory}"]
        if note := agreement_note(precision, entry):
            notes.append(note)
        self.info = ModelInfo(
            name=MODEL_NAME,
            weights=weights.label,
            untrained=weights.untrained,
            runtime=Runtime.OPENVINO,
            precision=precision,
            fingerprint=entry.fingerprint,
            dimension=FEATURE_DIM,
            input_size=INPUT_SIZE,
            notes=tuple(notes),
        )
        log.info(
            "OpenVINO runtime ready in %.2f s (%s)",
            time.perf_counter() - started,
            actual.get_type_name(),
        )

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        # share_inputs: OpenVINO reads the caller's array in place; outputs are copied, so the
        # rows handed back stay valid after the next call.
        outputs = self._request.infer({0: np.ascontiguousarray(batch)}, share_inputs=True)
        if self._weights_file is not None:  # the first call: weights are repacked now
            released = release_file_pages(self._weights_file)
            log.info("released %.0f MB of the mapped IR weights file", released / 2**20)
            self._weights_file = None
        return outputs[0]
