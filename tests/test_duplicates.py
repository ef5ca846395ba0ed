"""Duplicate groups found through real shards agree with an exact computation (connected
components of the threshold graph over all pairs), and the union-find they rest on."""

from __future__ import annotations

import numpy as np
import pytest

from imagesim.client.collection import Collection
from imagesim.client.duplicates import UnionFind, batch_size, find_duplicates
from imagesim.errors import Cancelled, InvalidArgument
from imagesim.types import ItemToAdd
from tests.support.vectors import structured


def angular(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ua = a / np.linalg.norm(a, axis=1, keepdims=True)
    ub = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * ua @ ub.T))


def exact_groups(keys: list[str], vectors: np.ndarray, max_distance: float) -> set[frozenset]:
    """Connected components (size >= 2) of the all-pairs threshold graph, by label spreading."""
    near = angular(vectors, vectors) <= max_distance
    labels = np.arange(len(keys))
    while True:
        spread = np.where(near, labels[None, :], len(keys)).min(axis=1)
        if np.array_equal(spread, labels):
            break
        labels = spread
    groups: dict[int, set[str]] = {}
    for key, label in zip(keys, labels, strict=True):
        groups.setdefault(int(label), set()).add(key)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def planted(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """`n` structured vectors, then copies of some of them with a little noise: groups of
    2-6 near-duplicates, a few chained (a-b and b-c close, a-c farther)."""
    rng = np.random.default_rng(seed)
    base = structured(n, 512, seed=seed)
    keys = [f"item-{i:05d}" for i in range(n)]
    extra_keys, extra = [], []
    for g, source in enumerate(rng.choice(n, size=n // 10, replace=False)):
        copies = int(rng.integers(1, 6))
        previous = base[source]
        for c in range(copies):
            # Every other group is a chain: each copy is made from the one before.
            origin = previous if g % 2 else base[source]
            copy = np.maximum(origin + rng.normal(0, 0.02, size=512), 1e-3).astype(np.float32)
            extra_keys.append(f"dup-{g:04d}-{c}")
            extra.append(copy)
            previous = copy
    return keys + extra_keys, np.vstack([base, np.stack(extra)])


def test_union_find_agrees_with_naive_labels():
    rng = np.random.default_rng(3)
    forest = UnionFind()
    n = 500
    for _ in range(n):
        forest.add()
    labels = list(range(n))
    for a, b in rng.integers(0, n, size=(300, 2)):
        forest.union(int(a), int(b))
        old, new = labels[a], labels[b]
        labels = [new if label == old else label for label in labels]
    for a in range(n):
        for b in rng.integers(0, n, size=20):
            assert (forest.find(a) == forest.find(int(b))) == (labels[a] == labels[int(b)])
    assert sum(forest.size(i) for i in {forest.find(i) for i in range(n)}) == n


def test_batches_stay_under_the_shards_result_limit():
    for neighbors in (1, 10, 77, 78, 1000, 19_999):
        per_batch = batch_size(neighbors)
        assert 1 <= per_batch <= 256 and per_batch * (neighbors + 1) <= 20_000


def test_groups_over_two_shards_match_the_exact_components(start_shard):
    keys, vectors = planted(1500, seed=1)
    shards = [start_shard(512, name=f"s{i}") for i in range(2)]
    with Collection([s.address for s in shards]) as collection:
        collection.add(
            [ItemToAdd(k, v) for k, v in zip(keys, vectors, strict=True)],
        )
        collection.build()
        threshold = 0.05
        truth = exact_groups(keys, vectors, threshold)
        assert len(truth) > 100  # the planted groups, some chained
        seen: list[int] = []
        report = find_duplicates(
            collection, threshold, neighbors=10, page_size=300, progress=seen.append
        )
    found = {frozenset(g.keys) for g in report.groups}
    assert found == truth
    assert report.items == len(keys) and seen[-1] == len(keys)
    assert seen == sorted(seen) and len(seen) > 1  # reported batch by batch
    sizes = [g.size for g in report.groups]
    assert sizes == sorted(sizes, reverse=True)
    exact = angular(vectors, vectors)
    np.fill_diagonal(exact, np.inf)
    index = {k: i for i, k in enumerate(keys)}
    for group in report.groups[:20]:
        members = [index[k] for k in group.keys]
        for key, closest in zip(group.keys, group.closest, strict=True):
            nearest = exact[index[key], members].min()
            assert closest == pytest.approx(nearest, abs=1e-4)


def test_identical_vectors_group_at_a_tiny_threshold_and_a_stop_is_honoured(start_shard):
    shard = start_shard(64)
    rng = np.random.default_rng(5)
    vectors = rng.random((300, 64), dtype=np.float32) + 0.01
    same = vectors[7]
    items = [ItemToAdd(f"k{i:03d}", v) for i, v in enumerate(vectors)]
    items += [ItemToAdd("copy-a", same), ItemToAdd("copy-b", same)]
    with Collection([shard.address]) as collection:
        collection.add(items)
        # float32 angular distances of identical vectors are ~3e-4, not 0: copies need a
        # threshold a little above 0.
        report = find_duplicates(collection, 0.001, neighbors=3)
        assert [g.keys for g in report.groups] == [("copy-a", "copy-b", "k007")]
        assert report.groups[0].closest == pytest.approx((0.0, 0.0, 0.0), abs=1e-3)
        assert report.links == 6  # each of the three sees the other two
        asked = []
        with pytest.raises(Cancelled):
            find_duplicates(
                collection, 0.1, neighbors=3, should_stop=lambda: asked.append(1) or len(asked) > 1
            )


@pytest.mark.parametrize("distance", [-0.1, float("nan"), float("inf")])
def test_a_threshold_that_is_not_a_distance_is_refused(distance):
    with pytest.raises(InvalidArgument):
        find_duplicates(None, distance)  # type: ignore[arg-type] - refused before any call
