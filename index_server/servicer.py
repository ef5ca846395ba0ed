"""gRPC <-> Shard. Thin: decode the request, call the shard, encode the reply; errors are
mapped to rich statuses by `map_errors`."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from imagesim import protocol
from imagesim.errors import Reason, Unavailable
from imagesim.index_server.item_store import StoredItem
from imagesim.index_server.shard import Shard
from imagesim.serving.errors import map_errors
from imagesim.types import StreamLimits
from imagesim.v1 import index_pb2, index_pb2_grpc


def item_message(item: StoredItem, with_vector: bool = True) -> index_pb2.Item:
    return index_pb2.Item(
        key=item.key,
        vector=protocol.floats(item.vector) if with_vector else (),
        metadata=item.metadata,
    )


class IndexServicer(index_pb2_grpc.IndexServicer):
    """Serves a Shard once `attach()` has given it one (UNAVAILABLE before)."""

    def __init__(self, stream_limits: StreamLimits | None = None) -> None:
        self._shard: Shard | None = None
        self._stream_limits = protocol.stream_limits_message(stream_limits or StreamLimits())

    def attach(self, shard: Shard) -> None:
        self._shard = shard

    @property
    def shard(self) -> Shard:
        if self._shard is None:
            raise Unavailable("the shard is still loading", reason=Reason.NOT_READY)
        return self._shard

    def _add(self, items: list[index_pb2.Item], layout_version: int) -> tuple[int, int]:
        # The repeated fields go to the shard as they are: it makes one matrix of them all.
        return self.shard.add([(i.key, i.vector, i.metadata) for i in items], layout_version)

    @map_errors
    def Add(
        self, request: index_pb2.AddRequest, context: grpc.ServicerContext
    ) -> index_pb2.AddResponse:
        added, replaced = self._add(list(request.items), request.layout_version)
        return index_pb2.AddResponse(added=added, replaced=replaced, count=self.shard.count)

    @map_errors
    def AddStream(
        self, request_iterator: Iterator[index_pb2.AddStreamRequest], context: grpc.ServicerContext
    ) -> index_pb2.AddStreamResponse:
        added = replaced = requests = 0
        for request in request_iterator:
            a, r = self._add(list(request.items), request.layout_version)
            added, replaced, requests = added + a, replaced + r, requests + 1
        return index_pb2.AddStreamResponse(
            added=added, replaced=replaced, count=self.shard.count, requests=requests
        )

    @map_errors
    def Remove(
        self, request: index_pb2.RemoveRequest, context: grpc.ServicerContext
    ) -> index_pb2.RemoveResponse:
        removed, missing = self.shard.remove(list(request.keys))
        return index_pb2.RemoveResponse(removed=removed, missing=missing, count=self.shard.count)

    @map_errors
    def Build(
        self, request: index_pb2.BuildRequest, context: grpc.ServicerContext
    ) -> index_pb2.BuildResponse:
        generation = self.shard.build(request.trees)
        if generation is None:
            return index_pb2.BuildResponse()
        return index_pb2.BuildResponse(
            generation=generation.number,
            count=generation.count,
            trees=generation.trees,
            duration=protocol.duration(generation.build_seconds),
        )

    @map_errors
    def Search(
        self, request: index_pb2.SearchRequest, context: grpc.ServicerContext
    ) -> index_pb2.SearchResponse:
        shard = self.shard
        params = protocol.search_params(request)
        results = shard.search([protocol.vector_of(q.values) for q in request.queries], params)
        return index_pb2.SearchResponse(
            results=[
                index_pb2.SearchResult(
                    neighbors=[
                        index_pb2.Neighbor(key=h.key, distance=h.distance, metadata=h.metadata)
                        for h in hits
                    ]
                )
                for hits in results
            ],
            layout_version=shard.layout.version,
        )

    @map_errors
    def Get(
        self, request: index_pb2.GetRequest, context: grpc.ServicerContext
    ) -> index_pb2.GetResponse:
        return index_pb2.GetResponse(item=item_message(self.shard.get(request.key)))

    @map_errors
    def Contains(
        self, request: index_pb2.ContainsRequest, context: grpc.ServicerContext
    ) -> index_pb2.ContainsResponse:
        return index_pb2.ContainsResponse(present=self.shard.contains(list(request.keys)))

    @map_errors
    def Scan(
        self, request: index_pb2.ScanRequest, context: grpc.ServicerContext
    ) -> Iterator[index_pb2.ScanResponse]:
        # Pages are cut at half the message limit, so each fits in one response.
        budget = max(self._stream_limits.max_message_bytes // 2, 1 << 20)
        for page in self.shard.scan(
            request.page_size, request.start_after, request.include_vectors, budget
        ):
            yield index_pb2.ScanResponse(
                items=[
                    index_pb2.Item(
                        key=item.key,
                        vector=protocol.floats(item.vector) if request.include_vectors else (),
                        metadata=item.metadata if request.include_metadata else {},
                    )
                    for item in page
                ]
            )

    @map_errors
    def SetLayout(
        self, request: index_pb2.SetLayoutRequest, context: grpc.ServicerContext
    ) -> index_pb2.SetLayoutResponse:
        layout = protocol.layout_of(request.layout)
        recorded = self.shard.set_layout(layout, request.expected_version)
        return index_pb2.SetLayoutResponse(layout=protocol.layout_message(recorded))

    @map_errors
    def Stats(
        self, request: index_pb2.StatsRequest, context: grpc.ServicerContext
    ) -> index_pb2.StatsResponse:
        return protocol.shard_stats_message(self.shard.stats(), self._stream_limits)
