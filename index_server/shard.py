"""One shard of a collection: durable items, a memory-mapped Annoy generation, exact staging.

- Add/replace: stored durably (SQLite), then visible at once through the staging set, which is
  searched exactly and merged with the Annoy result.
- Remove: deleted durably; a removed or replaced item of the live generation is hidden from its
  results until the next build drops it.
- Build: a new generation over all items, built off the request path; searches use the old one
  until the new one is complete, then switch atomically.

`Shard` is the facade: it owns the store, the write lock, the live keys, the recorded layout
and the current view, and composes the jobs kept in their own modules: `layout` (config,
directory lock, identity record, layout compare-and-set, placement), `limits` (request
checks), `view` (deriving and updating the view), `builds` (build lock, background builds,
retry backoff) and `searcher` (search checks, filter strategy, the search over one view).

Concurrency: one write lock covers each write from its SQLite transaction to its in-memory
effect, so disk and memory apply writes in the same order. Searches take no lock: they read the
current `View` (one reference) and the staging snapshot it publishes; flags only ever turn an
item off (hidden / dead), and a replacement is visible before its old row is hidden, so a
search sees every acknowledged write and never loses a key mid-replacement (it keeps the
newer copy when it meets both).

Lock order (outermost first; never taken the other way round):
1. the data directory's file lock (`lock_data_dir`): held for the shard's lifetime;
2. the build lock (`Builds.lock`): one build at a time; `close` takes it to wait for a build;
3. the write lock (`Shard._write_lock`): writes, layout changes, and a build's switch to its
   new generation (taken inside the build lock). Nothing that takes the build lock runs under
   it: a write starts a background build only after releasing it, on a thread of its own;
4. the store's writer lock (inside `ItemStore`), taken by its writes under either lock above,
   and by the store's WAL checkpoint thread for the short last pass of a round (it holds no
   other lock; see `wal_checkpointer`).
A write's staged rows are written by the `staging` worker while the write holds the write lock
and commits; the worker takes no lock, and the write waits for it before publishing the rows.

Knows nothing of gRPC.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from pathlib import Path

import numpy as np

from imagesim import reserved
from imagesim.errors import NotFound
from imagesim.index_server.builds import Builds
from imagesim.index_server.generation import Generation, check_projection, remove_stale
from imagesim.index_server.item_store import ItemStore, StoredItem
from imagesim.index_server.layout import (
    check_identity,
    check_layout,
    check_placement,
    check_successor,
    lock_data_dir,
)
from imagesim.index_server.limits import (
    check_count,
    check_items,
    check_key,
    check_range,
)
from imagesim.index_server.observer import NO_OBSERVER, ShardObserver
from imagesim.index_server.searcher import Searcher
from imagesim.index_server.settings import ShardConfig
from imagesim.index_server.staging import StagingSet
from imagesim.index_server.view import View, compacted, derive_view, hide
from imagesim.params import SearchParams
from imagesim.types import Layout, Neighbor, ShardStats

__all__ = [
    "Shard",
    "ShardConfig",
    "lock_data_dir",
]

log = logging.getLogger(__name__)


class Shard:
    def __init__(self, config: ShardConfig, observer: ShardObserver = NO_OBSERVER) -> None:
        self.observer = observer
        self.data_dir = Path(config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._dir_lock = lock_data_dir(self.data_dir)
        try:
            self._open(config)
        except BaseException:
            if hasattr(self, "store"):
                self.store.close()
            self._dir_lock.release()
            raise

    def _open(self, config: ShardConfig) -> None:
        config.limits.check()
        self.limits = config.limits
        self.store = ItemStore(self.data_dir / "items.sqlite3")
        self.dims, self.metric, self.shard_id = check_identity(
            self.store, self.data_dir, config.dims, config.metric, config.shard_id
        )
        self.trees = config.trees
        check_range("--trees", self.trees, 1, self.limits.max_trees)
        self.auto_build = config.auto_build
        self.project_dims = config.project_dims
        if self.project_dims:
            check_projection(self.metric)
            check_range("--project-dims", self.project_dims, 1, self.dims - 1)
        self._layout = Layout.from_json(self.store.layout().get("collection"))
        self._write_lock = threading.Lock()  # a write's SQLite commit and memory update
        # Writes a request's staged rows beside its transaction (one writer at a time).
        self._stager = futures.ThreadPoolExecutor(1, thread_name_prefix="staging")
        self._builds = Builds(
            self.store,
            self.data_dir,
            self.dims,
            self.metric,
            self.project_dims,
            self.trees,
            self.auto_build,
            self.observer,
            pending=lambda: self._view.pending,
            switch=self._switch,
        )
        self._searcher = Searcher(
            self.store, self.dims, self.metric, self.limits, current=lambda: self._view
        )
        self._live: dict[str, int] = self.store.key_seqs()  # key -> seq of live items
        generation = self._builds.load_current()
        remove_stale(self.data_dir)
        staging = StagingSet(self.dims, directory=self.data_dir)
        self._view = derive_view(generation, staging, self._live, self.store, reload=True)
        log.info(
            "shard %s (%s): %d items (%d in generation %d, %d staged, %d hidden), %d-d %s",
            self.shard_id,
            self.data_dir,
            len(self._live),
            generation.count if generation else 0,
            generation.number if generation else 0,
            len(self._view.staging),
            int(np.count_nonzero(self._view.hidden)),
            self.dims,
            self.metric.value,
        )
        self._builds.maybe_auto_build()

    def _switch(self, generation: Generation | None) -> None:
        """Make a just-built generation live (from a build, under the build lock). Writes that
        landed during the build stay staged or hidden."""
        with self._write_lock:
            self._view = derive_view(generation, self._view.staging, self._live, self.store)

    def close(self) -> None:
        with self._builds.lock:  # let a running build finish
            self._stager.shutdown()
            self.store.close()
            self._dir_lock.release()

    # ---- layout ---------------------------------------------------------------------------

    @property
    def layout(self) -> Layout:
        return self._layout

    def set_layout(self, layout: Layout, expected_version: int) -> Layout:
        """Record the collection layout (compare-and-set on its version)."""
        check_layout(layout, self.shard_id)
        with self._write_lock:
            check_successor(self._layout, layout, expected_version)
            self.store.set_layout({"collection": layout.to_json()})
            self._layout = layout
        log.info(
            "layout %d: %s (next: %s)", layout.version, layout.shard_ids, layout.next_shard_ids
        )
        return layout

    # ---- writes ---------------------------------------------------------------------------

    def add(
        self, items: Sequence[tuple[str, object, Mapping[str, str]]], layout_version: int = 0
    ) -> tuple[int, int]:
        """Validate all, then store all in one transaction. Returns (added, replaced)."""
        check_count("items", len(items), self.limits.max_items_per_request)
        if not items:
            return 0, 0
        keys, matrix = check_items(items, self.dims, self.metric, self.limits)
        checked = [(key, matrix[n], items[n][2]) for n, key in enumerate(keys)]
        with self._write_lock:
            # The layout cannot change meanwhile.
            check_placement(self._layout, self.shard_id, keys, layout_version)
            view = self._view
            # The staged rows are written while the transaction commits (both wait on I/O).
            reserving = self._stager.submit(view.staging.reserve, matrix)
            try:
                results = self.store.upsert(checked)
            finally:
                futures.wait([reserving])
            try:
                reserved = reserving.result()
            except Exception:  # the write is durable: stage it here, or fail as put_many would
                log.exception("staging rows beside the commit failed; staging them again")
                reserved = view.staging.reserve(matrix)
            # Visible before the old copies are hidden: a search never misses a key.
            view.staging.publish(keys, [seq for _, seq, _ in results], reserved)
            for key, seq, _ in results:
                hide(view, key)
                self._live[key] = seq
            self._compact_staging(view)
        replaced = sum(1 for _, _, was in results if was)
        self._builds.maybe_auto_build()
        return len(results) - replaced, replaced

    def remove(self, keys: Sequence[str]) -> tuple[int, int]:
        """Returns (removed, missing)."""
        check_count("keys", len(keys), self.limits.max_items_per_request)
        for key in keys:
            check_key(key, self.limits)
        with self._write_lock:
            removed = self.store.delete(list(keys))
            view = self._view
            for key in removed:
                view.staging.discard(key)
                hide(view, key)
                self._live.pop(key, None)
        self._builds.maybe_auto_build()
        return len(removed), len(set(keys)) - len(removed)

    def _compact_staging(self, view: View) -> None:
        """Rebuild the staging set once dead rows outnumber live ones (write lock held)."""
        fresh = compacted(view)
        if fresh is not None:
            self._view = fresh

    # ---- builds ---------------------------------------------------------------------------

    def build(self, trees: int = 0) -> Generation | None:
        """Build a new generation over all items and make it live; returns it (None if the
        shard holds no items: its generation, if any, is retired)."""
        check_range("trees", trees, 0, self.limits.max_trees)
        return self._builds.build(trees or self.trees)

    # ---- reads ----------------------------------------------------------------------------

    def check_search(self, count: int, params: SearchParams) -> None:
        self._searcher.check(count, params)

    def search(self, queries: Sequence[object], params: SearchParams) -> list[list[Neighbor]]:
        """The k nearest live items of each query vector, closest first."""
        started = time.perf_counter()
        hits = self._searcher.search(queries, params)
        self.observer.searched(time.perf_counter() - started)
        return hits

    def get(self, key: str) -> StoredItem:
        check_key(key, self.limits)
        item = self.store.get(key)
        if item is None:
            raise NotFound(f"no item with key {key[:80]!r} in this shard")
        return item

    def contains(self, keys: Sequence[str]) -> list[bool]:
        check_count("keys", len(keys), self.limits.max_items_per_request)
        live = self._live
        return [key in live for key in keys]

    def scan(
        self,
        page_size: int = 0,
        start_after: str = "",
        include_vectors: bool = False,
        max_page_bytes: int = 32 * 1024 * 1024,
    ) -> Iterator[list[StoredItem]]:
        """Pages of items in key order, each read in one snapshot."""
        check_range("page_size", page_size, 0, self.limits.max_page_size)
        size = page_size or self.limits.default_page_size
        while True:
            page = self.store.page(start_after, size, include_vectors, max_page_bytes)
            if not page:
                return
            yield page
            start_after = page[-1].key

    @property
    def count(self) -> int:
        """Live items."""
        return len(self._live)

    def stats(self) -> ShardStats:
        view = self._view
        generation = view.generation
        return ShardStats(
            count=len(self._live),
            dimension=self.dims,
            metric=self.metric,
            trees=generation.trees if generation else 0,
            built=generation is not None,
            generation=generation.number if generation else 0,
            built_count=generation.count if generation else 0,
            staged=len(view.staging),
            hidden=int(np.count_nonzero(view.hidden)),
            index_bytes=generation.file_bytes if generation else 0,
            last_build_time=generation.built_at if generation else None,
            last_build_seconds=generation.build_seconds if generation else None,
            building=self._builds.building,
            last_build_error=self._builds.last_error,
            shard_id=self.shard_id,
            layout=self._layout,
            project_dims=generation.projection.output_dims
            if generation is not None and generation.projection is not None
            else 0,
            limits=self.limits,
            models=self.store.metadata_index.count_values(reserved.MODEL),
            embedded_by=self.store.metadata_index.count_values(reserved.EMBEDDED_BY),
        )
