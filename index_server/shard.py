"""One shard of a collection: durable items, a memory-mapped Annoy generation, exact staging.

- Add/replace: stored durably (SQLite), then visible at once through the staging set, which is
  searched exactly and merged with the Annoy result.
- Remove: deleted durably; a removed or replaced item of the live generation is hidden from its
  results (over-fetch and filter) until the next build drops it.
- Build: a new generation over all items, built off the request path; searches use the old one
  until the new one is complete, then switch atomically.
Knows nothing of gRPC.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagesim.errors import FailedPrecondition, InvalidArgument, NotFound
from imagesim.index_server.generation import (
    Generation,
    build_generation,
    current_generation,
    remove_stale,
)
from imagesim.index_server.item_store import ItemStore, StoredItem
from imagesim.index_server.staging import StagingSet
from imagesim.index_server.vectors import as_vector, check_metric, distances, top_k

log = logging.getLogger(__name__)

DEFAULT_RERANK_FACTOR = 10


@dataclass(frozen=True)
class ShardConfig:
    data_dir: Path
    dims: int | None  # None: take it from the existing data directory
    metric: str = "angular"
    trees: int = 100
    auto_build: int = 20_000  # build in the background once staged + hidden reach this; 0 = off
    shard: tuple[int, int] | None = None  # (index, count) in the collection, if recorded
    project_dims: int = 0  # > 0: Annoy over a PCA projection to this many dims + exact re-rank


@dataclass(frozen=True)
class Hit:
    key: str
    distance: float
    metadata: dict[str, str] | None = None


@dataclass(frozen=True)
class ShardStats:
    count: int
    dims: int
    metric: str
    trees: int
    built: bool
    generation: int
    built_count: int
    staged: int
    removed: int
    index_bytes: int
    last_build_time: float
    last_build_seconds: float
    building: bool
    shard_index: int
    shard_count: int


@dataclass(frozen=True)
class _View:
    """What a search reads, swapped as one object so a search never sees half a change."""

    generation: Generation | None
    hidden: frozenset[int]  # internal ids of the generation removed or replaced since


class Shard:
    def __init__(self, config: ShardConfig) -> None:
        self.data_dir = Path(config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = ItemStore(self.data_dir / "items.sqlite3")
        self.dims, self.metric, self.place = self._check_layout(config)
        self.trees = config.trees
        self.auto_build = config.auto_build
        self.project_dims = config.project_dims
        self._lock = threading.Lock()  # guards the in-memory state below
        self._build_lock = threading.Lock()
        self._building = False
        self._live: dict[str, int] = self.store.key_seqs()  # key -> seq of live items
        generation = current_generation(self.data_dir, self.dims, self.metric)
        remove_stale(self.data_dir, generation)
        self._staging = StagingSet(self.dims)
        self._view = self._make_view(generation)
        # Only items newer than the generation are read back (the rest stay on disk, mapped).
        built = dict(zip(generation.keys, generation.seqs, strict=True)) if generation else {}
        for item in self.store.items([k for k, s in self._live.items() if built.get(k) != s]):
            self._staging.put(item.key, item.seq, item.vector)
        log.info(
            "shard %s: %d items (%d in generation %d, %d staged, %d hidden), %d-d %s",
            self.data_dir,
            len(self._live),
            generation.count if generation else 0,
            generation.number if generation else 0,
            len(self._staging),
            len(self._view.hidden),
            self.dims,
            self.metric,
        )

    def _check_layout(self, config: ShardConfig) -> tuple[int, str, tuple[int, int]]:
        """The shard's dims, metric and place in the collection are fixed at creation; a
        restart must agree (the place may be recorded later if it never was)."""
        metric = check_metric(config.metric)
        if config.shard is not None:
            index, count = config.shard
            if not 0 <= index < count:
                raise FailedPrecondition(f"shard {index}/{count}: need 0 <= index < count")
        layout = self.store.layout()
        if "dims" not in layout:
            if config.dims is None or config.dims <= 0:
                raise FailedPrecondition(
                    f"{self.data_dir} holds no shard yet: give --dims (e.g. 2048) to create one"
                )
            dims = config.dims
            self.store.set_layout({"dims": str(dims), "metric": metric})
        else:
            dims, stored_metric = int(layout["dims"]), layout["metric"]
            if (config.dims not in (None, dims)) or stored_metric != metric:
                raise FailedPrecondition(
                    f"{self.data_dir} holds a {dims}-d {stored_metric} shard; it cannot be served "
                    f"as {config.dims}-d {metric} (use another --data directory)"
                )
        place = (int(layout.get("shard_index", 0)), int(layout.get("shard_count", 0)))
        if config.shard is not None and place != config.shard:
            if place[1]:
                raise FailedPrecondition(
                    f"{self.data_dir} is shard {place[0]}/{place[1]}; it cannot be served as "
                    f"shard {config.shard[0]}/{config.shard[1]}"
                )
            place = config.shard
            self.store.set_layout({"shard_index": str(place[0]), "shard_count": str(place[1])})
        return dims, metric, place

    def _make_view(self, generation: Generation | None) -> _View:
        if generation is None:
            return _View(None, frozenset())
        hidden = frozenset(
            i
            for i, (key, seq) in enumerate(zip(generation.keys, generation.seqs, strict=True))
            if self._live.get(key) != seq
        )
        return _View(generation, hidden)

    def close(self) -> None:
        with self._build_lock:  # let a running build finish
            self.store.close()

    # ---- writes -------------------------------------------------------------------------

    def add(self, items: list[tuple[str, object, dict[str, str]]]) -> tuple[int, int]:
        """Validate all, then store all in one transaction. Returns (added, replaced)."""
        checked: list[tuple[str, np.ndarray, dict[str, str]]] = []
        seen: set[str] = set()
        for n, (key, values, metadata) in enumerate(items):
            if not key:
                raise InvalidArgument(f"item {n} has an empty key")
            if key in seen:
                raise InvalidArgument(f"key {key!r} appears twice in one request")
            seen.add(key)
            checked.append(
                (key, as_vector(values, self.dims, self.metric, f"item {key!r}"), dict(metadata))
            )
        if not checked:
            return 0, 0
        results = self.store.upsert(checked)
        with self._lock:
            for (key, seq, _), (_, vector, _) in zip(results, checked, strict=True):
                self._live[key] = seq
                self._staging.put(key, seq, vector)
            self._view = self._hide(self._view, [key for key, _, _ in results])
        replaced = sum(1 for _, _, was in results if was)
        self._maybe_auto_build()
        return len(results) - replaced, replaced

    def remove(self, keys: list[str]) -> tuple[int, int]:
        """Returns (removed, missing)."""
        removed = self.store.delete(keys)
        with self._lock:
            for key in removed:
                self._live.pop(key, None)
                self._staging.discard(key)
            self._view = self._hide(self._view, removed)
        self._maybe_auto_build()
        return len(removed), len(set(keys)) - len(removed)

    def _hide(self, view: _View, keys: list[str]) -> _View:
        generation = view.generation
        if generation is None:
            return view
        ids = [generation.ids[k] for k in keys if k in generation.ids]
        return _View(generation, view.hidden | frozenset(ids)) if ids else view

    # ---- builds -------------------------------------------------------------------------

    def _maybe_auto_build(self) -> None:
        if not self.auto_build or self._building:
            return
        if len(self._staging) + len(self._view.hidden) >= self.auto_build:
            threading.Thread(target=self._auto_build, name="auto-build", daemon=True).start()

    def _auto_build(self) -> None:
        if self._build_lock.acquire(blocking=False):
            try:
                self._build_locked(self.trees)
            except Exception:
                log.exception("background build failed; the previous generation stays live")
            finally:
                self._build_lock.release()

    def build(self, trees: int = 0) -> Generation | None:
        """Build a new generation over all items and make it live; returns it (None if the
        shard is empty and was never built)."""
        if trees < 0:
            raise InvalidArgument(f"trees must be >= 0, not {trees}")
        with self._build_lock:
            return self._build_locked(trees or self.trees)

    def _build_locked(self, trees: int) -> Generation | None:
        self._building = True
        try:
            old = self._view.generation
            number = (old.number if old else 0) + 1
            snapshot = ((i.key, i.seq, i.vector) for i in self.store.iter_items())
            if not self._live:
                return old
            generation = build_generation(
                self.data_dir, number, snapshot, self.dims, self.metric, trees, self.project_dims
            )
            with self._lock:
                # Writes that landed during the build stay staged or hidden.
                built = dict(zip(generation.keys, generation.seqs, strict=True))
                for key, seq, _ in self._staging.items():
                    if built.get(key) == seq:
                        self._staging.discard(key)
                self._view = self._make_view(generation)
            remove_stale(self.data_dir, generation)
            return generation
        finally:
            self._building = False

    # ---- reads --------------------------------------------------------------------------

    def search(
        self,
        vector: object,
        k: int,
        search_k: int = -1,
        rerank: bool = False,
        rerank_factor: int = 0,
        include_metadata: bool = False,
    ) -> list[Hit]:
        if k <= 0:
            raise InvalidArgument(f"k must be > 0, not {k}")
        query = as_vector(vector, self.dims, self.metric, "query vector")
        with self._lock:
            view = self._view
            staged = self._staging.search(query, k, self.metric)
        hits = staged + self._search_generation(view, query, k, search_k, rerank, rerank_factor)
        hits.sort()
        best = hits[:k]
        metadata = self.store.metadata([key for _, key in best]) if include_metadata else {}
        return [
            Hit(key, dist, metadata.get(key) if include_metadata else None) for dist, key in best
        ]

    def _search_generation(
        self, view: _View, query: np.ndarray, k: int, search_k: int, rerank: bool, factor: int
    ) -> list[tuple[float, str]]:
        generation = view.generation
        if generation is None or generation.count == 0:
            return []
        projection = generation.projection
        wanted = k * (factor or DEFAULT_RERANK_FACTOR) if rerank or projection else k
        n = min(wanted + len(view.hidden), generation.count)
        search_k = search_k if search_k > 0 else -1
        if projection is not None and generation.vectors is not None:
            # Candidates from the small projected index, distances exact in the full space.
            # Inspect as many nodes as a plain top-k search would (Annoy's default for n=k),
            # not pool x trees: the exact re-rank, not the projection, decides the order.
            if search_k <= 0:
                search_k = max(n, k * generation.trees)
            ids = generation.annoy.get_nns_by_vector(projection(query), n, search_k)
            ids = [i for i in ids if i not in view.hidden]
            exact = distances(generation.vectors[ids], query, self.metric)
            return [(float(exact[j]), generation.keys[ids[j]]) for j in top_k(exact, k)]
        ids, dists = generation.annoy.get_nns_by_vector(query, n, search_k, include_distances=True)
        # Annoy computes each returned candidate's distance from its stored vector exactly
        # (float32), so the first k of a larger candidate pool is the exact re-rank of it.
        keep = [(d, i) for i, d in zip(ids, dists, strict=True) if i not in view.hidden]
        return [(float(d), generation.keys[i]) for d, i in keep[:k]]

    def get(self, key: str) -> StoredItem:
        if not key:
            raise InvalidArgument("key is empty")
        item = self.store.get(key)
        if item is None:
            raise NotFound(f"no item with key {key!r} in this shard")
        return item

    def contains(self, keys: list[str]) -> list[bool]:
        with self._lock:
            return [key in self._live for key in keys]

    def stats(self) -> ShardStats:
        with self._lock:
            view, staged, count = self._view, len(self._staging), len(self._live)
        generation = view.generation
        return ShardStats(
            count=count,
            dims=self.dims,
            metric=self.metric,
            trees=generation.trees if generation else 0,
            built=generation is not None,
            generation=generation.number if generation else 0,
            built_count=generation.count if generation else 0,
            staged=staged,
            removed=len(view.hidden),
            index_bytes=generation.file_bytes if generation else 0,
            last_build_time=generation.built_at if generation else 0.0,
            last_build_seconds=generation.build_seconds if generation else 0.0,
            building=self._building,
            shard_index=self.place[0],
            shard_count=self.place[1],
        )
