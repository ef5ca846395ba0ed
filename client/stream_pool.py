"""Bulk embedding over a pool of EmbedStreams on one channel, losing no image when a stream
breaks.

An EmbedStream stays on the server the channel picked when it opened (round_robin over
replicas picks the next ready one for each new stream), so spreading a bulk run over replicas
takes several streams: the pool keeps `streams` of them taking images from one shared queue (a
faster replica takes more) with at most `window` unanswered images each. After
`stream_images` images a stream stops taking new ones and drains while a new stream (a new
pick) replaces it, so a long run follows replicas that join, leave or restart.

The first streams of a run open while the channel is still connecting to the replicas, so
they may all land on the first replica that answered: with several streams, each of the first
ones takes only FIRST_STREAM_IMAGES images before it is replaced, and the new picks spread over
every replica that has connected by then.

When a stream breaks on a transient failure (UNAVAILABLE: its replica died, restarted or went
away; TOO_MANY_STREAMS), the images sent on it and not answered go back to the front of the
queue and are sent again on a new stream after a short backoff. An image is keyed by its id
(the file's path), so sending it twice is harmless, and each image is answered exactly once:
it is always in exactly one place (the queue, one stream's in-flight set, or answered). A run
ends early only when a stream fails for a reason retrying cannot fix, when no image has been
answered for `stall_timeout` seconds, or at the overall deadline.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from imagesim.client.embedder_client import Embedded, EmbedderClient, EmbedStreamCall
from imagesim.client.rpc import Deadline
from imagesim.enums import Space
from imagesim.errors import DeadlineExceeded, ImagesimError, Reason, Unavailable

DEFAULT_WINDOW = 64  # unanswered images per stream (the server's own window is 64)
DEFAULT_STREAM_IMAGES = 2048  # images per stream before it is replaced by a new pick
FIRST_STREAM_IMAGES = 16  # the same for the first streams of a run over several streams
BACKOFF_START = 0.1  # seconds before reopening after a broken stream, doubling ...
BACKOFF_MAX = 2.0  # ... up to this


@dataclass(frozen=True)
class Job:
    """One image to embed: `id` is its key (unique in a run)."""

    id: str
    data: bytes


@dataclass
class PoolStats:
    streams_opened: int = 0
    streams_broken: int = 0  # transient failures, retried
    resent: int = 0  # images sent again after their stream broke


def transient(error: ImagesimError) -> bool:
    """A failure a new stream may not meet: the server went away or had no stream slot."""
    return error.code == "UNAVAILABLE" or error.reason == Reason.TOO_MANY_STREAMS.value


class _Stream:
    """Book-keeping of one open stream (guarded by the pool's lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # images it sends before it is replaced
        self.in_flight: dict[str, Job] = {}  # sent, not answered, in send order
        self.taking = True  # still takes new images from the queue
        self.broken = False
        self.sent = 0
        self.call: EmbedStreamCall | None = None


class StreamPool:
    def __init__(
        self,
        embedder: EmbedderClient,
        space: Space,
        deadline: Deadline,
        streams: int = 1,
        window: int = DEFAULT_WINDOW,
        stream_images: int = DEFAULT_STREAM_IMAGES,
        stall_timeout: float | None = None,
    ) -> None:
        if streams < 1 or window < 1 or stream_images < 1:
            raise ValueError("streams, window and stream_images must be at least 1")
        self.embedder = embedder
        self.space = space
        self.deadline = deadline
        self.streams = streams
        self.window = window
        self.stream_images = stream_images
        self.stall_timeout = stall_timeout or embedder.timeout
        self.stats = PoolStats()
        self._lock = threading.Condition()
        self._queue: deque[Job] = deque()
        self._queue_limit = 2 * streams * window
        self._results: queue.Queue[tuple[Job, Embedded]] = queue.Queue(self._queue_limit)
        self._open: list[_Stream] = []
        self._taking = 0  # streams taking new images
        self._fed = 0
        self._answered = 0
        self._feeding_done = False
        self._stopping = False
        self._failure: ImagesimError | None = None
        self._last_error: ImagesimError | None = None
        self._progress_at = time.monotonic()
        self._reopen_at = 0.0
        self._backoff = BACKOFF_START

    # -- the caller's side --------------------------------------------------------------------

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Embedded]]:
        """(job, answer) for every job, in the order answers arrive. `jobs` is read on a
        thread of the pool, at most a bounded number ahead of the streams."""
        threads = [
            threading.Thread(target=self._feed, args=(jobs,), name="embed-feed", daemon=True),
            threading.Thread(target=self._supervise, name="embed-pool", daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            while True:
                try:
                    job, answer = self._results.get(timeout=0.1)
                except queue.Empty:
                    with self._lock:
                        if self._failure is not None:
                            raise self._failure from None
                        if self._feeding_done and self._answered == self._fed:
                            return
                    continue
                with self._lock:
                    self._answered += 1
                    self._progress_at = time.monotonic()
                    self._lock.notify_all()
                yield job, answer
        finally:
            self._stop()
            for thread in threads:
                thread.join(timeout=5)

    def _stop(self) -> None:
        with self._lock:
            self._stopping = True
            calls = [s.call for s in self._open if s.call is not None]
            self._lock.notify_all()
        for call in calls:
            call.cancel()

    def _fail(self, error: ImagesimError) -> None:
        """Called with the lock held: the run ends with `error`."""
        if self._failure is None:
            self._failure = error
        self._stopping = True
        self._lock.notify_all()

    # -- the feeder: jobs -> the queue ---------------------------------------------------------

    def _feed(self, jobs: Iterable[Job]) -> None:
        try:
            for job in jobs:
                with self._lock:
                    while len(self._queue) >= self._queue_limit and not self._stopping:
                        self._lock.wait(0.5)
                    if self._stopping:
                        return
                    self._queue.append(job)
                    self._fed += 1
                    self._lock.notify_all()
        except ImagesimError as exc:
            with self._lock:
                self._fail(exc)
        except Exception as exc:
            with self._lock:
                self._fail(Unavailable(f"reading the images failed: {exc}"))
        finally:
            with self._lock:
                self._feeding_done = True
                self._lock.notify_all()

    # -- the supervisor: keeps `streams` streams taking images ---------------------------------

    def _supervise(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._stopping or (self._feeding_done and self._answered == self._fed):
                        return
                    now = time.monotonic()
                    if self._check_limits(now):
                        return
                    waiting = bool(self._queue) or not self._feeding_done
                    if self._taking < self.streams and waiting and now >= self._reopen_at:
                        break
                    self._lock.wait(0.05 if now < self._reopen_at else 0.5)
                first = self.streams > 1 and self.stats.streams_opened < self.streams
                stream = _Stream(FIRST_STREAM_IMAGES if first else self.stream_images)
                self._open.append(stream)
                self._taking += 1
                self.stats.streams_opened += 1
            threading.Thread(
                target=self._serve, args=(stream,), name="embed-stream", daemon=True
            ).start()

    def _check_limits(self, now: float) -> bool:
        """With the lock held: fail the run at the deadline or after a stall."""
        try:
            self.deadline.remaining()
        except DeadlineExceeded as exc:
            self._fail(exc)
            return True
        # (a full result queue is the caller being slow, not the servers)
        if now - self._progress_at > self.stall_timeout and not self._results.full():
            last = f"; last error: {self._last_error}" if self._last_error else ""
            self._fail(
                Unavailable(
                    f"no image answered by {self.embedder.what} at {self.embedder.address} for "
                    f"{self.stall_timeout:g} s{last}",
                    address=self.embedder.address,
                )
            )
            return True
        return False

    # -- one stream ----------------------------------------------------------------------------

    def _requests(self, stream: _Stream) -> Iterator[tuple[str, bytes]]:
        """What one stream sends: images from the shared queue, within its window; ends after
        its limit of images, when no image is left to send, or when the stream broke."""
        while True:
            with self._lock:
                while True:
                    if self._stopping or stream.broken:
                        return
                    if stream.sent >= stream.limit or (self._feeding_done and not self._queue):
                        self._stop_taking(stream)
                        return
                    if self._queue and len(stream.in_flight) < self.window:
                        job = self._queue.popleft()
                        stream.in_flight[job.id] = job
                        stream.sent += 1
                        break
                    self._lock.wait(0.5)
            yield job.id, job.data

    def _stop_taking(self, stream: _Stream) -> None:
        """With the lock held: the stream takes no more images (the supervisor may open
        another)."""
        if stream.taking:
            stream.taking = False
            self._taking -= 1
            self._lock.notify_all()

    def _serve(self, stream: _Stream) -> None:
        error: ImagesimError | None = None
        try:
            call = self.embedder.open_stream(
                self._requests(stream), self.space, timeout=self.deadline.remaining()
            )
            with self._lock:
                stream.call = call
                if self._stopping:
                    call.cancel()
            for answer in call:
                with self._lock:
                    job = stream.in_flight.pop(answer.id, None)
                    self._progress_at = time.monotonic()
                    self._backoff = BACKOFF_START
                    self._lock.notify_all()
                if job is not None:
                    self._put((job, answer))
        except ImagesimError as exc:
            error = exc
        finally:
            with self._lock:
                stream.broken = True
                self._stop_taking(stream)
                self._open.remove(stream)
                self._retry(stream, error)

    def _put(self, item: tuple[Job, Embedded]) -> None:
        while True:
            try:
                self._results.put(item, timeout=0.5)
                return
            except queue.Full:
                with self._lock:
                    if self._stopping:
                        return

    def _retry(self, stream: _Stream, error: ImagesimError | None) -> None:
        """With the lock held: the stream ended (cleanly, or with `error`). Its unanswered
        images go back to the front of the queue; a lasting error ends the run."""
        if self._stopping:
            return
        if error is not None and not transient(error):
            self._fail(error)
            return
        if stream.in_flight:
            self._queue.extendleft(reversed(list(stream.in_flight.values())))
            self.stats.resent += len(stream.in_flight)
            stream.in_flight.clear()
        if error is not None:
            self.stats.streams_broken += 1
            self._last_error = error
            self._reopen_at = time.monotonic() + self._backoff
            self._backoff = min(BACKOFF_MAX, self._backoff * 2)
        self._lock.notify_all()
