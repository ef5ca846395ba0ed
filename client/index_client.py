"""Client of one Index shard."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from imagesim.client.rpc import DEFAULT_TIMEOUT, ServiceClient
from imagesim.v1 import index_pb2, index_pb2_grpc


@dataclass(frozen=True)
class Neighbor:
    key: str
    distance: float
    shard: str = ""
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True)
class ItemToAdd:
    key: str
    vector: np.ndarray
    metadata: Mapping[str, str] | None = None

    def to_proto(self) -> index_pb2.Item:
        return index_pb2.Item(key=self.key, vector=self.vector.tolist(), metadata=self.metadata)


def search_request(
    vector: np.ndarray,
    k: int,
    search_k: int = -1,
    rerank: bool = False,
    include_metadata: bool = False,
) -> index_pb2.SearchRequest:
    return index_pb2.SearchRequest(
        vector=np.asarray(vector, dtype=np.float32).tolist(),
        k=k,
        search_k=search_k,
        rerank=rerank,
        include_metadata=include_metadata,
    )


def neighbors(reply: index_pb2.SearchResponse, shard: str) -> list[Neighbor]:
    return [
        Neighbor(n.key, n.distance, shard, dict(n.metadata) if n.metadata else None)
        for n in reply.neighbors
    ]


class IndexClient(ServiceClient):
    what = "index shard"

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(address, timeout)
        self.stub = index_pb2_grpc.IndexStub(self._channel)

    def add(
        self, items: Iterable[ItemToAdd], timeout: float | None = None
    ) -> index_pb2.AddResponse:
        request = index_pb2.AddRequest(items=[item.to_proto() for item in items])
        return self._call(self.stub.Add, request, timeout)

    def remove(self, keys: Iterable[str], timeout: float | None = None) -> index_pb2.RemoveResponse:
        return self._call(self.stub.Remove, index_pb2.RemoveRequest(keys=list(keys)), timeout)

    def build(self, trees: int = 0, timeout: float = 3600.0) -> index_pb2.BuildResponse:
        return self._call(self.stub.Build, index_pb2.BuildRequest(trees=trees), timeout)

    def search(
        self,
        vector: np.ndarray,
        k: int = 10,
        search_k: int = -1,
        rerank: bool = False,
        include_metadata: bool = False,
        timeout: float | None = None,
    ) -> list[Neighbor]:
        request = search_request(vector, k, search_k, rerank, include_metadata)
        return neighbors(self._call(self.stub.Search, request, timeout), self.address)

    def get(self, key: str, timeout: float | None = None) -> index_pb2.Item:
        return self._call(self.stub.Get, index_pb2.GetRequest(key=key), timeout)

    def contains(self, keys: list[str], timeout: float | None = None) -> list[bool]:
        reply = self._call(self.stub.Contains, index_pb2.ContainsRequest(keys=keys), timeout)
        return list(reply.present)

    def stats(self, timeout: float | None = None) -> index_pb2.StatsResponse:
        return self._call(self.stub.Stats, index_pb2.StatsRequest(), timeout)
