"""Vector validation and exact distances, matching Annoy's definitions. Pure numpy."""

from __future__ import annotations

import numpy as np

from imagesim.errors import InvalidArgument

METRICS = ("angular", "euclidean", "manhattan")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InvalidArgument(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    return metric


def as_vector(values: object, dims: int, metric: str, what: str = "vector") -> np.ndarray:
    """Validate one vector: length `dims`, finite, non-zero for angular. Returns float32."""
    vector = np.asarray(values, dtype=np.float32)
    if vector.ndim != 1 or vector.shape[0] != dims:
        got = vector.shape[0] if vector.ndim == 1 else vector.shape
        raise InvalidArgument(f"{what} has dimension {got}; this shard holds {dims}-d vectors")
    if not np.isfinite(vector).all():
        bad = int((~np.isfinite(vector)).sum())
        raise InvalidArgument(f"{what} has {bad} NaN or infinite values")
    if metric == "angular" and not vector.any():
        raise InvalidArgument(f"{what} is all zeros: it has no direction (angular metric)")
    return vector


def distances(matrix: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    """Exact distance from `query` to each row of `matrix` (float64, Annoy's definitions)."""
    m = np.asarray(matrix, dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    if metric == "angular":
        norms = np.linalg.norm(m, axis=1) * np.linalg.norm(q)
        cos = (m @ q) / np.where(norms > 0, norms, 1.0)
        return np.sqrt(np.clip(2.0 - 2.0 * cos, 0.0, None))
    if metric == "euclidean":
        return np.linalg.norm(m - q, axis=1)
    if metric == "manhattan":
        return np.abs(m - q).sum(axis=1)
    raise InvalidArgument(f"unknown metric {metric!r}")


def top_k(dist: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest distances, closest first."""
    if k >= dist.shape[0]:
        return np.argsort(dist, kind="stable")
    part = np.argpartition(dist, k)[:k]
    return part[np.argsort(dist[part], kind="stable")]
