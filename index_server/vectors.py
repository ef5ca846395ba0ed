"""Vector validation and exact distances, matching Annoy's definitions. Pure numpy."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from imagesim.enums import Metric
from imagesim.errors import InvalidArgument, Reason

# Largest accepted |value|: squares of 2048 such values still sum far below float32's maximum,
# so no distance overflows to inf or NaN (Annoy computes in float32).
MAX_ABS_VALUE = 1e15
# Smallest accepted norm under the angular metric: a smaller vector has no usable direction in
# float32 (its squared norm would underflow).
MIN_ANGULAR_NORM = 1e-15


def as_vector(values: object, dims: int, metric: Metric, what: str = "vector") -> np.ndarray:
    """Validate one vector: length `dims`, finite and in range, with a direction for angular.
    Returns float32."""
    vector = np.asarray(values, dtype=np.float32)
    if vector.ndim != 1 or vector.shape[0] != dims:
        got = vector.shape[0] if vector.ndim == 1 else vector.shape
        raise InvalidArgument(
            f"{what} has dimension {got}; this shard holds {dims}-d vectors",
            reason=Reason.DIMENSION_MISMATCH,
            metadata={"dimension": str(dims)},
        )
    magnitude = np.abs(vector)
    if not (magnitude <= MAX_ABS_VALUE).all():  # also catches NaN and inf
        bad = int((~(magnitude <= MAX_ABS_VALUE)).sum())
        raise InvalidArgument(
            f"{what} has {bad} NaN, infinite or out-of-range values (|x| <= {MAX_ABS_VALUE:g})",
            reason=Reason.VECTOR_NOT_FINITE,
            metadata={"limit": f"{MAX_ABS_VALUE:g}"},
        )
    # |x| <= 1e15 keeps the float32 square sum finite; a subnormal one underflows to 0.
    if metric is Metric.ANGULAR and float(np.dot(vector, vector)) < MIN_ANGULAR_NORM**2:
        raise InvalidArgument(
            f"{what} is all zeros (or nearly): it has no direction (angular metric)",
            reason=Reason.VECTOR_ZERO,
        )
    return vector


def as_vectors(
    values: Sequence[object], dims: int, metric: Metric, what: Callable[[int], str]
) -> np.ndarray:
    """`as_vector` of each of `values` at once: a (len, dims) float32 matrix. The first bad
    row is named by `what(row)` in the same error `as_vector` gives."""
    try:
        matrix = np.array(values, dtype=np.float32)
    except ValueError:  # rows of different lengths
        matrix = np.zeros((0, 0), dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != dims:
        for n, row in enumerate(values):
            as_vector(row, dims, metric, what(n))
    magnitude_ok = (np.abs(matrix) <= MAX_ABS_VALUE).all(axis=1)
    bad = ~magnitude_ok
    if metric is Metric.ANGULAR:
        bad |= np.einsum("ij,ij->i", matrix, matrix) < MIN_ANGULAR_NORM**2
    if bad.any():
        first = int(np.argmax(bad))
        as_vector(matrix[first], dims, metric, what(first))
    return matrix


def distances(matrix: np.ndarray, query: np.ndarray, metric: Metric) -> np.ndarray:
    """Exact distance from `query` to each row of `matrix` (float64, Annoy's definitions).
    For a few rows: the exact pass of a search."""
    m = np.asarray(matrix, dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    if metric is Metric.ANGULAR:
        norms = np.sqrt(np.einsum("ij,ij->i", m, m) * float(q @ q))
        cos = (m @ q) / np.where(norms > 0, norms, 1.0)
        angular: np.ndarray = np.sqrt(np.clip(2.0 - 2.0 * cos, 0.0, None))
        return angular
    if metric is Metric.EUCLIDEAN:
        euclidean: np.ndarray = np.linalg.norm(m - q, axis=1)
        return euclidean
    manhattan: np.ndarray = np.abs(m - q).sum(axis=1)
    return manhattan


def row_norms(matrix: np.ndarray) -> np.ndarray:
    """float32 L2 norm of each row (kept beside a matrix for fast angular distances)."""
    norms: np.ndarray = np.linalg.norm(np.asarray(matrix, dtype=np.float32), axis=1)
    return norms


def coarse_distances(
    matrix: np.ndarray, norms: np.ndarray, queries: np.ndarray, metric: Metric, chunk: int = 4096
) -> np.ndarray:
    """Approximate (float32) distances, (queries, rows), without float64 copies of the matrix:
    good for ranking many rows; refine the best few with `distances`."""
    q = np.asarray(queries, dtype=np.float32)
    rows = matrix.shape[0]
    if metric is Metric.ANGULAR:
        q_norms = np.linalg.norm(q, axis=1)
        cos = (q @ matrix.T) / (q_norms[:, None] * np.where(norms > 0, norms, 1.0)[None, :])
        angular: np.ndarray = np.sqrt(np.clip(2.0 - 2.0 * cos, 0.0, None))
        return angular
    out = np.empty((q.shape[0], rows), dtype=np.float32)
    for start in range(0, rows, chunk):  # bounded temporary: chunk x dims per query
        block = matrix[start : start + chunk]
        for i, query in enumerate(q):
            diff = block - query
            out[i, start : start + len(block)] = (
                np.sqrt(np.einsum("ij,ij->i", diff, diff))
                if metric is Metric.EUCLIDEAN
                else np.abs(diff).sum(axis=1)
            )
    return out


def top_k(dist: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest distances, closest first."""
    if k >= dist.shape[0]:
        return np.argsort(dist, kind="stable")
    part = np.argpartition(dist, k)[:k]
    ordered: np.ndarray = part[np.argsort(dist[part], kind="stable")]
    return ordered
