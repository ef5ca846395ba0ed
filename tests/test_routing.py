"""Routing (rendezvous hashing) and merging, pure functions."""

from __future__ import annotations

from collections import Counter

from imagesim.client.merge import merge_top_k
from imagesim.routing import group_by_home, home, homes, score
from imagesim.types import Neighbor

SHARDS = ["s0", "s1", "s2", "s3"]


def test_routing_is_stable_and_spreads_keys():
    # Fixed values: routing must never change between versions, or keys would move shards.
    # First 8 bytes of SHA-256("shard_id NUL key"), big-endian; the highest score wins.
    assert score("s0", "a.jpg") == 6746697177440087916
    assert [home(k, SHARDS) for k in ("a.jpg", "photos/b.jpg", "ünïcode.png")] == [
        "s3",
        "s0",
        "s3",
    ]
    assert home("im1.jpg", ["only"]) == "only"
    assert home("a.jpg", SHARDS[::-1]) == "s3"  # the order of the ids does not matter
    counts = Counter(home(f"photos/im{i}.jpg", SHARDS) for i in range(4000))
    assert set(counts) == set(SHARDS) and min(counts.values()) > 900


def test_adding_a_shard_moves_only_the_keys_it_wins():
    keys = [f"photos/im{i}.jpg" for i in range(5000)]
    before = {k: home(k, SHARDS) for k in keys}
    after = {k: home(k, [*SHARDS, "s4"]) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(after[k] == "s4" for k in moved)
    assert 0.15 < len(moved) / len(keys) < 0.25  # about 1/(N+1) = 0.2
    assert homes("photos/im1.jpg", SHARDS, [*SHARDS, "s4"]) == {before[keys[1]], after[keys[1]]}
    groups = group_by_home(keys[:100], SHARDS)
    assert sorted(k for g in groups.values() for k in g) == sorted(keys[:100])


def test_merge_takes_the_global_top_k_with_ties_by_key():
    a = [Neighbor("a1", 0.1, "s1"), Neighbor("a2", 0.5, "s1")]
    b = [Neighbor("b1", 0.2, "s2"), Neighbor("b0", 0.5, "s2")]
    merged = merge_top_k([a, b, []], 3)
    assert [(n.key, n.shard) for n in merged] == [("a1", "s1"), ("b1", "s2"), ("a2", "s1")]
    assert [n.key for n in merge_top_k([a, b], 4)][-2:] == ["a2", "b0"]
    assert merge_top_k([[], []], 5) == []


def test_a_key_found_on_two_shards_counts_once():
    moving = [Neighbor("k", 0.3, "old"), Neighbor("x", 0.4, "old")]
    arrived = [Neighbor("k", 0.3, "new")]
    assert [n.key for n in merge_top_k([moving, arrived], 3)] == ["k", "x"]
