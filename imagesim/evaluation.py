"""Measures of search quality and timing shared by the benchmark, the reducer evaluation, the
model runtimes' self-check and the tests: one implementation each."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (float32; zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def exact_top_k(database: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices of each query's k nearest database rows by angle (cosine), closest first."""
    sims = unit_rows(queries) @ unit_rows(database).T
    k = min(k, sims.shape[1])
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def recall_at_k(found: Sequence[Sequence[object]], truth: Sequence[Sequence[object]]) -> float:
    """Mean share of each query's true top-k (`truth` rows, k = their length) that `found`
    holds among its first k."""
    shares = []
    for got, want in zip(found, truth, strict=True):
        want = list(want)
        shares.append(len(set(list(got)[: len(want)]) & set(want)) / len(want))
    return float(np.mean(shares))


def top_k_agreement(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Two embeddings of the same items: the mean share of each item's top-k neighbours
    (among the other items, by cosine) in `a` that are also its top-k in `b`."""
    k = min(k, len(a) - 1)

    def neighbours(vectors: np.ndarray) -> np.ndarray:
        unit = unit_rows(vectors)
        sims = unit @ unit.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :k]

    return recall_at_k(neighbours(b).tolist(), neighbours(a).tolist())


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine between each row of `a` and the same row of `b`."""
    return (unit_rows(a) * unit_rows(b)).sum(axis=1)


def structured_vectors(n: int, dims: int, seed: int, clusters: int = 500) -> np.ndarray:
    """Clustered, non-negative (ReLU-like) vectors like pooled CNN features: `clusters`
    subjects of sparse positive centres (the same centres for every seed), members spread
    around them. float32 (n, dims)."""
    centres = np.random.default_rng(42).gamma(0.5, 1.0, size=(clusters, dims))
    rng = np.random.default_rng(seed)
    data = centres[rng.integers(clusters, size=n)] + rng.normal(0.0, 0.35, size=(n, dims))
    return np.maximum(data, 0.0).astype(np.float32)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of `values`."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))
