"""What every inference runtime offers the Embedder: a batch of decoded images in, a batch of
float32 vectors out, plus a description of what runs (ModelInfo)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from imagesim.enums import Precision, Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """What a runtime runs. `fingerprint` identifies architecture + weights (the same for every
    runtime and precision: their vectors are comparable, see `notes` for how closely)."""

    name: str
    weights: str  # "imagenet", a path, or "none"
    untrained: bool
    runtime: Runtime
    precision: Precision
    fingerprint: str
    dimension: int
    input_size: tuple[int, int]  # (width, height)
    notes: tuple[str, ...] = field(default_factory=tuple)


class ModelRuntime(Protocol):
    """Runs the model. Inputs are RGB uint8 (n, height, width, 3) exactly as decoded; the
    runtime applies the model's own input scaling. Outputs float32 (n, dimension).
    Called from one thread at a time (the batcher's model thread)."""

    info: ModelInfo

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def warm_up(runtime: ModelRuntime, batch_sizes: tuple[int, ...] = (1,)) -> dict[int, float]:
    """Run each batch size once (compiles kernels, allocates buffers); returns the seconds a
    second call of each took."""
    width, height = runtime.info.input_size
    timings = {}
    for size in batch_sizes:
        batch = np.zeros((size, height, width, 3), dtype=np.uint8)
        runtime(batch)
        started = time.perf_counter()
        runtime(batch)
        timings[size] = time.perf_counter() - started
        log.info("warm-up batch %d: %.1f ms", size, timings[size] * 1000)
    return timings
