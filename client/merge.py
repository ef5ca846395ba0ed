"""Shard routing and merging of per-shard results. Pure functions: no gRPC."""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from typing import Protocol


class HasDistance(Protocol):
    key: str
    distance: float


def shard_for(key: str, shards: int) -> int:
    """Stable shard number of a key: blake2b-64 of its UTF-8 bytes, modulo the shard count.
    The same in every process, run and language."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def merge_top_k(per_shard: Iterable[list[HasDistance]], k: int) -> list[HasDistance]:
    """The global top-k of per-shard lists (each sorted closest first); ties by key."""
    return heapq.nsmallest(
        k, (hit for hits in per_shard for hit in hits), key=lambda h: (h.distance, h.key)
    )
