"""Search quality at the reference scale: 25,000 x 2048 structured vectors, one shard."""

from __future__ import annotations

import numpy as np
import pytest

from imagesim.index_server.shard import Shard, ShardConfig
from imagesim.index_server.vectors import distances, top_k

N, DIMS, K = 25_000, 2048, 10


def structured(n: int, seed: int) -> np.ndarray:
    """Clustered, non-negative (ReLU-like) vectors, like pooled CNN features: 500 clusters
    (subjects) of sparse positive centres, members spread around them."""
    centres = np.random.default_rng(42).gamma(0.5, 1.0, size=(500, DIMS))
    rng = np.random.default_rng(seed)
    data = centres[rng.integers(500, size=n)] + rng.normal(0.0, 0.35, size=(n, DIMS))
    return np.maximum(data, 0.0).astype(np.float32)


@pytest.fixture(scope="module", params=[0, 256], ids=["annoy-2048d", "projected-256d"])
def built_shard(request, tmp_path_factory):
    """A shard over N structured vectors: plain Annoy, and Annoy over a 256-d PCA projection
    (whose candidates are re-ranked exactly in 2048-d)."""
    shard = Shard(
        ShardConfig(
            tmp_path_factory.mktemp("recall"),
            DIMS,
            trees=50,
            auto_build=0,
            project_dims=request.param,
        )
    )
    data = structured(N, seed=0)
    for start in range(0, N, 2500):
        shard.add([(f"k{i}", data[i], {}) for i in range(start, start + 2500)])
    shard.build()
    yield shard, data
    shard.close()


def exact_neighbours(data: np.ndarray, queries: np.ndarray) -> list[set[str]]:
    """Brute force by cosine, all queries at once."""
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    sims = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    return [{f"k{i}" for i in np.argsort(-row)[:K]} for row in sims]


def recall_at_k(shard: Shard, data: np.ndarray, queries: np.ndarray, **options) -> float:
    found = sum(
        len(truth & {h.key for h in shard.search(query, K, **options)})
        for query, truth in zip(queries, exact_neighbours(data, queries), strict=True)
    )
    return found / (K * len(queries))


def test_distances_are_the_exact_angular_ones(built_shard):
    shard, data = built_shard
    query = structured(1, seed=3)[0]
    hits = shard.search(query, K, rerank=True)
    exact = distances(data, query, "angular")
    assert [h.key for h in hits] == [f"k{i}" for i in top_k(exact, K)]
    np.testing.assert_allclose([h.distance for h in hits], np.sort(exact)[:K], atol=1e-5)


def test_recall_at_10_with_rerank_is_at_least_099(built_shard):
    shard, data = built_shard
    queries = structured(100, seed=1)
    assert recall_at_k(shard, data, queries, rerank=True) >= 0.99


def test_rerank_does_not_lose_recall(built_shard):
    shard, data = built_shard
    queries = structured(50, seed=2)
    assert recall_at_k(shard, data, queries, rerank=True) >= recall_at_k(shard, data, queries)
