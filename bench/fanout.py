"""Fan-out cost: the same vectors split over 1 or 4 shards, p50 of a top-10 search through the
client library (plain Annoy, and with --project-dims 256), the shard sets measured in turn."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import percentile
from bench.shards import start_shards, stop_all
from imagesim.client.collection import Collection
from imagesim.params import SearchParams


@dataclass
class FanOutResult:
    p50_ms: dict[str, float]  # e.g. "1 shard", "4 shards", "1 shard pca-256"
    ratio_4_vs_1: float
    ratio_4_vs_1_pca256: float | None


def fan_out(work: Path, data: np.ndarray, queries: np.ndarray, projected: bool) -> FanOutResult:
    layouts = [(1, 0), (4, 0)] + ([(1, 256), (4, 256)] if projected else [])
    p50: dict[str, float] = {}
    for count, project in layouts:
        label = f"{count} shard{'s' if count > 1 else ''}{' pca-256' if project else ''}"
        servers = start_shards(work, f"fanout-{count}-{project}-", count, data, project)
        try:
            with Collection([s.address for s in servers]) as collection:
                for q in queries[:5]:
                    collection.search(q, SearchParams(k=10))
                times = []
                for q in queries:
                    t = time.perf_counter()
                    collection.search(q, SearchParams(k=10))
                    times.append(time.perf_counter() - t)
            p50[label] = percentile(times, 50) * 1000
        finally:
            stop_all(servers)
    return FanOutResult(
        p50_ms=p50,
        ratio_4_vs_1=p50["4 shards"] / p50["1 shard"],
        ratio_4_vs_1_pca256=(
            p50["4 shards pca-256"] / p50["1 shard pca-256"] if projected else None
        ),
    )
