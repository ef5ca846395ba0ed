"""Thumbnails of the collection's image files: made once, kept in a bounded cache.

A thumbnail is keyed by the file's identity (device, inode, size, mtime), so an edited file
gets a new one. The cache holds at most `max_bytes` of JPEG (least recently used out first).
At most `workers` files are decoded at once (decoding a large PNG needs its full pixel
buffer) and at most `max_waiting` more requests wait for a decoder (each holds a thread; more
get BUSY at once); concurrent requests for the same file wait for one decode, and a file over
the pixel limit is refused from its header without being decoded.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as WaitTimeout
from dataclasses import dataclass

from imagesim.client.images_root import ImagesRoot
from imagesim.client.pictures import jpeg, picture
from imagesim.errors import InvalidArgument, Reason, Unavailable
from imagesim.web.reasons import WebReason


@dataclass(frozen=True)
class Thumbnail:
    data: bytes  # JPEG
    etag: str


class ThumbnailCache:
    def __init__(
        self,
        root: ImagesRoot,
        size: int,
        max_bytes: int,
        workers: int,
        limits: Callable[[], tuple[int, int, int]],
        wait_seconds: float = 30.0,
        max_waiting: int = 16,
    ) -> None:
        """`limits()` gives the largest file (bytes), image (pixels) and decoded image
        (bytes) to decode: the embedder's, so a file it would refuse is not decoded here."""
        self.root = root
        self.size = size
        self.max_bytes = max_bytes
        self.limits = limits
        self.wait_seconds = wait_seconds
        self._decoders = threading.BoundedSemaphore(workers)
        # Requests waiting for a decoder each hold a worker thread: beyond this many, BUSY.
        self._waiting_room = threading.BoundedSemaphore(workers + max_waiting)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple, Thumbnail] = OrderedDict()
        self._bytes = 0
        self._making: dict[tuple, Future[Thumbnail]] = {}
        self.made = 0  # decodes done (a test reads it to see the cache work)

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def etag(self, ident: tuple) -> str:
        return '"' + hashlib.sha256(repr((ident, self.size)).encode()).hexdigest()[:32] + '"'

    def get(self, key: str, if_none_match: str | None = None) -> Thumbnail | None:
        """The thumbnail of `key`'s file under the root (ImagesimError if there is none), or
        None when the caller's copy (`if_none_match`, an ETag) is still current."""
        opened = self.root.open(key)
        try:
            ident = (opened.path, *opened.version)
            if if_none_match is not None and if_none_match == self.etag(ident):
                return None
            with self._lock:
                hit = self._cache.get(ident)
                if hit is not None:
                    self._cache.move_to_end(ident)
                    return hit
                pending = self._making.get(ident)
                mine = pending is None
                if mine:
                    pending = self._making[ident] = Future()
            assert pending is not None
            if not mine:
                try:
                    return pending.result(timeout=self.wait_seconds)
                except WaitTimeout:
                    raise Unavailable(
                        "the thumbnail is still being made", reason=WebReason.BUSY
                    ) from None
            try:
                thumbnail = self._make(opened.fd, opened.size, key, ident)
            except BaseException as exc:
                pending.set_exception(exc)
                raise
            finally:
                with self._lock:
                    self._making.pop(ident, None)
            pending.set_result(thumbnail)
            self._store(ident, thumbnail)
            return thumbnail
        finally:
            os.close(opened.fd)

    def _make(self, fd: int, size: int, key: str, ident: tuple) -> Thumbnail:
        max_file_bytes, max_pixels, max_decoded_bytes = self.limits()
        if size > max_file_bytes:
            raise InvalidArgument(
                f"{key[:200]!r} is {size:,} bytes; thumbnails are made of files up to "
                f"{max_file_bytes:,}",
                reason=Reason.IMAGE_TOO_LARGE,
            )
        if not self._waiting_room.acquire(blocking=False):
            raise Unavailable("too many thumbnails are waiting to be made", reason=WebReason.BUSY)
        try:
            if not self._decoders.acquire(timeout=self.wait_seconds):
                raise Unavailable("every thumbnail worker is busy", reason=WebReason.BUSY)
            try:
                with os.fdopen(os.dup(fd), "rb") as file:
                    data = jpeg(picture(file, self.size, max_pixels, max_decoded_bytes))
            finally:
                self._decoders.release()
        finally:
            self._waiting_room.release()
        self.made += 1
        return Thumbnail(data, self.etag(ident))

    def _store(self, ident: tuple, thumbnail: Thumbnail) -> None:
        if len(thumbnail.data) > self.max_bytes:
            return
        with self._lock:
            if ident in self._cache:
                return
            self._cache[ident] = thumbnail
            self._bytes += len(thumbnail.data)
            while self._bytes > self.max_bytes:
                _, evicted = self._cache.popitem(last=False)
                self._bytes -= len(evicted.data)
