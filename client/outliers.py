"""Outliers of a collection: the items farthest from their nearest neighbours (blank or
corrupt-looking pictures, one-off images), found like duplicates without an n x n matrix.

Every item's vector is read once (a scan, page by page); the `neighbours` nearest other items of
a batch are asked for in one search; an item's score is its mean distance to them (more than
one neighbour, so two odd images that resemble only each other still stand out). A heap keeps
the `count` highest scores: memory is O(count), whatever the collection's size.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from imagesim.client.duplicates import NeighbourSource, batch_size, vector_batches
from imagesim.errors import InvalidArgument, Reason
from imagesim.params import SearchParams

DEFAULT_NEIGHBORS = 3
MAX_COUNT = 10_000


@dataclass(frozen=True)
class Outlier:
    key: str
    score: float  # mean distance to its `neighbours` nearest other items
    nearest: tuple[tuple[str, float], ...]  # those items, closest first


@dataclass
class OutlierReport:
    neighbors: int
    outliers: list[Outlier] = field(default_factory=list)  # most isolated first
    items: int = 0
    seconds: float = 0.0


def find_outliers(
    source: NeighbourSource,
    count: int = 50,
    neighbors: int = DEFAULT_NEIGHBORS,
    *,
    page_size: int = 1024,
    timeout: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> OutlierReport:
    """The `count` items of `source` with the largest mean distance to their `neighbours`
    nearest other items, most isolated first. An item with fewer other items than that (a tiny
    collection) is scored on those it has."""
    if not 1 <= count <= MAX_COUNT:
        raise InvalidArgument(
            f"count must be between 1 and {MAX_COUNT}, not {count}",
            reason=Reason.VALUE_OUT_OF_RANGE,
        )
    if not 1 <= neighbors <= 100:
        raise InvalidArgument(
            f"neighbours must be between 1 and 100, not {neighbors}",
            reason=Reason.VALUE_OUT_OF_RANGE,
        )
    started = time.monotonic()
    params = SearchParams(k=neighbors + 1)
    heap: list[tuple[float, str, tuple[tuple[str, float], ...]]] = []
    scanned = 0
    pages = source.scan(page_size=page_size, include_vectors=True, include_metadata=False)
    for keys, vectors in vector_batches(pages, batch_size(neighbors)):
        for key, result in zip(keys, source.search_many(vectors, params, timeout), strict=True):
            others = [(n.key, n.distance) for n in result.neighbors if n.key != key][:neighbors]
            if not others:
                continue  # alone in the collection: nothing to be far from
            entry = (float(np.mean([d for _, d in others])), key, tuple(others))
            if len(heap) < count:
                heapq.heappush(heap, entry)
            elif entry[0] > heap[0][0]:
                heapq.heapreplace(heap, entry)
        scanned += len(keys)
        if progress is not None:
            progress(scanned)
    ranked = sorted(heap, key=lambda e: (-e[0], e[1]))
    return OutlierReport(
        neighbors=neighbors,
        outliers=[Outlier(key, score, nearest) for score, key, nearest in ranked],
        items=scanned,
        seconds=time.monotonic() - started,
    )
