"""One shard of a collection: durable items, a memory-mapped Annoy generation, exact staging.

- Add/replace: stored durably (SQLite), then visible at once through the staging set, which is
  searched exactly and merged with the Annoy result.
- Remove: deleted durably; a removed or replaced item of the live generation is hidden from its
  results until the next build drops it.
- Build: a new generation over all items, built off the request path; searches use the old one
  until the new one is complete, then switch atomically.

Concurrency: one write lock covers each write from its SQLite transaction to its in-memory
effect, so disk and memory apply writes in the same order. Searches take no lock: they read the
current `_View` (one reference) and the staging snapshot it publishes; flags only ever turn an
item off (hidden / dead), and a replacement is visible before its old row is hidden, so a
search sees every acknowledged write and never loses a key mid-replacement (it keeps the
newer copy when it meets both).

Knows nothing of gRPC.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from imagesim import reserved
from imagesim.enums import Metric
from imagesim.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, Reason
from imagesim.heap import release_free_memory
from imagesim.index_server.generation import (
    Generation,
    GenerationBuilder,
    check_projection,
    current_generation,
    publish,
    remove_stale,
    retire,
)
from imagesim.index_server.item_store import ItemStore, StoredItem
from imagesim.index_server.limits import (
    IndexLimits,
    check_count,
    check_key,
    check_metadata,
    check_range,
)
from imagesim.index_server.observer import NO_OBSERVER, ShardObserver
from imagesim.index_server.settings import ShardConfig
from imagesim.index_server.staging import KeepFn, StagingSet
from imagesim.index_server.vectors import as_vector, as_vectors, distances
from imagesim.params import DEFAULT_RERANK_FACTOR, SearchParams
from imagesim.routing import homes

log = logging.getLogger(__name__)

LOCK_FILE = "LOCK"
# A metadata filter matching at most this many items is answered by an exact search over
# exactly those items (read from the store) instead of filtering Annoy's candidates.
EXACT_FILTER_ITEMS = 4096
MAX_FILTER_PAIRS = 32
MAX_RERANK_FACTOR = 100
MAX_SHARDS = 10_000
SHARD_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
INT32_MAX = 2**31 - 1
# Background builds that failed wait this long (doubling per failure, at most an hour).
RETRY_FIRST_SECONDS = 30.0
RETRY_MAX_SECONDS = 3600.0
RELOAD_CHUNK = 4096  # staged items read back from the store at a time when a shard opens


@dataclass(frozen=True)
class Hit:
    key: str
    distance: float
    metadata: dict[str, str] | None = None


@dataclass(frozen=True)
class CollectionLayout:
    """The shards of the collection this shard belongs to, as recorded on it."""

    version: int = 0
    shard_ids: tuple[str, ...] = ()
    next_shard_ids: tuple[str, ...] = ()  # while a reshard moves items

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "shard_ids": list(self.shard_ids),
                "next_shard_ids": list(self.next_shard_ids),
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> CollectionLayout:
        if not text:
            return cls()
        value = json.loads(text)
        return cls(value["version"], tuple(value["shard_ids"]), tuple(value["next_shard_ids"]))


@dataclass(frozen=True)
class ShardStats:
    count: int
    dims: int
    metric: Metric
    trees: int
    built: bool
    generation: int
    built_count: int
    staged: int
    hidden: int
    index_bytes: int
    last_build_time: float | None  # Unix seconds
    last_build_seconds: float | None
    building: bool
    last_build_error: str
    shard_id: str
    layout: CollectionLayout
    project_dims: int
    limits: IndexLimits
    models: dict[str, int]  # items per value of the reserved metadata key imagesim.model
    embedded_by: dict[str, int]  # items per runtime/precision (imagesim.embedded_by)


@dataclass(frozen=True)
class _View:
    """What a search reads, replaced as one reference when a build switches generations."""

    generation: Generation | None
    hidden: np.ndarray  # bool per internal id of the generation: removed or replaced since
    staging: StagingSet


def lock_data_dir(data_dir: Path) -> FileLock:
    """Hold the data directory for this process's lifetime: one owner per directory."""
    path = data_dir / LOCK_FILE
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise FailedPrecondition(
            f"{data_dir} is in use by another imagesim-index process (it holds the lock {path}); "
            "stop that process or give this one another --data directory"
        ) from None
    return lock


