"""What every benchmark section shares: the machine, the workload (real-photo JPEGs), the
runtime/precision configurations, server start-up and memory probes."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagesim.embedder_server.preprocess import ImageLimits, load_rgb
from imagesim.embedder_server.runtimes.base import ModelRuntime
from imagesim.embedder_server.runtimes.ir_cache import MANIFEST
from imagesim.enums import Precision
from imagesim.samples import write_photo_crops
from tests.support.launch import ServerProcess, start_embedder

INPUT = (299, 299)


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    avx512: bool
    native_bf16: bool  # AVX512-BF16 or AMX-BF16
    amx: bool
    python: str

    @classmethod
    def detect(cls) -> Machine:
        text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        lines = text.splitlines()
        model = next(
            (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")),
            platform.processor(),
        )
        flags = next(
            (set(ln.split(":", 1)[1].split()) for ln in lines if ln.startswith("flags")), set()
        )
        return cls(
            cpu=model,
            cores=os.cpu_count() or 1,
            avx512="avx512f" in flags,
            native_bf16=bool({"avx512_bf16", "amx_bf16"} & flags),
            amx="amx_tile" in flags,
            python=platform.python_version(),
        )

    def describe(self) -> str:
        features = [
            name
            for name, present in (
                ("AVX-512", self.avx512),
                ("native bf16", self.native_bf16),
                ("AMX", self.amx),
            )
            if present
        ]
        return f"{self.cpu}, {self.cores} cores, {' + '.join(features) or 'no AVX-512'}"


UNTRAINED = "none"  # the bench's default --weights: the tests' untrained network


@dataclass(frozen=True)
class Config:
    """One runtime at one precision."""

    runtime: str  # "openvino" | "tensorflow"
    precision: str  # "float32" | "bfloat16" | "int8"
    weights: str = UNTRAINED  # the Embedder's --weights

    @property
    def label(self) -> str:
        return f"{self.runtime}/{self.precision}"

    def server_args(self) -> list[str]:
        return ["--weights", self.weights, "--runtime", self.runtime, "--precision", self.precision]


REFERENCE = Config("tensorflow", "float32")


class Workload:
    """`count` real-photo JPEGs (crops of scikit-image's photos, 500x375) and their decoded
    model inputs."""

    def __init__(self, folder: Path, count: int) -> None:
        paths = sorted(folder.glob("*.jpg"))[:count]
        if len(paths) < count:
            paths = write_photo_crops(folder, count, seed=1)
        self.folder = folder
        self.paths = paths
        self.jpegs = [p.read_bytes() for p in paths]
        self.pixels = np.stack([load_rgb(d, INPUT, ImageLimits()) for d in self.jpegs])


def quantization_record(runtime: ModelRuntime) -> dict[str, Any] | None:
    """How an int8 runtime's IR was quantized (seconds, photos, NNCF version: its cache
    manifest), None for a float runtime."""
    if runtime.info.precision is not Precision.INT8:
        return None
    prefix = "IR cached at "
    [where] = [n.split(prefix, 1)[1] for n in runtime.info.notes if prefix in n]
    manifest = json.loads((Path(where) / MANIFEST).read_text())
    return {"config": "openvino/int8", **manifest["quantized"]}


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 1e6


def start_timed(log: Path, *args: str) -> tuple[ServerProcess, float]:
    """Start an embedder; returns it and the seconds from launch to health SERVING."""
    started = time.perf_counter()
    server = start_embedder(log, *args, timeout=900)
    return server, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of `values`."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median of per-round ratios (each round's two sides measured back to back)."""
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))
