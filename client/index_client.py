"""Client of one Index shard."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from imagesim import protocol
from imagesim.client.rpc import ServiceClient, call
from imagesim.params import SearchParams
from imagesim.types import (
    AddResult,
    BuildResult,
    Item,
    ItemToAdd,
    Layout,
    Neighbor,
    RemoveResult,
    ShardStats,
)
from imagesim.v1 import index_pb2, index_pb2_grpc

# The types this client answers with live in imagesim.types; these names stay importable here.
__all__ = [
    "BUILD_TIMEOUT",
    "IndexClient",
    "Item",
    "ItemToAdd",
    "Layout",
    "Neighbor",
    "ShardStats",
]

BUILD_TIMEOUT = 3600.0  # seconds: a build of a large shard takes minutes


class IndexClient(ServiceClient):
    what = "index shard"
    service = index_pb2.DESCRIPTOR.services_by_name["Index"].full_name
    stub_type = index_pb2_grpc.IndexStub

    def add(
        self, items: Iterable[ItemToAdd], layout_version: int = 0, timeout: float | None = None
    ) -> AddResult:
        request = index_pb2.AddRequest(
            items=[protocol.item_message(item) for item in items], layout_version=layout_version
        )
        return protocol.add_result_of(self._call(self.stub.Add, request, timeout))

    def remove(self, keys: Iterable[str], timeout: float | None = None) -> RemoveResult:
        request = index_pb2.RemoveRequest(keys=list(keys))
        return protocol.remove_result_of(self._call(self.stub.Remove, request, timeout))

    def build(self, trees: int = 0, timeout: float = BUILD_TIMEOUT) -> BuildResult:
        reply = self._call(self.stub.Build, index_pb2.BuildRequest(trees=trees), timeout)
        return protocol.build_result_of(reply, self.address)

    def search(
        self,
        queries: np.ndarray,
        params: SearchParams = SearchParams(),
        timeout: float | None = None,
    ) -> list[list[Neighbor]]:
        """The neighbours of each row of `queries` ((n, dims) or one (dims,) vector)."""
        request = protocol.search_request(queries, params)
        reply = self._call(self.stub.Search, request, timeout)
        return [protocol.neighbors_of(result, self.address) for result in reply.results]

    def get(self, key: str, timeout: float | None = None) -> Item:
        reply = self._call(self.stub.Get, index_pb2.GetRequest(key=key), timeout)
        return protocol.item_of(reply.item)

    def contains(self, keys: Sequence[str], timeout: float | None = None) -> list[bool]:
        request = index_pb2.ContainsRequest(keys=list(keys))
        return list(self._call(self.stub.Contains, request, timeout).present)

    def scan(
        self,
        page_size: int = 0,
        start_after: str = "",
        include_vectors: bool = False,
        include_metadata: bool = True,
        timeout: float | None = None,
    ) -> Iterator[list[Item]]:
        """The shard's items in key order, a page at a time (one deadline for the stream)."""
        request = index_pb2.ScanRequest(
            page_size=page_size,
            start_after=start_after,
            include_vectors=include_vectors,
            include_metadata=include_metadata,
        )
        pages = self.stub.Scan(request, timeout=timeout or self.timeout)
        try:
            while True:
                page = call(self.address, self.what, lambda: next(pages, None), self)
                if page is None:
                    return
                yield [protocol.item_of(item) for item in page.items]
        finally:
            pages.cancel()

    def stats(self, timeout: float | None = None) -> ShardStats:
        reply = self._call(self.stub.Stats, index_pb2.StatsRequest(), timeout)
        return protocol.shard_stats_of(self.address, reply)

    def set_layout(
        self, layout: Layout, expected_version: int, timeout: float | None = None
    ) -> Layout:
        request = index_pb2.SetLayoutRequest(
            layout=protocol.layout_message(layout), expected_version=expected_version
        )
        return protocol.layout_of(self._call(self.stub.SetLayout, request, timeout).layout)
