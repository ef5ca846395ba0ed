"""Dynamic batching: concurrent requests share one model call.

Callers `submit()` one preprocessed input and get a Future. One collector thread takes the
first waiting item, then gathers more until `max_batch_size` items or `max_batch_time` seconds
have passed (no wait at all while callers come one at a time, i.e. the last batch held one
item), runs the model once on the stacked batch, and resolves each future with its row.
A failed batch fails every future in it; after `close()` new submissions are refused and the
items already queued are still run. Once no item has come for `idle_after` seconds, `on_idle`
runs on the model thread (once per quiet spell), e.g. to hand freed memory back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import NamedTuple, cast

import numpy as np

from imagesim.errors import Unavailable

log = logging.getLogger(__name__)

BatchFn = Callable[[np.ndarray], np.ndarray]
QueuedFn = Callable[[float], None]
IDLE_AFTER = 10.0  # seconds without an item before on_idle runs (it may take a while)


class _Entry(NamedTuple):
    item: np.ndarray
    future: Future[np.ndarray]
    enqueued: float  # time.monotonic() at submit


_CLOSE = object()


class AdaptiveBatcher:
    """Gathers single inputs into batches for `fn`, on one model thread."""

    def __init__(
        self,
        fn: BatchFn,
        max_batch_size: int = 32,
        max_batch_time: float = 0.005,
        queued: QueuedFn | None = None,
        on_idle: Callable[[], None] | None = None,
        idle_after: float = IDLE_AFTER,
    ) -> None:
        """`queued`, if given, is told each item's wait in the queue (seconds) as its model
        call starts."""
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.fn = fn
        self.queued = queued
        self.on_idle = on_idle
        self.idle_after = idle_after
        self.max_batch_size = max_batch_size
        self.max_batch_time = max_batch_time
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._last_batch_size = 1
        self._thread = threading.Thread(target=self._run, name="model-batcher", daemon=True)
        self._thread.start()

    def submit(self, item: np.ndarray) -> Future[np.ndarray]:
        """Queue one input (without the batch axis); the future gets its output row."""
        future: Future[np.ndarray] = Future()
        with self._lock:
            if self._closed:
                raise Unavailable("the embedder is shutting down")
            self._queue.put(_Entry(item, future, time.monotonic()))
        return future

    def __call__(self, item: np.ndarray) -> np.ndarray:
        return self.submit(item).result()

    def close(self, timeout: float | None = None) -> None:
        """Refuse new items, run those queued, stop the model thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_CLOSE)
        self._thread.join(timeout)

    def _collect(self, first: _Entry) -> tuple[list[_Entry], bool]:
        batch = [first]
        # Wait for company only when there has been company: a lone caller (the last batch
        # held one item) runs at once with whatever is queued, without paying max_batch_time.
        wait = self.max_batch_time if self._last_batch_size > 1 else 0.0
        deadline = time.monotonic() + wait
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                entry = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else (self._queue.get_nowait())
                )
            except queue.Empty:
                break
            if entry is _CLOSE:
                return batch, True
            batch.append(entry)  # type: ignore[arg-type]
        return batch, False

    def _run_batch(self, batch: list[_Entry]) -> None:
        live = [(e.item, e.future) for e in batch if e.future.set_running_or_notify_cancel()]
        if not live:
            return
        if self.queued is not None:
            started = time.monotonic()
            for entry in batch:
                self.queued(started - entry.enqueued)
        try:
            outputs = self.fn(np.stack([x for x, _ in live]))
        except BaseException as exc:
            log.exception("model batch of %d failed", len(live))
            for _, future in live:
                future.set_exception(exc)
            return
        self._last_batch_size = len(live)
        for row, (_, future) in zip(outputs, live, strict=True):
            future.set_result(row)

    def _run(self) -> None:
        closing = False
        try:
            while not closing:
                first = self._next()
                if first is _CLOSE:
                    break
                batch, closing = self._collect(first)  # type: ignore[arg-type]
                self._run_batch(batch)
            # Run whatever was queued before close(), in full batches.
            pending = []
            while True:
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
                if entry is not _CLOSE:
                    pending.append(entry)
            for start in range(0, len(pending), self.max_batch_size):
                self._run_batch(pending[start : start + self.max_batch_size])  # type: ignore[arg-type]
        finally:
            self._fail_pending(Unavailable("the embedder's model thread stopped"))

    def _next(self) -> object:
        """The next queued entry; runs `on_idle` first if none comes within `idle_after`."""
        if self.on_idle is None:
            return self._queue.get()
        try:
            return self._queue.get(timeout=self.idle_after)
        except queue.Empty:
            try:
                self.on_idle()
            except Exception:
                log.exception("the batcher's idle hook failed")
            return self._queue.get()

    def _fail_pending(self, error: Exception) -> None:
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                return
            if entry is not _CLOSE:
                future = cast(_Entry, entry).future
                if future.set_running_or_notify_cancel():
                    future.set_exception(error)
