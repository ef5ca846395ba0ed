"""Merging per-shard search results into the collection's top-k. Pure functions: no gRPC."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Protocol, TypeVar


class HasDistance(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def distance(self) -> float: ...


H = TypeVar("H", bound=HasDistance)


def merge_top_k(per_shard: Iterable[list[H]], k: int) -> list[H]:
    """The global top-k of per-shard lists (each sorted closest first); ties by key. A key met
    on two shards (possible while a reshard moves it) counts once, at its smaller distance."""
    best: dict[str, H] = {}
    for hits in per_shard:
        for hit in hits:
            seen = best.get(hit.key)
            if seen is None or hit.distance < seen.distance:
                best[hit.key] = hit
    return heapq.nsmallest(k, best.values(), key=lambda h: (h.distance, h.key))
