"""Routing and merging, pure functions."""

from __future__ import annotations

from collections import Counter

from imagesim.client.index_client import Neighbor
from imagesim.client.merge import merge_top_k, shard_for


def test_routing_is_stable_and_spreads_keys():
    # Fixed values: routing must never change between versions, or keys would move shards.
    # blake2b-64 of the UTF-8 key, big-endian, modulo the shard count.
    assert [shard_for(k, 4) for k in ("a.jpg", "photos/b.jpg", "ünïcode.png")] == [1, 0, 0]
    assert shard_for("im1.jpg", 1) == 0
    counts = Counter(shard_for(f"photos/im{i}.jpg", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 900


def test_merge_takes_the_global_top_k_with_ties_by_key():
    a = [Neighbor("a1", 0.1, "s1"), Neighbor("a2", 0.5, "s1")]
    b = [Neighbor("b1", 0.2, "s2"), Neighbor("b0", 0.5, "s2")]
    merged = merge_top_k([a, b, []], 3)
    assert [(n.key, n.shard) for n in merged] == [("a1", "s1"), ("b1", "s2"), ("a2", "s1")]
    assert [n.key for n in merge_top_k([a, b], 4)][-2:] == ["a2", "b0"]
    assert merge_top_k([[], []], 5) == []
