"""Embedding throughput: each runtime's raw model (batch 32 throughput, batch 1 latency,
measured interleaved across runtimes) and what the server delivers through gRPC (1 and 8
concurrent clients, bulk `dump`), each served round right after a raw round of the same model."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import Config, Workload, median_ratio, percentile, rss_mb
from imagesim.client.dump import dump_folder
from imagesim.client.embedder_client import EmbedderClient
from imagesim.embedder_server.runtimes.base import ModelRuntime
from imagesim.recall import row_cosines


@dataclass
class RawResult:
    config: str
    bs32_img_s: float
    bs1_p50_ms: float
    rounds_bs32: list[float]


@dataclass
class ServedResult:
    config: str
    raw_bs32_img_s: float  # the raw rounds interleaved with the served ones
    grpc_1_client_img_s: float
    grpc_8_clients_img_s: float
    dump_img_s: float
    ratio_1_client_vs_raw: float
    ratio_8_clients_vs_raw: float
    ratio_dump_vs_raw: float
    served_vs_raw_min_cosine: float  # the served vectors are the raw model's
    embedder_rss_mb: float
    rounds: dict[str, list[float]]


def raw_bs32(runtime: ModelRuntime, pixels: np.ndarray) -> float:
    """Images per second through the model alone at batch 32 (or the whole set if smaller)."""
    bs = min(32, len(pixels))
    batches = len(pixels) // bs
    started = time.perf_counter()
    for n in range(batches):
        runtime(pixels[n * bs : (n + 1) * bs])
    return batches * bs / (time.perf_counter() - started)


def raw_bs1_ms(runtime: ModelRuntime, pixels: np.ndarray, count: int) -> list[float]:
    times = []
    for image in pixels[:count]:
        started = time.perf_counter()
        runtime(image[None])
        times.append((time.perf_counter() - started) * 1000)
    return times


def raw_models(
    runtimes: dict[Config, ModelRuntime], work: Workload, rounds: int, bs1_count: int
) -> dict[str, RawResult]:
    """Every runtime, round after round in turn, so machine drift hits all alike."""
    for runtime in runtimes.values():
        runtime(work.pixels[:1])
        runtime(work.pixels[: min(32, len(work.pixels))])
    bs32: dict[Config, list[float]] = {c: [] for c in runtimes}
    bs1: dict[Config, list[float]] = {c: [] for c in runtimes}
    for _ in range(rounds):
        for config, runtime in runtimes.items():
            bs32[config].append(raw_bs32(runtime, work.pixels))
            bs1[config].extend(raw_bs1_ms(runtime, work.pixels, bs1_count))
    return {
        c.label: RawResult(c.label, statistics.median(bs32[c]), percentile(bs1[c], 50), bs32[c])
        for c in runtimes
    }


def concurrent_embeds(client: EmbedderClient, jpegs: list[bytes], clients: int) -> float:
    todo = list(jpegs)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                data = todo.pop()
            client.embed(data)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(jpegs) / (time.perf_counter() - started)


def served(
    config: Config, runtime: ModelRuntime, address: str, pid: int, work: Workload, rounds: int
) -> ServedResult:
    """Raw batch-32 rounds alternating with served rounds against the running server."""
    runs: dict[str, list[float]] = {"raw": [], "one": [], "eight": [], "dump": []}
    dumped = None
    with EmbedderClient(address, timeout=600) as client:
        client.embed(work.jpegs[0])
        for _ in range(rounds):
            runs["raw"].append(raw_bs32(runtime, work.pixels))
            runs["one"].append(concurrent_embeds(client, work.jpegs, 1))
            runs["eight"].append(concurrent_embeds(client, work.jpegs, 8))
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                dumped, report = dump_folder(
                    work.folder, client, Path(tmp) / "v.npz", progress=False
                )
                runs["dump"].append(report.done / (time.perf_counter() - started))
    assert dumped is not None
    order = {str(p): n for n, p in enumerate(work.paths)}
    rows = [order[k] for k in dumped.keys if k in order]
    keep = [n for n, k in enumerate(dumped.keys) if k in order]
    raw = runtime(work.pixels[rows])
    return ServedResult(
        config=config.label,
        raw_bs32_img_s=statistics.median(runs["raw"]),
        grpc_1_client_img_s=statistics.median(runs["one"]),
        grpc_8_clients_img_s=statistics.median(runs["eight"]),
        dump_img_s=statistics.median(runs["dump"]),
        ratio_1_client_vs_raw=median_ratio(runs["one"], runs["raw"]),
        ratio_8_clients_vs_raw=median_ratio(runs["eight"], runs["raw"]),
        ratio_dump_vs_raw=median_ratio(runs["dump"], runs["raw"]),
        served_vs_raw_min_cosine=float(row_cosines(dumped.vectors[keep], raw).min()),
        embedder_rss_mb=rss_mb(pid),
        rounds=runs,
    )
