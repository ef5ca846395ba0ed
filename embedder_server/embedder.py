"""The Embedder's core: image bytes -> vector in a named space. Knows nothing of gRPC.

Per image: the header is read and checked in the caller's thread (cheap, and where a wait for
room in the decode budget belongs), the decode runs on a small shared pool (bounded parallelism,
never on the model thread), the decoded uint8 image joins the batcher's queue, and the model
runs on the batcher's single thread, so concurrent callers share model calls.
`embed_many` does this for a stream of images with a window of images in flight and yields the
outcomes in input order, each with its vector or its own error.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from imagesim.embedder_server.batcher import AdaptiveBatcher
from imagesim.embedder_server.decode_budget import DecodeBudget
from imagesim.embedder_server.observer import NO_OBSERVER, EmbedderObserver
from imagesim.embedder_server.preprocess import ImageLimits, decode_rgb, open_image
from imagesim.embedder_server.runtimes.base import ModelInfo, ModelRuntime
from imagesim.errors import FailedPrecondition, ImagesimError, Internal, InvalidArgument, Reason

log = logging.getLogger(__name__)

FULL = "full"
REDUCED = "reduced"
DEFAULT_WINDOW = 64


class Reducer(Protocol):
    """Maps full vectors to a smaller space (PCA or autoencoder)."""

    input_dim: int
    output_dim: int
    description: str

    def transform(self, vectors: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class SpaceSpec:
    name: str
    dimension: int
    description: str


@dataclass(frozen=True)
class EmbedItem:
    """One image of a stream: the caller's id for it, its bytes and the space wanted."""

    id: str
    image: bytes
    space: str = FULL


@dataclass(frozen=True)
class EmbedOutcome:
    """The answer for one EmbedItem: its vector, or the error that image alone met."""

    id: str
    space: str
    vector: np.ndarray | None
    error: ImagesimError | None = None


def _failed(error: BaseException) -> Future[np.ndarray]:
    future: Future[np.ndarray] = Future()
    future.set_exception(error)
    return future


