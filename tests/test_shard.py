"""The shard core in-process: real SQLite, real Annoy files, no gRPC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagesim.enums import Metric
from imagesim.errors import FailedPrecondition, InvalidArgument, NotFound, Reason
from imagesim.index_server.shard import Shard, ShardConfig
from imagesim.index_server.vectors import distances
from imagesim.params import SearchParams
from imagesim.types import Neighbor

DIMS = 32


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIMS)).astype(np.float32)


def open_shard(path: Path, **kwargs) -> Shard:
    if "metric" in kwargs:
        kwargs["metric"] = Metric(kwargs["metric"])
    return Shard(
        ShardConfig(path, kwargs.pop("dims", DIMS), trees=kwargs.pop("trees", 10), **kwargs)
    )


def search(shard: Shard, vector, k: int, **params) -> list[Neighbor]:
    """One query's hits."""
    return shard.search([vector], SearchParams(k=k, **params))[0]


def add_all(shard: Shard, data: np.ndarray, prefix: str = "k") -> None:
    shard.add([(f"{prefix}{i}", v, {"i": str(i)}) for i, v in enumerate(data)])


def exact_top(data: np.ndarray, query: np.ndarray, k: int, prefix: str = "k") -> list[str]:
    order = np.argsort(distances(data, query, Metric.ANGULAR), kind="stable")[:k]
    return [f"{prefix}{i}" for i in order]


def test_unbuilt_shard_is_searched_exactly(tmp_path):
    shard = open_shard(tmp_path)
    data = vectors(200)
    add_all(shard, data)
    hits = search(shard, data[7], 5)
    assert [h.key for h in hits] == exact_top(data, data[7], 5)
    assert hits[0].key == "k7" and hits[0].distance == pytest.approx(0, abs=1e-6)
    assert not shard.stats().built


def test_build_then_adds_removes_and_replacements_show_at_once(tmp_path):
    shard = open_shard(tmp_path)
    data = vectors(300)
    add_all(shard, data)
    shard.build()
    stats = shard.stats()
    assert (stats.built, stats.generation, stats.built_count, stats.staged) == (True, 1, 300, 0)

    new = vectors(1, seed=9)[0]
    shard.add([("fresh", new, {})])
    assert search(shard, new, 1)[0].key == "fresh"

    shard.remove(["k5"])
    assert all(h.key != "k5" for h in search(shard, data[5], 10))

    shard.add([("k6", -data[6], {"replaced": "yes"})])  # replace: the old vector must vanish
    assert search(shard, data[6], 1)[0].key != "k6"
    assert search(shard, -data[6], 1)[0].key == "k6"
    assert shard.get("k6").metadata == {"replaced": "yes"}
    stats = shard.stats()
    assert (stats.count, stats.staged, stats.hidden) == (300, 2, 2)

    shard.build()
    stats = shard.stats()
    assert (stats.generation, stats.built_count, stats.staged, stats.hidden) == (2, 300, 0, 0)
    assert all(h.key != "k5" for h in search(shard, data[5], 300))


def test_restart_loads_generation_and_staged_items(tmp_path):
    shard = open_shard(tmp_path)
    data = vectors(100)
    add_all(shard, data)
    shard.build()
    shard.add([("late", data[3] * 2, {})])
    shard.remove(["k4"])
    shard.close()

    again = open_shard(tmp_path, dims=None)  # dims come from the data directory
    stats = again.stats()
    assert (stats.count, stats.generation, stats.staged, stats.hidden) == (100, 1, 1, 1)
    assert {h.key for h in search(again, data[3], 2)} == {"k3", "late"}
    assert all(h.key != "k4" for h in search(again, data[4], 100))


def test_rerank_distances_are_exact_and_metadata_comes_back(tmp_path):
    shard = open_shard(tmp_path)
    data = vectors(500)
    add_all(shard, data)
    shard.build()
    query = vectors(1, seed=5)[0]
    hits = search(shard, query, 10, rerank_factor=10, include_metadata=True)
    exact = distances(data, query, Metric.ANGULAR)
    for hit in hits:
        assert hit.distance == pytest.approx(exact[int(hit.key[1:])], abs=1e-5)
        assert hit.metadata == {"i": hit.key[1:]}
    assert [h.key for h in hits] == exact_top(data, query, 10)


