"""A collection spread over several Index shards: routed adds, parallel fan-out search."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import grpc
import numpy as np

from imagesim.client.index_client import (
    IndexClient,
    ItemToAdd,
    Neighbor,
    neighbors,
    search_request,
)
from imagesim.client.merge import merge_top_k, shard_for
from imagesim.client.rpc import DEFAULT_TIMEOUT, rpc_error
from imagesim.errors import FailedPrecondition, ImagesimError, Unavailable
from imagesim.v1 import index_pb2


@dataclass
class SearchResult:
    neighbors: list[Neighbor]
    # Shards that did not answer (only with allow_partial): address -> error.
    missing: dict[str, ImagesimError] = field(default_factory=dict)


class Collection:
    """The shards in a fixed order: the order decides where each key lives."""

    def __init__(self, shards: Iterable[str], timeout: float = DEFAULT_TIMEOUT) -> None:
        addresses = [a.strip() for a in shards if a.strip()]
        if not addresses:
            raise ValueError("at least one shard address is needed")
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"a shard is listed twice: {','.join(addresses)}")
        self.timeout = timeout
        self.shards = [IndexClient(address, timeout) for address in addresses]

    def close(self) -> None:
        for shard in self.shards:
            shard.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def addresses(self) -> list[str]:
        return [s.address for s in self.shards]

    def shard_of(self, key: str) -> IndexClient:
        return self.shards[shard_for(key, len(self.shards))]

    def _fan_out(
        self,
        method: Callable[[IndexClient], grpc.UnaryUnaryMultiCallable],
        request: object,
        timeout: float,
    ) -> list[object | ImagesimError]:
        """The same call on every shard at once, under one overall deadline."""
        deadline = time.monotonic() + timeout
        calls = [
            method(shard).future(request, timeout=max(deadline - time.monotonic(), 0.001))
            for shard in self.shards
        ]
        results: list[object | ImagesimError] = []
        for shard, future in zip(self.shards, calls, strict=True):
            try:
                results.append(future.result())
            except grpc.RpcError as exc:
                results.append(rpc_error(exc, shard.address, shard.what))
        return results

    def _all(
        self,
        method: Callable[[IndexClient], grpc.UnaryUnaryMultiCallable],
        request: object,
        timeout: float,
    ) -> list:
        results = self._fan_out(method, request, timeout)
        for result in results:
            if isinstance(result, ImagesimError):
                raise result
        return results

    def stats(self, timeout: float | None = None) -> list[index_pb2.StatsResponse]:
        return self._all(lambda s: s.stub.Stats, index_pb2.StatsRequest(), timeout or self.timeout)

    def check_layout(self, dims: int | None = None, allow_missing: bool = False) -> tuple[int, str]:
        """All shards must hold the same dimension and metric (and `dims`, if given), and a
        shard that recorded its place in the collection must be listed at that place.

        With `allow_missing`, shards that do not answer are left out of the check (at least
        one must answer); otherwise the first failure is raised."""
        answers = self._fan_out(lambda s: s.stub.Stats, index_pb2.StatsRequest(), self.timeout)
        stats = {}
        for address, answer in zip(self.addresses, answers, strict=True):
            if isinstance(answer, ImagesimError):
                if not allow_missing:
                    raise answer
            else:
                stats[address] = answer
        if not stats:
            raise Unavailable("no shard answered: " + ", ".join(self.addresses))
        for position, address in enumerate(self.addresses):
            recorded = stats.get(address)
            if (
                recorded is not None
                and recorded.shard_count
                and (
                    (recorded.shard_index, recorded.shard_count) != (position, len(self.addresses))
                )
            ):
                raise FailedPrecondition(
                    f"shard {address} is recorded as shard {recorded.shard_index} of "
                    f"{recorded.shard_count}, but the shard list puts it at position {position} "
                    f"of {len(self.addresses)}: keys would be routed to the wrong shards"
                )
        layouts = {(s.dimension, s.metric) for s in stats.values()}
        if len(layouts) > 1:
            described = ", ".join(f"{a}: {s.dimension}-d {s.metric}" for a, s in stats.items())
            raise FailedPrecondition(f"the shards disagree on their layout ({described})")
        shard_dims, metric = layouts.pop()
        if dims is not None and shard_dims != dims:
            raise FailedPrecondition(
                f"the shards hold {shard_dims}-d vectors but the embeddings are {dims}-d "
                "(index and query in the same space, or start the shards with matching --dims)"
            )
        return shard_dims, metric

    def add(self, items: Iterable[ItemToAdd], timeout: float | None = None) -> int:
        """Route each item to its shard by a stable hash of its key; returns items sent."""
        by_shard: dict[int, list[ItemToAdd]] = defaultdict(list)
        for item in items:
            by_shard[shard_for(item.key, len(self.shards))].append(item)
        for number, batch in by_shard.items():
            self.shards[number].add(batch, timeout)
        return sum(len(b) for b in by_shard.values())

    def missing(self, keys: Iterable[str], chunk: int = 2000) -> list[str]:
        """The keys no shard holds yet (each key is asked of its own shard), in order."""
        keys = list(keys)
        by_shard: dict[int, list[str]] = defaultdict(list)
        for key in keys:
            by_shard[shard_for(key, len(self.shards))].append(key)
        present: set[str] = set()
        for number, shard_keys in by_shard.items():
            for start in range(0, len(shard_keys), chunk):
                batch = shard_keys[start : start + chunk]
                flags = self.shards[number].contains(batch)
                present.update(k for k, here in zip(batch, flags, strict=True) if here)
        return [k for k in keys if k not in present]

    def remove(self, keys: Iterable[str], timeout: float | None = None) -> tuple[int, int]:
        """Returns (removed, missing)."""
        by_shard: dict[int, list[str]] = defaultdict(list)
        for key in keys:
            by_shard[shard_for(key, len(self.shards))].append(key)
        removed = missing = 0
        for number, batch in by_shard.items():
            reply = self.shards[number].remove(batch, timeout)
            removed, missing = removed + reply.removed, missing + reply.missing
        return removed, missing

    def build(self, trees: int = 0, timeout: float = 3600.0) -> list[index_pb2.BuildResponse]:
        return self._all(lambda s: s.stub.Build, index_pb2.BuildRequest(trees=trees), timeout)

    def search(
        self,
        vector: np.ndarray,
        k: int = 10,
        search_k: int = -1,
        rerank: bool = False,
        include_metadata: bool = False,
        timeout: float | None = None,
        allow_partial: bool = False,
    ) -> SearchResult:
        """Search every shard in parallel and merge the global top-k.

        A failed shard fails the search with UNAVAILABLE naming it, unless `allow_partial`,
        which returns what the other shards found and names the missing shards."""
        request = search_request(vector, k, search_k, rerank, include_metadata)
        results = self._fan_out(lambda s: s.stub.Search, request, timeout or self.timeout)
        found: list[list[Neighbor]] = []
        missing: dict[str, ImagesimError] = {}
        for shard, result in zip(self.shards, results, strict=True):
            if isinstance(result, ImagesimError):
                if result.code == "INVALID_ARGUMENT":
                    raise result
                missing[shard.address] = result
            else:
                found.append(neighbors(result, shard.address))  # type: ignore[arg-type]
        if missing and not allow_partial:
            if len(missing) == 1:
                address, error = next(iter(missing.items()))
                raise Unavailable(f"shard {address} failed: {error}", address=address)
            raise Unavailable(
                f"{len(missing)} shards failed: "
                + "; ".join(f"{a}: {e}" for a, e in missing.items())
            )
        return SearchResult(merge_top_k(found, k), missing)  # type: ignore[arg-type]
