"""Index recall@10 and latency on one in-process shard: Annoy, Annoy + exact re-rank, Annoy
over a 256-d projection + exact re-rank, and a numpy brute force, each against the exact
top-10 computed independently (a full sort)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import percentile
from imagesim.params import SearchParams
from imagesim.pca import l2_normalise
from imagesim.recall import recall_at_k


@dataclass
class IndexRow:
    label: str
    recall_at_10: float
    p50_ms: float
    build_s: float | None = None


@dataclass
class IndexResult:
    dataset: str
    rows: list[IndexRow]


def sorted_truth(data: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    """Exact top-k by a full sort of every cosine (the reference; slow and simple)."""
    sims = l2_normalise(queries) @ l2_normalise(data).T
    return [list(np.argsort(-row, kind="stable")[:k]) for row in sims]


def numpy_search(unit: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    """What a brute-force server would do: normalised matmul + argpartition."""
    sims = unit @ (query / np.linalg.norm(query))
    part = np.argpartition(-sims, k)[:k]
    return [int(i) for i in part[np.argsort(-sims[part])]]


def index_quality(
    name: str, data: np.ndarray, queries: np.ndarray, projected: bool = True
) -> IndexResult:
    from imagesim.index_server.shard import Shard, ShardConfig

    truth = sorted_truth(data, queries, 10)
    rows: list[IndexRow] = []
    configs: dict[int, tuple[tuple[str, dict], ...]] = {
        0: (("annoy", {}), ("annoy+rerank", {"rerank_factor": 10}))
    }
    if projected:
        configs[256] = (("annoy pca-256 + exact rerank", {}),)
    for project_dims, searches in configs.items():
        with tempfile.TemporaryDirectory() as tmp:
            shard = Shard(
                ShardConfig(
                    Path(tmp), data.shape[1], trees=50, auto_build=0, project_dims=project_dims
                )
            )
            try:
                for start in range(0, len(data), 2500):
                    shard.add(
                        [(f"{i}", data[i], {}) for i in range(start, min(start + 2500, len(data)))]
                    )
                started = time.perf_counter()
                shard.build()
                build_s = time.perf_counter() - started
                for label, options in searches:
                    found, times = [], []
                    for query in queries:
                        t = time.perf_counter()
                        hits = shard.search([query], SearchParams(k=10, **options))[0]
                        times.append(time.perf_counter() - t)
                        found.append([int(h.key) for h in hits])
                    rows.append(
                        IndexRow(
                            label, recall_at_k(found, truth), percentile(times, 50) * 1000, build_s
                        )
                    )
            finally:
                shard.close()
    unit = l2_normalise(data)
    found, times = [], []
    for query in queries:
        t = time.perf_counter()
        found.append(numpy_search(unit, query, 10))
        times.append(time.perf_counter() - t)
    rows.append(IndexRow("numpy exact", recall_at_k(found, truth), percentile(times, 50) * 1000))
    return IndexResult(name, rows)
