"""How well a reduced space keeps the full space's neighbours, and what it costs.

Queries are the dump's held-out vectors (`is_holdout`: the same ~10% that `reducer train`
leaves out); the database is the rest. For each space: the share of each query's exact
full-space top-k that the space's own exact top-k keeps (neighbour recall), and the same
for an Annoy index built in that space, with its latency, size and build time.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagesim.errors import MissingExtra
from imagesim.recall import exact_top_k, recall_at_k
from imagesim.reduction.reducer import Reducer

HOLDOUT_MODULUS = 10


def is_holdout(key: str) -> bool:
    """A fixed ~10% of keys, never used for training, used as evaluation queries."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % HOLDOUT_MODULUS == 0


def holdout_mask(keys: list[str]) -> np.ndarray:
    return np.fromiter((is_holdout(k) for k in keys), dtype=bool, count=len(keys))


@dataclass
class SpaceReport:
    name: str
    dims: int
    neighbour_recall: float  # exact top-k in this space vs exact full-space top-k
    annoy_recall: float  # Annoy top-k in this space vs exact full-space top-k
    annoy_p50_ms: float
    index_mb: float
    build_s: float


def _annoy_report(
    name: str, database: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int, trees: int
) -> SpaceReport:
    try:
        from annoy import AnnoyIndex
    except ImportError as exc:
        raise MissingExtra("evaluating a reduction builds Annoy indexes", "reduction") from exc

    dims = database.shape[1]
    index = AnnoyIndex(dims, "angular")
    for i, vector in enumerate(database):
        index.add_item(i, vector)
    started = time.perf_counter()
    index.build(trees, n_jobs=-1)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.ann"
        index.save(str(path))
        index_mb = path.stat().st_size / 1e6
        found, times = [], []
        for query in queries:
            started = time.perf_counter()
            found.append(index.get_nns_by_vector(query, k))
            times.append(time.perf_counter() - started)
        index.unload()
    return SpaceReport(
        name=name,
        dims=dims,
        neighbour_recall=recall_at_k(exact_top_k(database, queries, k).tolist(), truth.tolist()),
        annoy_recall=recall_at_k(found, truth.tolist()),
        annoy_p50_ms=float(np.median(times) * 1000),
        index_mb=index_mb,
        build_s=build_s,
    )


def evaluate(
    keys: list[str],
    vectors: np.ndarray,
    reducers: dict[str, Reducer],
    k: int = 10,
    max_queries: int = 500,
    trees: int = 50,
) -> list[SpaceReport]:
    mask = holdout_mask(keys)
    queries, database = vectors[mask][:max_queries], vectors[~mask]
    if len(queries) == 0 or len(database) < k:
        raise ValueError(f"the dump is too small to evaluate: {len(keys)} vectors")
    truth = exact_top_k(database, queries, k)
    reports = [_annoy_report("full", database, queries, truth, k, trees)]
    for name, reducer in reducers.items():
        reports.append(
            _annoy_report(
                name, reducer.transform(database), reducer.transform(queries), truth, k, trees
            )
        )
    return reports


def format_table(reports: list[SpaceReport], k: int, queries: int) -> str:
    lines = [
        f"{'space':<28} {'dims':>5} {'exact recall@' + str(k):>15} {'annoy recall@' + str(k):>15}"
        f" {'annoy p50 ms':>12} {'index MB':>9} {'build s':>8}",
    ]
    for r in reports:
        lines.append(
            f"{r.name:<28} {r.dims:>5} {r.neighbour_recall:>15.3f} {r.annoy_recall:>15.3f}"
            f" {r.annoy_p50_ms:>12.3f} {r.index_mb:>9.1f} {r.build_s:>8.2f}"
        )
    lines.append(f"({queries} held-out queries; recall against the exact full-space top-{k})")
    return "\n".join(lines)
