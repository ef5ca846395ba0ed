"""Client of the Embedder service."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import grpc
import numpy as np

from imagesim.client.rpc import DEFAULT_TIMEOUT, ServiceClient, rpc_error
from imagesim.errors import FailedPrecondition, ImagesimError, error_for_code
from imagesim.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
SPACES = {"full": common_pb2.SPACE_FULL, "reduced": common_pb2.SPACE_REDUCED}


@dataclass(frozen=True)
class Embedded:
    """One image's vector (or the reason it has none), from a bulk stream."""

    id: str
    vector: np.ndarray | None
    error: ImagesimError | None = None


class EmbedderClient(ServiceClient):
    what = "the embedder"

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(address, timeout)
        self._stub = embedder_pb2_grpc.EmbedderStub(self._channel)

    def info(self, timeout: float | None = None) -> embedder_pb2.InfoResponse:
        return self._call(self._stub.Info, embedder_pb2.InfoRequest(), timeout)

    def dimension(self, space: str = "full") -> int:
        """Vector length in `space`; FailedPrecondition if the server does not offer it."""
        for offered in self.info().spaces:
            if offered.space == SPACES[space]:
                return offered.dimension
        raise FailedPrecondition(
            f"the embedder at {self.address} does not offer the {space} space", address=self.address
        )

    def embed(self, image: bytes, space: str = "full", timeout: float | None = None) -> np.ndarray:
        """One encoded image -> float32 vector."""
        request = embedder_pb2.EmbedRequest(image=image, space=SPACES[space])
        reply = self._call(self._stub.Embed, request, timeout)
        return np.asarray(reply.embedding.values, dtype=np.float32)

    def embed_stream(
        self, images: Iterable[tuple[str, bytes]], space: str = "full", timeout: float = 3600.0
    ) -> Iterator[Embedded]:
        """Bulk: (id, bytes) pairs in, Embedded out in the same order. A bad image yields an
        Embedded with `error`; a broken stream raises ImagesimError."""
        requests = (
            embedder_pb2.EmbedRequest(image=data, space=SPACES[space], id=image_id)
            for image_id, data in images
        )
        responses = self._stub.EmbedStream(requests, timeout=timeout)
        try:
            for reply in responses:
                if reply.WhichOneof("result") == "error":
                    code = CODE_NAMES.get(reply.error.code, "UNKNOWN")
                    yield Embedded(reply.id, None, error_for_code(code, reply.error.message))
                else:
                    yield Embedded(reply.id, np.asarray(reply.embedding.values, dtype=np.float32))
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.address, "the embedder") from None
        finally:
            responses.cancel()
