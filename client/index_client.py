"""Client of one Index shard."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from imagesim import protocol
from imagesim.client.rpc import ServiceClient, call
from imagesim.params import SearchParams
from imagesim.v1 import index_pb2, index_pb2_grpc

BUILD_TIMEOUT = 3600.0  # seconds: a build of a large shard takes minutes


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
        return index_pb2.Item(
            key=self.key, vector=protocol.floats(self.vector), metadata=self.metadata
        )


@dataclass(frozen=True)
class Item:
    """An item read back from a shard (vector empty when not asked for)."""

    key: str
    vector: np.ndarray
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, item: index_pb2.Item) -> Item:
        return cls(item.key, protocol.vector_of(item.vector), dict(item.metadata))


@dataclass(frozen=True)
class Layout:
    """A collection layout as recorded on a shard (version 0: none recorded)."""

    version: int = 0
    shard_ids: tuple[str, ...] = ()
    next_shard_ids: tuple[str, ...] = ()

    @classmethod
    def from_proto(cls, layout: index_pb2.CollectionLayout) -> Layout:
        return cls(layout.version, tuple(layout.shard_ids), tuple(layout.next_shard_ids))

    def to_proto(self) -> index_pb2.CollectionLayout:
        return index_pb2.CollectionLayout(
            version=self.version,
            shard_ids=list(self.shard_ids),
            next_shard_ids=list(self.next_shard_ids),
        )

    @property
    def all_ids(self) -> set[str]:
        return {*self.shard_ids, *self.next_shard_ids}


@dataclass(frozen=True)
class ShardStatus:
    """One shard's Stats in plain Python types (the CLI's and the web API's view of it)."""

    shard: str  # the address it was reached at
    shard_id: str
    count: int
    built_count: int
    staged: int
    hidden: int
    dimension: int
    metric: str
    generation: int
    trees: int
    built: bool
    building: bool
    index_bytes: int
    last_build_seconds: float
    last_build_error: str
    layout_version: int
    project_dims: int
    models: dict[str, int]
    embedded_by: dict[str, int]

    @classmethod
    def from_proto(cls, address: str, s: index_pb2.StatsResponse) -> ShardStatus:
        return cls(
            shard=address,
            shard_id=s.shard_id,
            count=s.count,
            built_count=s.built_count,
            staged=s.staged,
            hidden=s.hidden,
            dimension=s.dimension,
            metric=protocol.metric_of(s.metric).value,
            generation=s.generation,
            trees=s.trees,
            built=s.built,
            building=s.building,
            index_bytes=s.index_bytes,
            last_build_seconds=protocol.seconds_of(s.last_build_duration),
            last_build_error=s.last_build_error,
            layout_version=s.layout.version,
            project_dims=s.project_dims,
            models=dict(s.models),
            embedded_by=dict(s.embedded_by),
        )


def neighbors(result: index_pb2.SearchResult, shard: str) -> list[Neighbor]:
    return [
        Neighbor(n.key, n.distance, shard, dict(n.metadata) if n.metadata else None)
        for n in result.neighbors
    ]


class IndexClient(ServiceClient):
    what = "index shard"
    service = index_pb2.DESCRIPTOR.services_by_name["Index"].full_name
    stub_type = index_pb2_grpc.IndexStub

    def add(
        self, items: Iterable[ItemToAdd], layout_version: int = 0, timeout: float | None = None
    ) -> index_pb2.AddResponse:
        request = index_pb2.AddRequest(
            items=[item.to_proto() for item in items], layout_version=layout_version
        )
        return self._call(self.stub.Add, request, timeout)

    def remove(self, keys: Iterable[str], timeout: float | None = None) -> index_pb2.RemoveResponse:
        return self._call(self.stub.Remove, index_pb2.RemoveRequest(keys=list(keys)), timeout)

    def build(self, trees: int = 0, timeout: float = BUILD_TIMEOUT) -> index_pb2.BuildResponse:
        return self._call(self.stub.Build, index_pb2.BuildRequest(trees=trees), timeout)

    def search(
        self,
        queries: np.ndarray,
        params: SearchParams = SearchParams(),
        timeout: float | None = None,
    ) -> list[list[Neighbor]]:
        """The neighbours of each row of `queries` ((n, dims) or one (dims,) vector)."""
        request = protocol.search_request(queries, params)
        reply = self._call(self.stub.Search, request, timeout)
        return [neighbors(result, self.address) for result in reply.results]

    def get(self, key: str, timeout: float | None = None) -> Item:
        reply = self._call(self.stub.Get, index_pb2.GetRequest(key=key), timeout)
        return Item.from_proto(reply.item)

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
                yield [Item.from_proto(item) for item in page.items]
        finally:
            pages.cancel()

    def stats(self, timeout: float | None = None) -> index_pb2.StatsResponse:
        return self._call(self.stub.Stats, index_pb2.StatsRequest(), timeout)

    def set_layout(
        self, layout: Layout, expected_version: int, timeout: float | None = None
    ) -> Layout:
        request = index_pb2.SetLayoutRequest(
            layout=layout.to_proto(), expected_version=expected_version
        )
        return Layout.from_proto(self._call(self.stub.SetLayout, request, timeout).layout)
