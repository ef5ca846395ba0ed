"""Search quality at the reference scale: 25,000 x 2048 structured vectors, one shard."""

from __future__ import annotations

import numpy as np
import pytest

from imagesim.enums import Metric
from imagesim.index_server.shard import Shard, ShardConfig
from imagesim.index_server.vectors import distances, top_k
from imagesim.params import SearchParams
from imagesim.recall import exact_top_k, recall_at_k
from tests.support.vectors import structured as structured_vectors

pytestmark = pytest.mark.slow

N, DIMS, K = 25_000, 2048, 10


def structured(n: int, seed: int) -> np.ndarray:
    return structured_vectors(n, DIMS, seed)


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


def recall(shard: Shard, data: np.ndarray, queries: np.ndarray, **params) -> float:
    found = shard.search(list(queries), SearchParams(k=K, **params))
    truth = [[f"k{i}" for i in row] for row in exact_top_k(data, queries, K)]
    return recall_at_k([[h.key for h in hits] for hits in found], truth)


def test_distances_are_the_exact_angular_ones(built_shard):
    shard, data = built_shard
    query = structured(1, seed=3)[0]
    hits = shard.search([query], SearchParams(k=K, rerank_factor=10))[0]
    exact = distances(data, query, Metric.ANGULAR)
    assert [h.key for h in hits] == [f"k{i}" for i in top_k(exact, K)]
    np.testing.assert_allclose([h.distance for h in hits], np.sort(exact)[:K], atol=1e-5)


def test_recall_at_10_with_rerank_is_at_least_099(built_shard):
    shard, data = built_shard
    queries = structured(100, seed=1)
    assert recall(shard, data, queries, rerank_factor=10) >= 0.99


def test_rerank_does_not_lose_recall(built_shard):
    shard, data = built_shard
    queries = structured(50, seed=2)
    assert recall(shard, data, queries, rerank_factor=10) >= recall(shard, data, queries)