class Embedder:
    """Embeds encoded images with a shared model batcher, optionally reducing the vector."""

    def __init__(
        self,
        runtime: ModelRuntime,
        batcher: AdaptiveBatcher,
        limits: ImageLimits,
        reducer: Reducer | None = None,
        decode_threads: int = 2,
        observer: EmbedderObserver = NO_OBSERVER,
    ) -> None:
        self.runtime = runtime
        self.batcher = batcher
        self.limits = limits
        self.reducer = reducer
        self.decode_threads = decode_threads
        self.observer = observer
        self.budget = DecodeBudget(limits.decode_budget_pixels, limits.decode_wait_seconds)
        self.images_embedded = 0  # successes since start (Info reports it)
        self._count_lock = threading.Lock()
        self._decoders = ThreadPoolExecutor(decode_threads, thread_name_prefix="decode")

    @property
    def info(self) -> ModelInfo:
        return self.runtime.info

    @property
    def model_fingerprint(self) -> str:
        return self.runtime.info.fingerprint

    def close(self) -> None:
        """Stop the decode pool (after in-flight decodes finish)."""
        self._decoders.shutdown(wait=True)

    def spaces(self) -> list[SpaceSpec]:
        info = self.info
        spaces = [SpaceSpec(FULL, info.dimension, f"{info.name} global average pool")]
        if self.reducer is not None:
            spaces.append(SpaceSpec(REDUCED, self.reducer.output_dim, self.reducer.description))
        return spaces

    def check_space(self, space: str) -> None:
        if space == REDUCED and self.reducer is None:
            raise FailedPrecondition(
                "the reduced space is not offered: this embedder was started without a "
                "reducer (start it with --reducer DIR, see `imagesim reducer train`)",
                reason=Reason.SPACE_NOT_OFFERED,
                metadata={"space": space},
            )
        if space not in (FULL, REDUCED):
            raise InvalidArgument(
                f"unknown vector space {space!r}",
                reason=Reason.VALUE_OUT_OF_RANGE,
                metadata={"space": space},
            )

    def submit(self, image: bytes, space: str = FULL) -> Future[np.ndarray]:
        """Start embedding one image; the future gets its vector in `space`. Raises at once
        for a bad space or image header, or when the decode budget stays full."""
        self.observer.image_started()
        try:
            self.check_space(space)
            opened = open_image(image, self.info.input_size, self.limits)
            reservation = self.budget.reserve(opened.pixels)
        except ImagesimError as exc:
            self.observer.image_done(exc.reason)
            raise
        except BaseException:
            self.observer.image_done(Reason.INTERNAL_ERROR.value)
            raise
        result: Future[np.ndarray] = Future()

        def fail(exc: BaseException) -> None:
            reason = exc.reason if isinstance(exc, ImagesimError) else Reason.INTERNAL_ERROR.value
            self.observer.image_done(reason)
            result.set_exception(exc)

        def finish(batched: Future[np.ndarray]) -> None:
            try:
                vector = batched.result()
                if space == REDUCED:
                    assert self.reducer is not None
                    vector = self.reducer.transform(vector[np.newaxis])[0]
                with self._count_lock:
                    self.images_embedded += 1
            except BaseException as exc:
                fail(exc)
                return
            self.observer.image_done(None)
            result.set_result(vector)

        def decode() -> None:
            try:
                started = time.perf_counter()
                with reservation:
                    pixels = decode_rgb(opened, self.info.input_size)
                self.observer.decoded(time.perf_counter() - started)
                self.batcher.submit(pixels).add_done_callback(finish)
            except BaseException as exc:
                fail(exc)

        try:
            self._decoders.submit(decode)
        except RuntimeError as exc:  # the pool is shut down
            reservation.release()
            fail(exc)
            raise
        return result

    def embed(self, image: bytes, space: str = FULL) -> np.ndarray:
        """One encoded image -> float32 vector in `space`."""
        return self.submit(image, space).result()

    def embed_many(
        self, items: Iterable[EmbedItem], window: int = DEFAULT_WINDOW
    ) -> Iterator[EmbedOutcome]:
        """Embed a stream of images, up to `window` in flight, yielding one outcome per item in
        input order. A bad image gets its own error and the stream goes on. Items are read on a
        separate thread (reading ahead keeps the batcher fed); if reading them fails (e.g. the
        caller went away), the outcomes of the items read so far are yielded and the stream
        ends."""
        in_flight: queue.Queue[tuple[EmbedItem, Future[np.ndarray]] | None] = queue.Queue(window)
        stop = threading.Event()

        def put(entry: tuple[EmbedItem, Future[np.ndarray]] | None) -> bool:
            while not stop.is_set():
                try:
                    in_flight.put(entry, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def read() -> None:
            try:
                for item in items:
                    try:
                        future = self.submit(item.image, item.space)
                    except ImagesimError as exc:
                        future = _failed(exc)
                    if not put((item, future)):
                        return
            except Exception as exc:
                log.warning("embed stream input ended by %s: %s", type(exc).__name__, exc)
            finally:
                put(None)

        reader = threading.Thread(target=read, name="embed-many-reader", daemon=True)
        reader.start()
        try:
            while (entry := in_flight.get()) is not None:
                item, future = entry
                yield self._outcome(item, future)
        finally:
            stop.set()

    @staticmethod
    def _outcome(item: EmbedItem, future: Future[np.ndarray]) -> EmbedOutcome:
        try:
            return EmbedOutcome(item.id, item.space, future.result())
        except ImagesimError as exc:
            return EmbedOutcome(item.id, item.space, None, exc)
        except Exception as exc:
            log.error("embedding %r failed", item.id, exc_info=exc)
            error = Internal(f"embedding failed: {type(exc).__name__}")
            return EmbedOutcome(item.id, item.space, None, error)
