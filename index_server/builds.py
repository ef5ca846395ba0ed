"""A shard's builds: a new generation over all items, built off the request path, one at a
time (the build lock), in the background once enough writes are pending or when asked.

A failed background build keeps the previous generation live and is retried after a backoff
(doubling per failure, at most an hour), not on every write. After each build, successful or
not, the heap it freed goes back to the kernel.

The build reads one snapshot of the store, writes and publishes the generation, and only then
asks the shard to switch to it (`switch`, which takes the shard's write lock): lock order is
build lock, then write lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from imagesim.enums import Metric
from imagesim.errors import FailedPrecondition
from imagesim.heap import release_free_memory
from imagesim.index_server.generation import (
    Generation,
    current_generation,
    publish,
    remove_stale,
    retire,
)
from imagesim.index_server.generation_builder import GenerationBuilder
from imagesim.index_server.item_store import ItemStore
from imagesim.index_server.observer import ShardObserver

# The shard's log, as before builds had a module of their own.
log = logging.getLogger("imagesim.index_server.shard")

# Background builds that failed wait this long (doubling per failure, at most an hour).
RETRY_FIRST_SECONDS = 30.0
RETRY_MAX_SECONDS = 3600.0


class Builds:
    """Builds of one shard. `pending` counts the writes a build would fold in; `switch` makes
    a new generation (None: no items) the live one, under the shard's write lock."""

    def __init__(
        self,
        store: ItemStore,
        data_dir: Path,
        dims: int,
        metric: Metric,
        project_dims: int,
        trees: int,
        auto_build: int,
        observer: ShardObserver,
        pending: Callable[[], int],
        switch: Callable[[Generation | None], None],
    ) -> None:
        self.store = store
        self.data_dir = data_dir
        self.dims = dims
        self.metric = metric
        self.project_dims = project_dims
        self.trees = trees
        self.auto_build = auto_build
        self.observer = observer
        self._pending = pending
        self._switch = switch
        self.lock = threading.Lock()  # one build at a time; closing waits for it
        self.building = False
        self.last_error = ""
        self._failures = 0
        self._retry_at = 0.0

    def load_current(self) -> Generation | None:
        """The live generation on disk, if any. One that fails to load is retired: the items
        are safe in the store, served exactly until the next build."""
        try:
            return current_generation(self.data_dir, self.dims, self.metric)
        except FailedPrecondition as exc:
            log.error("%s; serving every item exactly until the next build", exc.message)
            self.last_error = exc.message
            retire(self.data_dir)
            return None

    def maybe_auto_build(self) -> None:
        """Start a background build if enough writes are pending (never under the write
        lock: the build takes it to switch)."""
        if not self.auto_build or self.building or time.monotonic() < self._retry_at:
            return
        if self._pending() >= self.auto_build:
            threading.Thread(target=self._auto_build, name="auto-build", daemon=True).start()

    def _auto_build(self) -> None:
        if self.lock.acquire(blocking=False):
            try:
                self._build_locked(self.trees)
            except Exception:
                log.exception(
                    "background build failed; the previous generation stays live (retry in %.0f s)",
                    self._retry_at - time.monotonic(),
                )
            finally:
                self.lock.release()

    def build(self, trees: int) -> Generation | None:
        """Build a new generation over all items with `trees` trees and make it live; returns
        it (None if the shard holds no items: its generation, if any, is retired)."""
        with self.lock:
            return self._build_locked(trees)

    def _build_locked(self, trees: int) -> Generation | None:
        self.building = True
        started = time.perf_counter()
        try:
            generation = self._build_and_publish(trees)
        except Exception as exc:
            self.observer.build_failed()
            self._failures += 1
            self._retry_at = time.monotonic() + min(
                RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (self._failures - 1)
            )
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.building = False
            release_free_memory()  # the build's blocks, back to the kernel
        self._failures = 0
        self._retry_at = 0.0
        self.last_error = ""
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
        # Writes that landed during the build stay staged or hidden.
        self._switch(generation)
        remove_stale(self.data_dir)
        return generation
