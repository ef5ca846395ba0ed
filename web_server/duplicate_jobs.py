"""Duplicate groups for the web server: one computation at a time, results kept per threshold.

Finding duplicates scans the whole collection (seconds to minutes), so no request can start
more than one: a request for a threshold that is neither cached nor being computed starts it
when the finder is idle, and every request waits at most `wait` seconds for an answer, then
gets the progress instead (the page asks again). A result is reused while the collection's
state (each shard's id, count, generation, staged and hidden items) is unchanged; the last few
thresholds are kept. Thresholds are rounded to 4 decimals (0.04 and 0.0400001 are one job).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as WaitTimeout
from dataclasses import dataclass, field

from imagesim.client.collection import Collection
from imagesim.client.duplicates import DuplicateReport, check_threshold, find_duplicates
from imagesim.errors import Cancelled

log = logging.getLogger("imagesim.web.duplicates")

Signature = tuple


@dataclass
class Progress:
    max_distance: float
    done: int = 0
    total: int = 0


@dataclass
class _Job:
    max_distance: float
    signature: Signature
    progress: Progress
    future: Future[DuplicateReport] = field(default_factory=Future)


class DuplicateJobs:
    def __init__(
        self,
        collection: Collection,
        signature: Callable[[], tuple[Signature, int]],
        neighbors: int,
        timeout: float,
        keep: int = 4,
        max_waiting: int = 8,
    ) -> None:
        """`signature()` returns the collection's state and its item count. At most
        `max_waiting` requests wait for a result at once (each holds a worker thread); more
        get the progress at once."""
        self.collection = collection
        self.signature = signature
        self.neighbors = neighbors
        self.timeout = timeout
        self.keep = keep
        self._lock = threading.Lock()
        self._done: OrderedDict[float, tuple[Signature, DuplicateReport]] = OrderedDict()
        self._running: _Job | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting = threading.BoundedSemaphore(max_waiting)

    def get(self, max_distance: float, wait: float) -> DuplicateReport | Progress:
        """The groups at `max_distance`, or the progress of the computation under way (which
        may be of another threshold: Progress.max_distance says)."""
        check_threshold(max_distance, self.neighbors)
        threshold = round(max_distance, 4)
        signature, total = self.signature()
        with self._lock:
            done = self._done.get(threshold)
            if done is not None and done[0] == signature:
                self._done.move_to_end(threshold)
                return done[1]
            job = self._running
            if job is None:
                job = self._start(threshold, signature, total)
        if job.max_distance != threshold:
            return job.progress  # the finder is busy with another threshold: that one's
        waiting = self._waiting.acquire(blocking=False)  # else enough requests wait already
        try:
            return job.future.result(timeout=wait if waiting else 0)
        except WaitTimeout:
            return job.progress
        finally:
            if waiting:
                self._waiting.release()

    def _start(self, threshold: float, signature: Signature, total: int) -> _Job:
        job = _Job(threshold, signature, Progress(threshold, 0, total))
        self._running = job
        self._thread = threading.Thread(
            target=self._run, args=(job,), name="duplicates", daemon=True
        )
        self._thread.start()
        return job

    def _run(self, job: _Job) -> None:
        def progress(done: int) -> None:
            job.progress.done = done

        try:
            report = find_duplicates(
                self.collection,
                job.max_distance,
                self.neighbors,
                timeout=self.timeout,
                progress=progress,
                should_stop=self._stop.is_set,
            )
        except BaseException as exc:  # the waiting requests get it (mapped to a status)
            if not isinstance(exc, Cancelled):
                log.warning("finding duplicates at %g failed: %s", job.max_distance, exc)
            with self._lock:
                self._running = None
            job.future.set_exception(exc)
            return
        with self._lock:
            self._done[job.max_distance] = (job.signature, report)
            while len(self._done) > self.keep:
                self._done.popitem(last=False)
            self._running = None
        job.future.set_result(report)

    def close(self, timeout: float = 10.0) -> None:
        """Stop a computation under way (between two batches) and wait for it."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
