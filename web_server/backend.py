"""The services the web server composes, reached through the client library only: the Embedder
(EmbedderClient) and the collection's shards (Collection). No HTTP here.

Channels are opened once and shared by all requests (gRPC channels are thread-safe); each
request gets one deadline for all its backend calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from imagesim.channel import ChannelSecurity
from imagesim.client.collection import Collection, SearchResult
from imagesim.client.embedder_client import EmbedderClient
from imagesim.client.pictures import check_image
from imagesim.client.rpc import Deadline
from imagesim.errors import ImagesimError, InvalidArgument, Reason
from imagesim.limits import ImageLimits
from imagesim.params import SearchParams
from imagesim.types import Item, ShardStats

DEFAULT_INPUT_SIZE = (299, 299)  # InceptionV3's: what an upload is decoded for
LIMITS_RETRY_SECONDS = 5.0
READINESS_TTL_SECONDS = 2.0


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may be: the embedder's image limits (its file size capped by
    --max-upload-mb) and the size it decodes for."""

    image: ImageLimits
    from_embedder: bool  # False: defaults, the embedder has not answered yet
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE  # (width, height) the model decodes for


class Backend:
    def __init__(
        self,
        embedder: str,
        shards: tuple[str, ...],
        timeout: float,
        max_upload_bytes: int = 0,
        security: ChannelSecurity | None = None,  # TLS and key of the calls
    ) -> None:
        self.timeout = timeout
        self.embedder = EmbedderClient(embedder, timeout, security)
        self.collection = Collection(shards, timeout, security)
        self._max_upload_bytes = max_upload_bytes
        self._limits: UploadLimits | None = None
        self._limits_tried = 0.0
        self._lock = threading.Lock()
        self._readiness: tuple[float, dict[str, str], str] | None = None
        self._connected = False

    def close(self) -> None:
        self.embedder.close()
        self.collection.close()

    # ---- limits ---------------------------------------------------------------------------

    def limits(self) -> UploadLimits:
        """The embedder's upload limits (from its Info, read once), lowered by
        --max-upload-mb. Until the embedder answers, its defaults, asked again at most every
        few seconds (a request never waits on a dead embedder for more than 2 s here)."""
        with self._lock:
            if self._limits is not None:
                return self._limits
            now = time.monotonic()
            ask = now - self._limits_tried >= LIMITS_RETRY_SECONDS
            if ask:
                self._limits_tried = now
        limits = None
        if ask:
            try:
                info = self.embedder.info(timeout=2.0)
                reported, default = info.limits, ImageLimits()
                image = replace(  # a limit the embedder does not report: its default
                    reported,
                    max_bytes=reported.max_bytes or default.max_bytes,
                    max_pixels=reported.max_pixels or default.max_pixels,
                    max_decoded_bytes=reported.max_decoded_bytes or default.max_decoded_bytes,
                )
                limits = UploadLimits(
                    image,
                    True,
                    (info.input_width, info.input_height)
                    if info.input_width and info.input_height
                    else DEFAULT_INPUT_SIZE,
                )
            except ImagesimError:
                limits = None
        if limits is None:
            limits = UploadLimits(ImageLimits(), False)
        if self._max_upload_bytes:
            capped = min(limits.image.max_bytes, self._max_upload_bytes)
            limits = replace(limits, image=replace(limits.image, max_bytes=capped))
        if limits.from_embedder:
            with self._lock:
                self._limits = limits
        return limits

    def check_upload(self, data: bytes) -> None:
        """The embedder's checks (the same rule, imagesim.images), done here first from the
        header alone, so an oversized or non-image upload never costs a round trip (the
        embedder checks again)."""
        limits = self.limits()
        image = limits.image
        if not data:
            raise InvalidArgument("the uploaded file is empty", reason=Reason.IMAGE_EMPTY)
        if len(data) > image.max_bytes:
            raise InvalidArgument(
                f"the file is {len(data):,} bytes; the limit is {image.max_bytes:,}",
                reason=Reason.IMAGE_TOO_LARGE,
                metadata={"limit": str(image.max_bytes)},
            )
        check_image(data, limits.input_size, image.max_pixels, image.max_decoded_bytes)

    # ---- searches -------------------------------------------------------------------------

    def search_image(
        self, data: bytes, params: SearchParams, allow_partial: bool = False
    ) -> SearchResult:
        """Embed an uploaded image and search the whole collection with its vector."""
        self.check_upload(data)
        deadline = Deadline(self.timeout)
        vector = self.embedder.embed(data, timeout=deadline.remaining())
        return self.search_vector(vector, params, deadline, allow_partial)

    def _connect(self, deadline: Deadline, allow_partial: bool = False) -> None:
        """Read the collection's layout once (every shard must answer that first time; the
        Collection reads it again by itself when it changes). A partial request on a
        collection not read yet reads it from the shards that answer, every time."""
        if self._connected:
            return
        if allow_partial:
            self.collection.connect(allow_missing=True, timeout=deadline.remaining())
            return
        self.collection.connect(timeout=deadline.remaining())
        self._connected = True

    def search_vector(
        self, vector: np.ndarray, params: SearchParams, deadline: Deadline, allow_partial: bool
    ) -> SearchResult:
        self._connect(deadline, allow_partial)
        self.collection.check_dims(len(vector))
        return self.collection.search(vector, params, deadline.remaining(), allow_partial)

    def similar(self, key: str, params: SearchParams, allow_partial: bool = False) -> SearchResult:
        deadline = Deadline(self.timeout)
        self._connect(deadline)  # the key's own shard must answer
        return self.collection.similar(key, params, deadline.remaining(), allow_partial)

    def item(self, key: str) -> Item:
        deadline = Deadline(self.timeout)
        self._connect(deadline)
        return self.collection.get(key, deadline.remaining())

    def contains(self, key: str) -> bool:
        """Whether the collection holds `key` (one Contains call to its home shard)."""
        self._connect(Deadline(self.timeout))
        return not self.collection.missing([key])

    # ---- state ----------------------------------------------------------------------------

    def stats(self) -> list[ShardStats]:
        return self.collection.stats(self.timeout)

    def readiness(self) -> tuple[dict[str, str], str]:
        """Each shard's and the embedder's state ("ok" or why not), cached for 2 s so that
        probes cannot turn into a load on the services."""
        with self._lock:
            cached = self._readiness
        if cached is not None and time.monotonic() - cached[0] < READINESS_TTL_SECONDS:
            return cached[1], cached[2]

        def state(call: Callable[[], object]) -> str:
            try:
                call()
                return "ok"
            except ImagesimError as exc:
                return str(exc)

        # All at once: a probe takes 2 s at most however many services are down.
        with ThreadPoolExecutor(len(self.collection.shards) + 1) as pool:
            asked = {
                c.address: pool.submit(state, partial(c.stats, timeout=2.0))
                for c in self.collection.shards
            }
            embedder_state = pool.submit(state, lambda: self.embedder.info(timeout=2.0))
            shards = {address: future.result() for address, future in asked.items()}
            embedder = embedder_state.result()
        with self._lock:
            self._readiness = (time.monotonic(), shards, embedder)
        return shards, embedder


def collection_signature(backend: Backend) -> tuple[tuple, int]:
    """The collection's state (changes whenever an item is added, built or removed) and its
    item count: what the duplicate jobs and the outliers reuse an answer for."""
    shards = backend.stats()
    state = tuple((s.shard_id, s.count, s.generation, s.staged, s.hidden) for s in shards)
    return state, sum(s.count for s in shards)
