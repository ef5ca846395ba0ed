"""Client of the Embedder service."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import grpc
import numpy as np

from imagesim import protocol
from imagesim.channel import ChannelSecurity
from imagesim.client.rpc import DEFAULT_TIMEOUT, ServiceClient, rpc_error, status_error
from imagesim.enums import Space
from imagesim.errors import FailedPrecondition, ImagesimError, Reason
from imagesim.v1 import embedder_pb2, embedder_pb2_grpc

STREAM_TIMEOUT = 3600.0  # seconds: one deadline for a whole bulk stream unless given


@dataclass(frozen=True)
class Embedded:
    """One image's vector (or the reason it has none), from a bulk stream."""

    id: str
    vector: np.ndarray | None
    error: ImagesimError | None = None


class EmbedderClient(ServiceClient):
    what = "the embedder"

    def __init__(
        self,
        address: str,
        timeout: float = DEFAULT_TIMEOUT,
        security: ChannelSecurity | None = None,
    ) -> None:
        super().__init__(address, timeout, security)
        self._stub = embedder_pb2_grpc.EmbedderStub(self._channel)

    def info(self, timeout: float | None = None) -> embedder_pb2.InfoResponse:
        return self._call(self._stub.Info, embedder_pb2.InfoRequest(), timeout)

    def dimension(self, space: Space = Space.FULL, timeout: float | None = None) -> int:
        """Vector length in `space`; FailedPrecondition if the server does not offer it."""
        for offered in self.info(timeout).spaces:
            if offered.space == protocol.SPACES[Space(space)]:
                return offered.dimension
        raise FailedPrecondition(
            f"the embedder at {self.address} does not offer the {Space(space).value} space",
            reason=Reason.SPACE_NOT_OFFERED,
            address=self.address,
        )

    def embed(
        self, image: bytes, space: Space = Space.FULL, timeout: float | None = None
    ) -> np.ndarray:
        """One encoded image -> float32 vector."""
        request = embedder_pb2.EmbedRequest(image=image, space=protocol.SPACES[Space(space)])
        reply = self._call(self._stub.Embed, request, timeout)
        return protocol.vector_of(reply.embedding.values)

    def embed_stream(
        self,
        images: Iterable[tuple[str, bytes]],
        space: Space = Space.FULL,
        timeout: float = STREAM_TIMEOUT,
    ) -> Iterator[Embedded]:
        """Bulk: (id, bytes) pairs in, Embedded out in the same order. A bad image yields an
        Embedded with `error`; a broken stream raises ImagesimError."""
        wire_space = protocol.SPACES[Space(space)]
        requests = (
            embedder_pb2.EmbedStreamRequest(image=data, space=wire_space, id=image_id)
            for image_id, data in images
        )
        responses = self._stub.EmbedStream(requests, timeout=timeout)
        try:
            for reply in responses:
                if reply.WhichOneof("result") == "error":
                    yield Embedded(reply.id, None, status_error(reply.error, self.address))
                else:
                    yield Embedded(reply.id, protocol.vector_of(reply.embedding.values))
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.address, "the embedder") from None
        finally:
            responses.cancel()
