"""gRPC <-> Shard. Thin: decode the request, call the shard, map errors."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from imagesim.errors import Unavailable
from imagesim.index_server.shard import Shard
from imagesim.serving.errors import map_errors
from imagesim.v1 import index_pb2, index_pb2_grpc


class IndexServicer(index_pb2_grpc.IndexServicer):
    """Serves a Shard once `attach()` has given it one (UNAVAILABLE before)."""

    def __init__(self) -> None:
        self._shard: Shard | None = None

    def attach(self, shard: Shard) -> None:
        self._shard = shard

    @property
    def shard(self) -> Shard:
        if self._shard is None:
            raise Unavailable("the shard is still loading")
        return self._shard

    def _add(self, request: index_pb2.AddRequest) -> tuple[int, int]:
        return self.shard.add([(i.key, i.vector, i.metadata) for i in request.items])

    @map_errors
    def Add(self, request: index_pb2.AddRequest, context: grpc.ServicerContext):
        added, replaced = self._add(request)
        return index_pb2.AddResponse(added=added, replaced=replaced, count=self.shard.stats().count)

    @map_errors
    def AddStream(self, request_iterator: Iterator[index_pb2.AddRequest], context):
        added = replaced = 0
        for request in request_iterator:
            a, r = self._add(request)
            added, replaced = added + a, replaced + r
        return index_pb2.AddResponse(added=added, replaced=replaced, count=self.shard.stats().count)

    @map_errors
    def Remove(self, request: index_pb2.RemoveRequest, context: grpc.ServicerContext):
        removed, missing = self.shard.remove(list(request.keys))
        return index_pb2.RemoveResponse(
            removed=removed, missing=missing, count=self.shard.stats().count
        )

    @map_errors
    def Build(self, request: index_pb2.BuildRequest, context: grpc.ServicerContext):
        self.shard.build(request.trees)
        stats = self.shard.stats()
        return index_pb2.BuildResponse(
            generation=stats.generation,
            count=stats.built_count,
            trees=stats.trees,
            seconds=stats.last_build_seconds,
        )

    @map_errors
    def Search(self, request: index_pb2.SearchRequest, context: grpc.ServicerContext):
        hits = self.shard.search(
            request.vector,
            request.k,
            search_k=request.search_k,
            rerank=request.rerank,
            rerank_factor=request.rerank_factor,
            include_metadata=request.include_metadata,
        )
        return index_pb2.SearchResponse(
            neighbors=[
                index_pb2.Neighbor(key=h.key, distance=h.distance, metadata=h.metadata or {})
                for h in hits
            ]
        )

    @map_errors
    def Get(self, request: index_pb2.GetRequest, context: grpc.ServicerContext):
        item = self.shard.get(request.key)
        return index_pb2.Item(key=item.key, vector=item.vector.tolist(), metadata=item.metadata)

    @map_errors
    def Contains(self, request: index_pb2.ContainsRequest, context: grpc.ServicerContext):
        return index_pb2.ContainsResponse(present=self.shard.contains(list(request.keys)))

    @map_errors
    def Stats(self, request: index_pb2.StatsRequest, context: grpc.ServicerContext):
        s = self.shard.stats()
        return index_pb2.StatsResponse(
            count=s.count,
            dimension=s.dims,
            metric=s.metric,
            trees=s.trees,
            built=s.built,
            generation=s.generation,
            built_count=s.built_count,
            staged=s.staged,
            removed=s.removed,
            index_bytes=s.index_bytes,
            last_build_time=s.last_build_time,
            last_build_seconds=s.last_build_seconds,
            building=s.building,
            shard_index=s.shard_index,
            shard_count=s.shard_count,
        )
