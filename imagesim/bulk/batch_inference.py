"""Batch inference outside the server: the Embedder's own decode and model code on column
batches, for batch engines such as Ray Data (`map_batches`). Knows nothing of Ray or gRPC.

preprocess.decode_batch decodes under the Embedder's ImageLimits (the same checks and the
same pixels the server would get); `BatchModel` loads the runtime once
(select.load_runtime: OpenVINO from the IR cache, converted once per cache, or TensorFlow)
and runs it on the decoded rows. A row that cannot be decoded keeps its reason in `error` and
is never run through the model: one bad image never fails its batch.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagesim.embedder_server.runtimes.base import ModelRuntime

log = logging.getLogger(__name__)

Batch = Mapping[str, Any]  # column name -> numpy array (one entry per row)


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load, as the server's --weights/--runtime/--precision/--model-cache/
    --calibration."""

    weights: str = "imagenet"
    runtime: str = "auto"
    precision: str = "auto"
    model_cache: str | None = None  # None: the process's default (select.default_model_cache)
    calibration: str | None = None  # int8's calibration photos (None: the sample photos)


@contextmanager
def _cache_lock(cache: Path) -> Any:
    """One process per machine converts (or quantizes) a missing IR; the others wait, then
    load it."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".convert.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_model(spec: ModelSpec) -> ModelRuntime:
    """The runtime the Embedder would load for the same flags (a missing IR is converted by
    one process per machine while the others wait for it)."""
    from imagesim.embedder_server.runtimes.select import default_model_cache, load_runtime

    cache = Path(spec.model_cache) if spec.model_cache else default_model_cache()
    with _cache_lock(cache):
        calibration = Path(spec.calibration) if spec.calibration else None
        return load_runtime(spec.weights, spec.runtime, spec.precision, cache, calibration)


class BatchModel:
    """Holds one loaded model; called with a batch of decoded rows ("pixels" uint8 (n,h,w,3),
    "error" str per row) and returns the batch with "vector" (n, dims) float32 (zeros where
    `error` is set) and the model's identity per row ("fingerprint", "runtime", "precision")."""

    def __init__(self, spec: ModelSpec) -> None:
        self.runtime = load_model(spec)
        info = self.runtime.info
        log.info(
            "pid %d: %s on %s/%s, fingerprint %s",
            os.getpid(),
            info.name,
            info.runtime.value,
            info.precision.value,
            info.fingerprint[:12],
        )

    def __call__(self, batch: Batch) -> dict[str, Any]:
        info = self.runtime.info
        pixels = batch["pixels"]
        errors = [str(e) for e in batch["error"]]
        rows = len(errors)
        ok = [n for n, e in enumerate(errors) if not e]
        vectors = np.zeros((rows, info.dimension), dtype=np.float32)
        if ok:
            vectors[ok] = self.runtime(np.ascontiguousarray(pixels[ok]))
        out = {name: batch[name] for name in batch if name != "pixels"}
        out["vector"] = vectors
        out["fingerprint"] = np.full(rows, info.fingerprint)
        out["runtime"] = np.full(rows, info.runtime.value)
        out["precision"] = np.full(rows, info.precision.value)
        return out
