"""Near-duplicate groups of a whole collection, found with the nearest-neighbour index.

Never an n x n matrix (the memory errors imagededup's users hit at 60k-127k images): every
item's vector is read once (a scan, page by page), the neighbours of a batch of items within
`max_distance` are asked for in one search, and each pair found joins its two items in a
union-find forest. Memory is O(n): a key -> id map, a parent array and each item's closest
distance; vectors live only for one batch.

A group is a connected component of the "within max_distance" graph: two items of a group may
be farther apart than the threshold if a chain of closer pairs links them. Each item looks at
its `neighbours` nearest only, so an item with more near-duplicates than that still joins their
group through the others (the benchmark measures the agreement with an exact computation).

The algorithm knows nothing of gRPC: it runs on anything with the two methods of
`NeighbourSource` (a Collection has them).
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from imagesim.errors import Cancelled, InvalidArgument, Reason
from imagesim.params import SearchParams

if TYPE_CHECKING:
    from imagesim.client.collection import SearchResult
    from imagesim.types import Item

# Angular distance sqrt(2 - 2 cos) under which two items count as near-duplicates unless told
# otherwise. Measured on the sample photos with untrained weights: a photo's half-size, crop and
# most mirror variants lie 0.001-0.04 from it, the closest two distinct photos 0.047 apart.
# ImageNet weights spread vectors far more: raise it there.
DEFAULT_MAX_DISTANCE = 0.04

# What one Search may return in all, by default (imagesim-index --max-results-per-search):
# a batch of queries x (neighbours + 1) stays under it.
MAX_RESULTS_PER_SEARCH = 20_000
MAX_QUERIES_PER_SEARCH = 256


class NeighbourSource(Protocol):
    """What the finder needs of a collection."""

    def scan(
        self, page_size: int = 0, include_vectors: bool = False, include_metadata: bool = True
    ) -> Iterator[Item]: ...

    def search_many(
        self,
        vectors: np.ndarray,
        params: SearchParams = ...,
        timeout: float | None = None,
        allow_partial: bool = False,
    ) -> list[SearchResult]: ...


class UnionFind:
    """Disjoint sets over dense ids 0..n-1, grown one id at a time (union by size, path
    halving): near-constant time per operation, 16 bytes per id."""

    def __init__(self) -> None:
        self._parent = array("q")
        self._size = array("q")

    def __len__(self) -> int:
        return len(self._parent)

    def add(self) -> int:
        new = len(self._parent)
        self._parent.append(new)
        self._size.append(1)
        return new

    def find(self, x: int) -> int:
        parent = self._parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> int:
        """Join the sets of a and b; returns the root of the joined set."""
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        if self._size[a] < self._size[b]:
            a, b = b, a
        self._parent[b] = a
        self._size[a] += self._size[b]
        return a

    def size(self, x: int) -> int:
        return self._size[self.find(x)]


@dataclass(frozen=True)
class DuplicateGroup:
    """Items linked by near-duplicate pairs. `closest[i]` is the distance from keys[i] to its
    nearest other member that the search found."""

    keys: tuple[str, ...]
    closest: tuple[float, ...]

    @property
    def size(self) -> int:
        return len(self.keys)


@dataclass
class DuplicateReport:
    max_distance: float
    neighbors: int
    groups: list[DuplicateGroup] = field(default_factory=list)  # largest first
    items: int = 0  # items scanned
    # Neighbour links within max_distance found (a pair seen from both ends counts twice).
    links: int = 0
    seconds: float = 0.0

    @property
    def duplicated_items(self) -> int:
        return sum(group.size for group in self.groups)


def check_threshold(max_distance: float, neighbors: int) -> None:
    if not np.isfinite(max_distance) or max_distance < 0:
        raise InvalidArgument(
            f"max distance must be a finite number >= 0, not {max_distance}",
            reason=Reason.VALUE_OUT_OF_RANGE,
        )
    if not 1 <= neighbors < MAX_RESULTS_PER_SEARCH:
        raise InvalidArgument(
            f"neighbours must be between 1 and {MAX_RESULTS_PER_SEARCH - 1}, not {neighbors}",
            reason=Reason.VALUE_OUT_OF_RANGE,
        )


def batch_size(neighbors: int) -> int:
    """Queries per search so that one search returns at most MAX_RESULTS_PER_SEARCH."""
    return max(1, min(MAX_QUERIES_PER_SEARCH, MAX_RESULTS_PER_SEARCH // (neighbors + 1)))


class _Finder:
    def __init__(self, max_distance: float) -> None:
        self.max_distance = max_distance
        self.forest = UnionFind()
        self.ids: dict[str, int] = {}
        self.keys: list[str] = []
        self.closest = array("d")
        self.links = 0

    def id_of(self, key: str) -> int:
        found = self.ids.get(key)
        if found is None:
            found = self.ids[key] = self.forest.add()
            self.keys.append(key)
            self.closest.append(np.inf)
        return found

    def link(self, key: str, result: SearchResult) -> None:
        a = self.id_of(key)
        for neighbour in result.neighbors:
            if neighbour.key == key or not neighbour.distance <= self.max_distance:
                continue
            b = self.id_of(neighbour.key)
            self.forest.union(a, b)
            self.links += 1
            self.closest[a] = min(self.closest[a], neighbour.distance)
            self.closest[b] = min(self.closest[b], neighbour.distance)

    def groups(self) -> list[DuplicateGroup]:
        members: dict[int, list[int]] = {}
        for item in range(len(self.forest)):
            if self.forest.size(item) > 1:
                members.setdefault(self.forest.find(item), []).append(item)
        groups = []
        for ids in members.values():
            ids.sort(key=lambda i: self.keys[i])
            groups.append(
                DuplicateGroup(
                    tuple(self.keys[i] for i in ids), tuple(float(self.closest[i]) for i in ids)
                )
            )
        groups.sort(key=lambda g: (-g.size, g.keys[0]))
        return groups


def find_duplicates(
    source: NeighbourSource,
    max_distance: float,
    neighbors: int = 10,
    *,
    page_size: int = 1024,
    timeout: float | None = None,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> DuplicateReport:
    """Groups of near-duplicates among every item of `source`, largest group first.

    `neighbours`: how many nearest items each item links to at most. `timeout`: deadline of
    each batched search. `progress(items_scanned)` is called after every batch;
    `should_stop()` is asked before every batch (Cancelled when it says yes)."""
    check_threshold(max_distance, neighbors)
    started = time.monotonic()
    finder = _Finder(max_distance)
    params = SearchParams(k=neighbors + 1, max_distance=max_distance)
    per_batch = batch_size(neighbors)
    scanned = 0
    for keys, vectors in vector_batches(
        source.scan(page_size=page_size, include_vectors=True, include_metadata=False), per_batch
    ):
        if should_stop is not None and should_stop():
            raise Cancelled("the duplicate search was stopped")
        for key in keys:
            finder.id_of(key)
        results = source.search_many(vectors, params, timeout)
        for key, result in zip(keys, results, strict=True):
            finder.link(key, result)
        scanned += len(keys)
        if progress is not None:
            progress(scanned)
    groups = finder.groups()
    return DuplicateReport(
        max_distance=max_distance,
        neighbors=neighbors,
        groups=groups,
        items=scanned,
        links=finder.links,
        seconds=time.monotonic() - started,
    )


def vector_batches(items: Iterable[Item], size: int) -> Iterator[tuple[list[str], np.ndarray]]:
    keys: list[str] = []
    vectors: list[np.ndarray] = []
    for item in items:
        keys.append(item.key)
        vectors.append(item.vector)
        if len(keys) == size:
            yield keys, np.stack(vectors)
            keys, vectors = [], []
    if keys:
        yield keys, np.stack(vectors)
