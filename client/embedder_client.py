"""Client of the Embedder service."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import grpc
import numpy as np

from imagesim import protocol, reserved
from imagesim.channel import parse_target
from imagesim.client.rpc import ServiceClient, rpc_error, status_error
from imagesim.enums import Precision, Runtime, Space
from imagesim.errors import FailedPrecondition, ImagesimError, Reason
from imagesim.types import EmbedderInfo
from imagesim.v1 import embedder_pb2, embedder_pb2_grpc

STREAM_TIMEOUT = 3600.0  # seconds: one deadline for a whole bulk stream unless given


@dataclass(frozen=True)
class ModelIdentity:
    """What made a vector: the model's fingerprint and the runtime/precision it ran on."""

    fingerprint: str
    runtime: str
    precision: str

    @classmethod
    def of(cls, info: EmbedderInfo) -> ModelIdentity:
        """What an embedder runs (its Info)."""
        return cls._named(info.model_fingerprint, info.runtime, info.precision)

    @classmethod
    def of_embedding(cls, embedding: embedder_pb2.Embedding) -> ModelIdentity:
        """What made this vector."""
        return cls._named(
            embedding.model_fingerprint,
            protocol.RUNTIME_OF.get(embedding.runtime),
            protocol.PRECISION_OF.get(embedding.precision),
        )

    @classmethod
    def _named(
        cls, fingerprint: str, runtime: Runtime | None, precision: Precision | None
    ) -> ModelIdentity:
        return cls(
            fingerprint,
            runtime.value if runtime is not None else "unspecified",
            precision.value if precision is not None else "unspecified",
        )

    def describe(self) -> str:
        return f"model {self.fingerprint[:12]} on {self.runtime}/{self.precision}"

    def tags(self) -> dict[str, str]:
        """The reserved metadata keys that say what made a vector (imagesim.reserved)."""
        return reserved.model_tags(self.fingerprint, self.runtime, self.precision)


@dataclass(frozen=True)
class Embedded:
    """One image's vector (or the reason it has none), from a bulk stream; `model` is what
    made the vector."""

    id: str
    vector: np.ndarray | None
    error: ImagesimError | None = None
    model: ModelIdentity | None = None


class EmbedStreamCall:
    """One open EmbedStream: iterate for the answers (Embedded, in request order); `cancel()`
    from any thread ends it. A broken stream raises ImagesimError from the iteration."""

    def __init__(
        self, responses: grpc._CallIterator[embedder_pb2.EmbedStreamResponse], address: str
    ) -> None:
        self._responses = responses
        self._address = address

    def cancel(self) -> None:
        self._responses.cancel()

    def __iter__(self) -> Iterator[Embedded]:
        try:
            for reply in self._responses:
                if reply.WhichOneof("result") == "error":
                    yield Embedded(reply.id, None, status_error(reply.error, self._address))
                else:
                    yield Embedded(
                        reply.id,
                        protocol.vector_of(reply.embedding.values),
                        model=ModelIdentity.of_embedding(reply.embedding),
                    )
        except grpc.RpcError as exc:
            raise rpc_error(exc, self._address, "the embedder") from None
        finally:
            self._responses.cancel()


class EmbedderClient(ServiceClient):
    """The Embedder at `address`: one server (HOST:PORT), or replicas behind one balanced
    channel (HOST:PORT,HOST:PORT,... or dns:///NAME:PORT; see imagesim.channel.parse_target)."""

    what = "the embedder"
    service = embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name
    stub_type = embedder_pb2_grpc.EmbedderStub

    @property
    def replicas(self) -> int | None:
        """How many replicas the address names (None: a resolved name, count unknown)."""
        return parse_target(self.address).replicas

    def info(self, timeout: float | None = None) -> EmbedderInfo:
        reply = self._call(self.stub.Info, embedder_pb2.InfoRequest(), timeout)
        return protocol.embedder_info_of(reply)

    def dimension(self, space: Space = Space.FULL, timeout: float | None = None) -> int:
        """Vector length in `space`; FailedPrecondition if the server does not offer it."""
        for offered in self.info(timeout).spaces:
            if offered.space == Space(space):
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
        reply = self._call(self.stub.Embed, request, timeout)
        return protocol.vector_of(reply.embedding.values)

    def open_stream(
        self,
        images: Iterable[tuple[str, bytes]],
        space: Space = Space.FULL,
        timeout: float = STREAM_TIMEOUT,
    ) -> EmbedStreamCall:
        """Start one EmbedStream sending the (id, bytes) pairs of `images` (read on gRPC's
        thread as the stream goes). Over replicas, the stream stays on the replica the
        channel picked when it opened."""
        wire_space = protocol.SPACES[Space(space)]
        requests = (
            embedder_pb2.EmbedStreamRequest(image=data, space=wire_space, id=image_id)
            for image_id, data in images
        )
        return EmbedStreamCall(self.stub.EmbedStream(requests, timeout=timeout), self.address)

    def embed_stream(
        self,
        images: Iterable[tuple[str, bytes]],
        space: Space = Space.FULL,
        timeout: float = STREAM_TIMEOUT,
    ) -> Iterator[Embedded]:
        """Bulk: (id, bytes) pairs in, Embedded out in the same order. A bad image yields an
        Embedded with `error`; a broken stream raises ImagesimError."""
        yield from self.open_stream(images, space, timeout)
