"""gRPC <-> Embedder core. Thin: decode the request, call the core, map errors."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import numpy as np

from imagesim import protocol
from imagesim.embedder_server.embedder import FULL, REDUCED, Embedder, EmbedItem, EmbedOutcome
from imagesim.errors import Reason, Unavailable
from imagesim.serving.errors import error_status, map_errors
from imagesim.types import StreamLimits
from imagesim.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

log = logging.getLogger(__name__)

SPACE_ENUMS = {FULL: common_pb2.SPACE_FULL, REDUCED: common_pb2.SPACE_REDUCED}


def space_name(space: int) -> str:
    known = protocol.space_of(space)
    return known.value if known is not None else f"unknown space {space}"


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    """Serves an Embedder once `attach()` has given it one (UNAVAILABLE before)."""

    def __init__(self, stream_limits: StreamLimits | None = None) -> None:
        self._core: Embedder | None = None
        self.stream_limits = protocol.stream_limits_message(stream_limits or StreamLimits())

    def attach(self, core: Embedder) -> None:
        self._core = core

    @property
    def core(self) -> Embedder:
        if self._core is None:
            raise Unavailable("the embedder is still loading its model", reason=Reason.NOT_READY)
        return self._core

    def _embedding(self, vector: np.ndarray, space: str) -> embedder_pb2.Embedding:
        info = self.core.info
        return embedder_pb2.Embedding(
            values=protocol.floats(vector),
            dimension=int(vector.shape[0]),
            space=SPACE_ENUMS[space],
            model_fingerprint=info.fingerprint,
            runtime=protocol.RUNTIMES[info.runtime],
            precision=protocol.PRECISIONS[info.precision],
        )

    @map_errors
    def Embed(self, request: embedder_pb2.EmbedRequest, context: grpc.ServicerContext):
        space = space_name(request.space)
        vector = self.core.embed(request.image, space)
        return embedder_pb2.EmbedResponse(embedding=self._embedding(vector, space))

    def _stream_response(self, outcome: EmbedOutcome) -> embedder_pb2.EmbedStreamResponse:
        if outcome.error is not None:
            error = error_status(outcome.error)
            return embedder_pb2.EmbedStreamResponse(id=outcome.id, error=error)
        assert outcome.vector is not None
        return embedder_pb2.EmbedStreamResponse(
            id=outcome.id, embedding=self._embedding(outcome.vector, outcome.space)
        )

    @map_errors
    def EmbedStream(self, request_iterator: Iterator[embedder_pb2.EmbedStreamRequest], context):
        items = (
            EmbedItem(request.id, request.image, space_name(request.space))
            for request in request_iterator
        )
        for outcome in self.core.embed_many(items):
            yield self._stream_response(outcome)

    @map_errors
    def Info(self, request: embedder_pb2.InfoRequest, context: grpc.ServicerContext):
        core = self.core
        info = core.info
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
            runtime=protocol.RUNTIMES[info.runtime],
            precision=protocol.PRECISIONS[info.precision],
            max_batch_size=core.batcher.max_batch_size,
            max_batch_time=protocol.duration(core.batcher.max_batch_time),
            limits=protocol.embedder_limits_message(core.limits, self.stream_limits),
            images_embedded=core.images_embedded,
            notes=list(info.notes),
        )