class Shard:
    def __init__(self, config: ShardConfig, observer: ShardObserver = NO_OBSERVER) -> None:
        self.observer = observer
        self.data_dir = Path(config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._dir_lock = lock_data_dir(self.data_dir)
        try:
            self._open(config)
        except BaseException:
            self._dir_lock.release()
            raise

    def _open(self, config: ShardConfig) -> None:
        config.limits.check()
        self.limits = config.limits
        self.store = ItemStore(self.data_dir / "items.sqlite3")
        self.dims, self.metric, self.shard_id = self._check_layout(config)
        self.trees = config.trees
        check_range("--trees", self.trees, 1, self.limits.max_trees)
        self.auto_build = config.auto_build
        self.project_dims = config.project_dims
        if self.project_dims:
            check_projection(self.metric)
            check_range("--project-dims", self.project_dims, 1, self.dims - 1)
        self._layout = CollectionLayout.from_json(self.store.layout().get("collection"))
        self._write_lock = threading.Lock()  # a write's SQLite commit and memory update
        self._build_lock = threading.Lock()
        self._building = False
        self._build_failures = 0
        self._retry_build_at = 0.0
        self._last_build_error = ""
        self._live: dict[str, int] = self.store.key_seqs()  # key -> seq of live items
        generation = self._load_current()
        remove_stale(self.data_dir)
        staging = StagingSet(self.dims, directory=self.data_dir)
        self._view = self._derive_view(generation, staging, reload=True)
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
        self._maybe_auto_build()

    def _load_current(self) -> Generation | None:
        try:
            return current_generation(self.data_dir, self.dims, self.metric)
        except FailedPrecondition as exc:
            # The items are safe in the store: serve them exactly and build again.
            log.error("%s; serving every item exactly until the next build", exc.message)
            self._last_build_error = exc.message
            retire(self.data_dir)
            return None

    def _check_layout(self, config: ShardConfig) -> tuple[int, Metric, str]:
        """The shard's dims, metric and id are fixed at creation; a restart must agree."""
        metric = Metric(config.metric)
        if config.shard_id is not None and not SHARD_ID.fullmatch(config.shard_id):
            raise FailedPrecondition(
                f"shard id {config.shard_id!r}: use 1-128 letters, digits, '.', '_' or '-'"
            )
        layout = self.store.layout()
        if "dims" not in layout:
            if config.dims is None or config.dims <= 0:
                raise FailedPrecondition(
                    f"{self.data_dir} holds no shard yet: give --dims (e.g. 2048) to create one"
                )
            shard_id = config.shard_id or f"shard-{uuid.uuid4().hex[:10]}"
            self.store.set_layout(
                {"dims": str(config.dims), "metric": metric.value, "shard_id": shard_id}
            )
            return config.dims, metric, shard_id
        if "metric" not in layout:
            raise FailedPrecondition(f"{self.data_dir}: the shard's layout record is damaged")
        dims, stored_metric = int(layout["dims"]), layout["metric"]
        if (config.dims not in (None, dims)) or stored_metric != metric.value:
            raise FailedPrecondition(
                f"{self.data_dir} holds a {dims}-d {stored_metric} shard; it cannot be served "
                f"as {config.dims}-d {metric.value} (use another --data directory)"
            )
        recorded = layout.get("shard_id")
        if recorded is None:  # created before shard ids existed
            recorded = config.shard_id or f"shard-{uuid.uuid4().hex[:10]}"
            self.store.set_layout({"shard_id": recorded})
        elif config.shard_id not in (None, recorded):
            raise FailedPrecondition(
                f"{self.data_dir} is shard {recorded!r}; it cannot be served as {config.shard_id!r}"
            )
        return dims, metric, recorded

    def _derive_view(
        self, generation: Generation | None, staging: StagingSet, reload: bool = False
    ) -> _View:
        """The view of `generation` given the live items (caller holds the write lock or is
        the constructor). Items whose live version is not in the generation are staged: from
        the old staging set, or (`reload`) read back from the store."""
        built: dict[str, int] = {}
        hidden = np.zeros(0, dtype=bool)
        if generation is not None:
            built = dict(zip(generation.keys, generation.seqs, strict=True))
            hidden = np.fromiter(
                (self._live.get(key) != seq for key, seq in built.items()),
                dtype=bool,
                count=generation.count,
            )
        fresh = staging.empty()
        if reload:
            newer = [key for key, seq in self._live.items() if built.get(key) != seq]
            for start in range(0, len(newer), RELOAD_CHUNK):
                items = self.store.items(newer[start : start + RELOAD_CHUNK])
                if items:
                    fresh.put_many(
                        [i.key for i in items],
                        [i.seq for i in items],
                        np.stack([i.vector for i in items]),
                    )
        else:
            for key, seq, vector in staging.items():
                if built.get(key) != seq:
                    fresh.put(key, seq, vector)
        return _View(generation, hidden, fresh)

    def close(self) -> None:
        with self._build_lock:  # let a running build finish
            self.store.close()
            self._dir_lock.release()

    # ---- layout ---------------------------------------------------------------------------

    @property
    def layout(self) -> CollectionLayout:
        return self._layout

    def set_layout(self, layout: CollectionLayout, expected_version: int) -> CollectionLayout:
        """Record the collection layout (compare-and-set on its version)."""
        ids = [*layout.shard_ids, *layout.next_shard_ids]
        check_count("shard ids", len(ids), 2 * MAX_SHARDS)
        for group in (layout.shard_ids, layout.next_shard_ids):
            if len(set(group)) != len(group):
                raise InvalidArgument("a shard id is listed twice", reason=Reason.KEY_DUPLICATE)
        if not layout.shard_ids:
            raise InvalidArgument("a layout needs at least one shard id", reason=Reason.KEY_EMPTY)
        for shard_id in ids:
            if not SHARD_ID.fullmatch(shard_id):
                raise InvalidArgument(
                    f"shard id {shard_id[:40]!r} is not 1-128 letters, digits, '.', '_' or '-'",
                    reason=Reason.VALUE_OUT_OF_RANGE,
                )
        if self.shard_id not in ids:
            raise InvalidArgument(
                f"the layout does not list this shard ({self.shard_id})",
                reason=Reason.LAYOUT_MISMATCH,
            )
        with self._write_lock:
            current = self._layout
            if expected_version != current.version:
                raise Aborted(
                    f"the layout is at version {current.version}, not {expected_version}: "
                    "read it again",
                    reason=Reason.LAYOUT_CHANGED,
                    metadata={"version": str(current.version)},
                )
            if layout.version <= expected_version:
                raise InvalidArgument(
                    f"the new layout's version must be above {expected_version}",
                    reason=Reason.LAYOUT_CHANGED,
                )
            self.store.set_layout({"collection": layout.to_json()})
            self._layout = layout
        log.info(
            "layout %d: %s (next: %s)", layout.version, layout.shard_ids, layout.next_shard_ids
        )
        return layout

    def _check_placement(self, keys: Sequence[str], layout_version: int) -> None:
        """Refuse keys that live on another shard under the recorded layout (write lock
        held, so the layout cannot change meanwhile)."""
        layout = self._layout
        if layout_version and layout_version != layout.version:
            raise FailedPrecondition(
                f"the client routed with layout version {layout_version}; this shard records "
                f"version {layout.version}: read the layout again",
                reason=Reason.LAYOUT_CHANGED,
                metadata={"version": str(layout.version)},
            )
        if not layout.version:
            return
        for key in keys:
            owners = homes(key, layout.shard_ids, layout.next_shard_ids)
            if self.shard_id not in owners:
                raise FailedPrecondition(
                    f"key {key[:80]!r} belongs on shard {sorted(owners)[0]}, not on "
                    f"{self.shard_id} (collection layout version {layout.version})",
                    reason=Reason.WRONG_SHARD,
                    metadata={"home": sorted(owners)[0], "version": str(layout.version)},
                )

    # ---- writes ---------------------------------------------------------------------------

    def add(
        self, items: Sequence[tuple[str, object, Mapping[str, str]]], layout_version: int = 0
    ) -> tuple[int, int]:
        """Validate all, then store all in one transaction. Returns (added, replaced)."""
        check_count("items", len(items), self.limits.max_items_per_request)
        if not items:
            return 0, 0
        keys = [key for key, _, _ in items]
        seen: set[str] = set()
        for key, _, metadata in items:
            check_key(key, self.limits, "key")
            if key in seen:
                raise InvalidArgument(
                    f"key {key[:80]!r} appears twice in one request", reason=Reason.KEY_DUPLICATE
                )
            seen.add(key)
            if metadata:
                check_metadata(key, metadata, self.limits)
        matrix = as_vectors(
            [values for _, values, _ in items],
            self.dims,
            self.metric,
            lambda n: f"item {keys[n][:80]!r}",
        )
        checked = [(key, matrix[n], items[n][2]) for n, key in enumerate(keys)]
        with self._write_lock:
            self._check_placement(keys, layout_version)
            results = self.store.upsert(checked)
            view = self._view
            # Visible before the old copies are hidden: a search never misses a key.
            view.staging.put_many(keys, [seq for _, seq, _ in results], matrix)
            for key, seq, _ in results:
                self._hide(view, key)
                self._live[key] = seq
            self._compact_staging(view)
        replaced = sum(1 for _, _, was in results if was)
        self._maybe_auto_build()
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
                self._hide(view, key)
                self._live.pop(key, None)
        self._maybe_auto_build()
        return len(removed), len(set(keys)) - len(removed)

    @staticmethod
    def _hide(view: _View, key: str) -> None:
        generation = view.generation
        if generation is not None:
            internal = generation.ids.get(key)
            if internal is not None:
                view.hidden[internal] = True

    def _compact_staging(self, view: _View) -> None:
        """Replacing the same keys again and again leaves dead rows: rebuild the staging set
        once they outnumber the live ones (amortised O(1) per write; write lock held)."""
        staging = view.staging
        if staging.dead_rows > max(1024, len(staging)):
            fresh = staging.empty(capacity=max(64, 2 * len(staging)))
            for key, seq, vector in staging.items():
                fresh.put(key, seq, vector)
            self._view = _View(view.generation, view.hidden, fresh)

    # ---- builds ---------------------------------------------------------------------------

    def _pending(self) -> int:
        view = self._view
        return len(view.staging) + int(np.count_nonzero(view.hidden))

    def _maybe_auto_build(self) -> None:
        if not self.auto_build or self._building or time.monotonic() < self._retry_build_at:
            return
        if self._pending() >= self.auto_build:
            threading.Thread(target=self._auto_build, name="auto-build", daemon=True).start()

    def _auto_build(self) -> None:
        if self._build_lock.acquire(blocking=False):
            try:
                self._build_locked(self.trees)
            except Exception:
                log.exception(
                    "background build failed; the previous generation stays live (retry in %.0f s)",
                    self._retry_build_at - time.monotonic(),
                )
            finally:
                self._build_lock.release()

    def build(self, trees: int = 0) -> Generation | None:
        """Build a new generation over all items and make it live; returns it (None if the
        shard holds no items: its generation, if any, is retired)."""
        check_range("trees", trees, 0, self.limits.max_trees)
        with self._build_lock:
            return self._build_locked(trees or self.trees)

    def _build_locked(self, trees: int) -> Generation | None:
        self._building = True
        started = time.perf_counter()
        try:
            generation = self._build_and_publish(trees)
        except Exception as exc:
            self.observer.build_failed()
            self._build_failures += 1
            self._retry_build_at = time.monotonic() + min(
                RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (self._build_failures - 1)
            )
            self._last_build_error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._building = False
            release_free_memory()  # the build's blocks, back to the kernel
        self._build_failures = 0
        self._retry_build_at = 0.0
        self._last_build_error = ""
        number = generation.number if generation is not None else 0
        self.observer.build_finished(number, time.perf_counter() - started)
        return generation

    def _build_and_publish(self, trees: int) -> Generation | None:
        builder = None
        with self.store.snapshot(self.dims) as (count, blocks):
            if count:
                number = int(self.store.layout().get("generation", "0")) + 1
                self.store.set_layout({"generation": str(number)})  # numbers are never reused
                builder = GenerationBuilder(
                    self.data_dir, number, count, self.dims, self.metric, self.project_dims
                )
                builder.fill(blocks)
        generation = builder.finish(trees) if builder is not None else None
        if generation is not None:
            publish(self.data_dir, generation)  # a crash from here on restarts on it
        else:
            retire(self.data_dir)
        with self._write_lock:
            # Writes that landed during the build stay staged or hidden.
            self._view = self._derive_view(generation, self._view.staging)
        remove_stale(self.data_dir)
        return generation

    # ---- reads ----------------------------------------------------------------------------

    def check_search(self, count: int, params: SearchParams) -> None:
        limits = self.limits
        if count == 0:
            raise InvalidArgument("no query vectors", reason=Reason.VALUE_OUT_OF_RANGE)
        check_count("queries", count, limits.max_queries_per_search)
        check_range("k", params.k, 1, limits.max_k)
        check_range("search_k", params.search_k, 0, limits.max_search_k)
        check_range("rerank_factor", params.rerank_factor, 0, MAX_RERANK_FACTOR)
        if params.k * count > limits.max_results_per_search:
            raise InvalidArgument(
                f"k x queries = {params.k * count:,} is over the limit of "
                f"{limits.max_results_per_search:,} results per search",
                reason=Reason.TOO_MANY_ITEMS,
                metadata={"limit": str(limits.max_results_per_search)},
            )
        if params.max_distance is not None and not (
            math.isfinite(params.max_distance) and params.max_distance >= 0
        ):
            raise InvalidArgument(
                f"max_distance must be a finite number >= 0, not {params.max_distance}",
                reason=Reason.VALUE_OUT_OF_RANGE,
            )
        check_count("metadata filter pairs", len(params.where), MAX_FILTER_PAIRS)
        check_metadata("the filter", params.where, limits)

    def search(self, queries: Sequence[object], params: SearchParams) -> list[list[Hit]]:
        """The k nearest live items of each query vector, closest first."""
        started = time.perf_counter()
        self.check_search(len(queries), params)
        matrix = np.stack(
            [as_vector(q, self.dims, self.metric, f"query {n}") for n, q in enumerate(queries)]
        )
        where = dict(params.where)
        if where and self.store.count_matching(where) <= EXACT_FILTER_ITEMS:
            found = self._search_matching(matrix, params, where)
        else:
            found = self._search_view(self._view, matrix, params, where)
        hits = self._with_metadata(found, params.include_metadata)
        self.observer.searched(time.perf_counter() - started)
        return hits

    def _search_view(
        self, view: _View, matrix: np.ndarray, params: SearchParams, where: dict[str, str]
    ) -> list[list[tuple[float, str]]]:
        keep: KeepFn | None = (lambda keys: self.store.filter_keys(keys, where)) if where else None
        staged = view.staging.snapshot().search(
            matrix, params.k, self.metric, params.max_distance, keep
        )
        results = []
        for query, from_staging in zip(matrix, staged, strict=True):
            from_generation = self._search_generation(view, query, params, keep)
            # A key met in both (replaced during this search) keeps its newer, staged copy.
            merged = {key: d for d, key in from_generation}
            merged.update({key: d for d, key in from_staging})
            results.append(sorted((d, key) for key, d in merged.items())[: params.k])
        return results

    def _search_generation(
        self, view: _View, query: np.ndarray, params: SearchParams, keep: KeepFn | None
    ) -> list[tuple[float, str]]:
        """Annoy's candidates minus hidden items (and those the filter drops), fetching more
        until the pool is full or the generation exhausted: removed items never shorten a
        result, and a filter never gives a short list while more matches exist."""
        generation = view.generation
        if generation is None or generation.count == 0:
            return []
        count = generation.count
        projection = generation.projection
        # A projected index ranks approximately: its candidate pool is always re-ranked.
        want = (
            params.pool
            if projection is None
            else params.k * max(params.rerank_factor, DEFAULT_RERANK_FACTOR)
        )
        vector = projection(query[np.newaxis])[0] if projection is not None else query
        n = min(count, want + 8)
        while True:
            search_k = params.search_k or -1
            if projection is not None or (search_k > 0 and n > want + 8):
                # Inspect as many nodes as a plain top-n search would (Annoy's default),
                # at least what the caller asked for.
                search_k = max(search_k, n * generation.trees)
            ids, dists = generation.annoy.get_nns_by_vector(
                vector, n, min(search_k, INT32_MAX), include_distances=True
            )
            candidates = [(d, i) for i, d in zip(ids, dists, strict=True) if not view.hidden[i]]
            if projection is not None and generation.vectors is not None and candidates:
                chosen = [i for _, i in candidates]
                exact = distances(generation.vectors[chosen], query, self.metric)
                candidates = sorted(zip(exact.tolist(), chosen, strict=True))
            beyond = False
            if params.max_distance is not None:
                beyond = bool(candidates) and candidates[-1][0] > params.max_distance
                candidates = [c for c in candidates if c[0] <= params.max_distance]
            if keep is not None and candidates:
                kept = keep([generation.keys[i] for _, i in candidates])
                candidates = [c for c in candidates if generation.keys[c[1]] in kept]
            if len(candidates) >= want or n >= count or beyond:
                return [(float(d), generation.keys[i]) for d, i in candidates[: params.k]]
            # Grow the pool by the share of candidates that survived, at least doubling.
            survived = max(len(candidates), 1) / max(len(ids), 1)
            n = min(count, max(2 * n, math.ceil(want / survived * 1.2)))

    def _search_matching(
        self, matrix: np.ndarray, params: SearchParams, where: dict[str, str]
    ) -> list[list[tuple[float, str]]]:
        """A selective filter: exact distances to exactly the matching items (store reads)."""
        items = self.store.items(self.store.matching_keys(where))
        if not items:
            return [[] for _ in matrix]
        vectors = np.stack([item.vector for item in items])
        results = []
        for query in matrix:
            dist = distances(vectors, query, self.metric)
            order = np.argsort(dist, kind="stable")[: params.k]
            hits = [(float(dist[i]), items[i].key) for i in order]
            if params.max_distance is not None:
                hits = [hit for hit in hits if hit[0] <= params.max_distance]
            results.append(hits)
        return results

    def _with_metadata(
        self, found: list[list[tuple[float, str]]], include_metadata: bool
    ) -> list[list[Hit]]:
        if not include_metadata:
            return [[Hit(key, d) for d, key in hits] for hits in found]
        metadata = self.store.metadata([key for hits in found for _, key in hits])
        return [[Hit(key, d, metadata.get(key, {})) for d, key in hits] for hits in found]

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
            dims=self.dims,
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
            building=self._building,
            last_build_error=self._last_build_error,
            shard_id=self.shard_id,
            layout=self._layout,
            project_dims=generation.projection.output_dims
            if generation is not None and generation.projection is not None
            else 0,
            limits=self.limits,
            models=self.store.count_values(reserved.MODEL),
            embedded_by=self.store.count_values(reserved.EMBEDDED_BY),
        )
