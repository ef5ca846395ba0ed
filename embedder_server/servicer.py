"""gRPC <-> Embedder core. Thin: decode the request, call the core, map errors."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import grpc
import numpy as np

from imagesim import protocol
from imagesim.embedder_server.embedder import FULL, REDUCED, Embedder
from imagesim.enums import Precision, Runtime
from imagesim.errors import ImagesimError, Reason, Unavailable
from imagesim.serving.errors import error_status, map_errors
from imagesim.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

log = logging.getLogger(__name__)

SPACE_ENUMS = {FULL: common_pb2.SPACE_FULL, REDUCED: common_pb2.SPACE_REDUCED}


def space_name(space: int) -> str:
    known = protocol.space_of(space)
    return known.value if known is not None else f"unknown space {space}"


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    """Serves an Embedder once `attach()` has given it one (UNAVAILABLE before)."""

    def __init__(
        self, stream_window: int = 64, stream_limits: common_pb2.StreamLimits | None = None
    ) -> None:
        self._core: Embedder | None = None
        self.stream_limits = stream_limits or common_pb2.StreamLimits()
        self.stream_window = stream_window
        # Decoding threads for streams: keeps `stream_window` images in flight per stream.
        self._pool = ThreadPoolExecutor(max_workers=stream_window, thread_name_prefix="decode")

    def attach(self, core: Embedder) -> None:
        self._core = core

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    @property
    def core(self) -> Embedder:
        if self._core is None:
            raise Unavailable("the embedder is still loading its model", reason=Reason.NOT_READY)
        return self._core

    def _embedding(self, vector: np.ndarray, space: str) -> embedder_pb2.Embedding:
        info = self.core.features.info
        return embedder_pb2.Embedding(
            values=protocol.floats(vector),
            dimension=int(vector.shape[0]),
            space=SPACE_ENUMS[space],
            model_fingerprint=info.fingerprint,
            runtime=protocol.RUNTIMES[Runtime(getattr(info, "runtime", Runtime.TENSORFLOW))],
            precision=protocol.PRECISIONS[Precision(info.precision)],
        )

    @map_errors
    def Embed(self, request: embedder_pb2.EmbedRequest, context: grpc.ServicerContext):
        space = space_name(request.space)
        vector = self.core.embed(request.image, space)
        return embedder_pb2.EmbedResponse(embedding=self._embedding(vector, space))

    def _stream_result(
        self, request_id: str, space: str, future: Future[np.ndarray]
    ) -> embedder_pb2.EmbedStreamResponse:
        try:
            vector = future.result()
        except ImagesimError as exc:
            return embedder_pb2.EmbedStreamResponse(id=request_id, error=error_status(exc))
        return embedder_pb2.EmbedStreamResponse(
            id=request_id, embedding=self._embedding(vector, space)
        )

    @map_errors
    def EmbedStream(self, request_iterator: Iterator[embedder_pb2.EmbedStreamRequest], context):
        core = self.core
        in_flight: queue.Queue[object] = queue.Queue(maxsize=self.stream_window)
        done = object()
        failure: list[BaseException] = []

        def read_requests() -> None:
            # Reads ahead so the batcher stays fed, while answers go back in request order.
            try:
                for request in request_iterator:
                    space = space_name(request.space)
                    future = self._pool.submit(core.embed, request.image, space)
                    in_flight.put((request.id, space, future))
            except BaseException as exc:  # the client cancelled or the stream broke
                failure.append(exc)
            finally:
                in_flight.put(done)

        reader = threading.Thread(target=read_requests, name="embed-stream-reader", daemon=True)
        reader.start()
        while (entry := in_flight.get()) is not done:
            request_id, space, future = entry  # type: ignore[misc]
            yield self._stream_result(request_id, space, future)
        if failure and context.is_active():
            log.warning("embed stream ended by: %s", failure[0])

    @map_errors
    def Info(self, request: embedder_pb2.InfoRequest, context: grpc.ServicerContext):
        core = self.core
        info = core.features.info
        width, height = info.input_size
        return embedder_pb2.InfoResponse(
            model=info.name,
            weights=info.weights,
            untrained=info.untrained,
            model_fingerprint=info.fingerprint,
            spaces=[
                embedder_pb2.SpaceInfo(
                    space=SPACE_ENUMS[s.name], dimension=s.dimension, description=s.description
                )
                for s in core.spaces()
            ],
            input_height=height,
            input_width=width,
            runtime=protocol.RUNTIMES[Runtime(getattr(info, "runtime", Runtime.TENSORFLOW))],
            precision=protocol.PRECISIONS[Precision(info.precision)],
            max_batch_size=core.batcher.max_batch_size,
            max_batch_time=protocol.duration(core.batcher.max_batch_time),
            limits=embedder_pb2.EmbedderLimits(
                max_image_bytes=core.limits.max_bytes,
                max_image_pixels=core.limits.max_pixels,
                streams=self.stream_limits,
            ),
            images_embedded=core.images_embedded,
        )