@pytest.mark.parametrize(
    "call, reason",
    [
        (lambda s: s.add([("", np.ones(DIMS), {})]), Reason.KEY_EMPTY),
        (lambda s: s.add([("k" * 1025, np.ones(DIMS), {})]), Reason.KEY_TOO_LONG),
        (lambda s: s.add([("a", np.ones(DIMS), {"m": "x" * 70_000})]), Reason.METADATA_TOO_LARGE),
        (
            lambda s: s.add([("a", np.ones(DIMS), {}), ("a", np.ones(DIMS), {})]),
            Reason.KEY_DUPLICATE,
        ),
        (
            lambda s: s.add([(f"k{i}", np.ones(DIMS), {}) for i in range(4097)]),
            Reason.TOO_MANY_ITEMS,
        ),
        (lambda s: s.add([("a", np.ones(DIMS + 1), {})]), Reason.DIMENSION_MISMATCH),
        (lambda s: s.add([("a", np.full(DIMS, np.nan), {})]), Reason.VECTOR_NOT_FINITE),
        (lambda s: s.add([("a", np.full(DIMS, 3e38), {})]), Reason.VECTOR_NOT_FINITE),
        (lambda s: s.add([("a", np.zeros(DIMS), {})]), Reason.VECTOR_ZERO),
        (lambda s: s.add([("a", np.full(DIMS, 1e-45), {})]), Reason.VECTOR_ZERO),
        (lambda s: search(s, np.ones(DIMS), 0), Reason.VALUE_OUT_OF_RANGE),
        (lambda s: search(s, np.ones(DIMS), 1001), Reason.VALUE_OUT_OF_RANGE),
        (lambda s: search(s, np.ones(DIMS), 1, search_k=10**8), Reason.VALUE_OUT_OF_RANGE),
        (
            lambda s: search(s, np.ones(DIMS), 1, max_distance=float("nan")),
            Reason.VALUE_OUT_OF_RANGE,
        ),
        (lambda s: search(s, np.ones(3), 1), Reason.DIMENSION_MISMATCH),
        (lambda s: search(s, [np.inf] * DIMS, 1), Reason.VECTOR_NOT_FINITE),
        (lambda s: s.search([np.ones(DIMS)] * 257, SearchParams(k=1)), Reason.TOO_MANY_ITEMS),
        (lambda s: s.search([np.ones(DIMS)] * 100, SearchParams(k=1000)), Reason.TOO_MANY_ITEMS),
        (lambda s: s.build(trees=1001), Reason.VALUE_OUT_OF_RANGE),
        (lambda s: s.get("k" * 2000), Reason.KEY_TOO_LONG),
    ],
)
def test_bad_input_is_invalid_argument_with_a_reason_and_stores_nothing(tmp_path, call, reason):
    shard = open_shard(tmp_path)
    with pytest.raises(InvalidArgument) as caught:
        call(shard)
    assert caught.value.reason == reason.value
    assert shard.stats().count == 0


def test_request_is_all_or_nothing(tmp_path):
    shard = open_shard(tmp_path)
    with pytest.raises(InvalidArgument):
        shard.add([("good", np.ones(DIMS), {}), ("bad", np.ones(2), {})])
    assert shard.stats().count == 0


def test_get_missing_key_is_not_found(tmp_path):
    with pytest.raises(NotFound):
        open_shard(tmp_path).get("nope")


def test_layout_is_fixed_at_creation(tmp_path):
    open_shard(tmp_path).close()
    with pytest.raises(FailedPrecondition, match="32-d angular"):
        open_shard(tmp_path, dims=64)
    with pytest.raises(FailedPrecondition, match="euclidean"):
        open_shard(tmp_path, metric="euclidean")
    with pytest.raises(FailedPrecondition, match="give --dims"):
        open_shard(tmp_path / "new", dims=None)


def test_unfinished_build_directory_is_ignored_and_cleaned(tmp_path):
    shard = open_shard(tmp_path)
    add_all(shard, vectors(50))
    shard.build()
    shard.close()
    leftover = tmp_path / "generations" / ".tmp-gen-000002"
    leftover.mkdir()
    (leftover / "index.ann").write_bytes(b"half written")
    again = open_shard(tmp_path)
    assert again.stats().generation == 1
    assert not leftover.exists()


@pytest.mark.parametrize("metric", ["euclidean", "manhattan"])
def test_other_metrics_build_and_reload(tmp_path, metric):
    shard = open_shard(tmp_path, metric=metric)
    data = vectors(100)
    add_all(shard, data)
    shard.build()
    shard.close()
    again = open_shard(tmp_path, metric=metric)
    hit = search(again, data[9], 1)[0]
    assert hit.key == "k9" and hit.distance == pytest.approx(0, abs=1e-5)


def test_projected_index_reranks_exactly_and_survives_restart(tmp_path):
    shard = open_shard(tmp_path, project_dims=8)
    data = vectors(400)
    add_all(shard, data)
    shard.build()
    assert (tmp_path / "generations" / "gen-000001" / "projection.npz").exists()
    query = vectors(1, seed=11)[0]
    hits = search(shard, query, 5, search_k=10**6)  # every candidate: the re-rank must be exact
    exact = distances(data, query, Metric.ANGULAR)
    assert [h.key for h in hits] == exact_top(data, query, 5)
    np.testing.assert_allclose([h.distance for h in hits], np.sort(exact)[:5], atol=1e-5)
    shard.remove(["k1"])
    shard.close()
    again = open_shard(tmp_path, project_dims=8)
    assert search(again, data[1], 1)[0].key != "k1"
    assert search(again, data[2], 1)[0].key == "k2"
