"""Exact neighbours and recall@k by cosine: the one implementation the reducer evaluation, the
benchmark and the tests share."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from imagesim.pca import l2_normalise


def exact_top_k(
    database: np.ndarray, queries: np.ndarray, k: int, exclude_self: bool = False
) -> np.ndarray:
    """Row indices of each query's k nearest database rows by angle (cosine), closest first.
    With `exclude_self`, queries are the database rows themselves and each skips itself."""
    sims = l2_normalise(queries) @ l2_normalise(database).T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    k = min(k, sims.shape[1])
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def recall_at_k(found: Sequence[Sequence[Hashable]], truth: Sequence[Sequence[Hashable]]) -> float:
    """Mean share of each true top-k list that the found list holds (k = len of truth rows)."""
    if not truth:
        raise ValueError("no queries")
    shares = [
        len(set(list(f)[: len(t)]) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(shares))


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine between each row of `a` and the same row of `b` (two embeddings of the same
    items)."""
    cosines: np.ndarray = (l2_normalise(a) * l2_normalise(b)).sum(axis=1)
    return cosines


def top_k_agreement(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """How much two embeddings of the same items agree: the mean share of each item's top-k
    neighbours among the others under `a` that are also its top-k under `b`."""
    return recall_at_k(
        exact_top_k(b, b, k, exclude_self=True).tolist(),
        exact_top_k(a, a, k, exclude_self=True).tolist(),
    )
