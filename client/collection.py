"""A collection spread over several Index shards: routed writes, parallel fan-out search.

Keys are placed by rendezvous hashing over the shards' stable ids (imagesim.routing), so the
order of the shard list does not matter. The layout (which shard ids make the collection) is
recorded on every shard before the first write, and a client whose shard list contradicts it
(a shard added, dropped or swapped without `imagesim reshard`) is refused with LAYOUT_MISMATCH:
writes can never be misrouted, and searches never silently miss a shard.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np

from imagesim import protocol, reserved
from imagesim.channel import ChannelSecurity
from imagesim.client.index_client import BUILD_TIMEOUT, IndexClient
from imagesim.client.merge import merge_top_k
from imagesim.client.rpc import DEFAULT_TIMEOUT, Deadline, rpc_error
from imagesim.enums import Metric
from imagesim.errors import (
    Aborted,
    FailedPrecondition,
    ImagesimError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    Unavailable,
)
from imagesim.params import SearchParams
from imagesim.routing import home
from imagesim.types import BuildResult, Item, ItemToAdd, Layout, Neighbor, ShardStats
from imagesim.v1 import index_pb2


@dataclass
class SearchResult:
    neighbors: list[Neighbor]
    # Shards that did not answer (only with allow_partial): address -> error.
    missing: dict[str, ImagesimError] = field(default_factory=dict)


def _mismatch(message: str) -> FailedPrecondition:
    return FailedPrecondition(message, reason=Reason.LAYOUT_MISMATCH)


class Collection:
    """The shards of one collection, given by address in any order."""

    def __init__(
        self,
        shards: Iterable[str],
        timeout: float = DEFAULT_TIMEOUT,
        security: ChannelSecurity | None = None,
    ) -> None:
        addresses = [a.strip() for a in shards if a.strip()]
        if not addresses:
            raise ValueError("at least one shard address is needed")
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"a shard is listed twice: {','.join(addresses)}")
        self.timeout = timeout
        self.shards = [IndexClient(address, timeout, security) for address in addresses]
        self._layout: Layout | None = None
        self._by_id: dict[str, IndexClient] = {}
        self.dims = 0
        self.metric = Metric.ANGULAR

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

    # ---- fan-out --------------------------------------------------------------------------

    def _fan_out(
        self,
        method: Callable[[IndexClient], grpc.UnaryUnaryMultiCallable],
        request: object,
        deadline: Deadline,
        shards: Sequence[IndexClient] | None = None,
    ) -> list[object | ImagesimError]:
        """The same call on every shard at once, under one overall deadline."""
        shards = self.shards if shards is None else shards
        timeout = deadline.remaining()
        calls = [method(shard).future(request, timeout=timeout) for shard in shards]
        results: list[object | ImagesimError] = []
        for shard, future in zip(shards, calls, strict=True):
            try:
                results.append(future.result())
            except grpc.RpcError as exc:
                results.append(rpc_error(exc, shard.address, shard.what, shard))
        return results

    def _all(
        self,
        method: Callable[[IndexClient], grpc.UnaryUnaryMultiCallable],
        request: object,
        deadline: Deadline,
    ) -> list:
        results = self._fan_out(method, request, deadline)
        for result in results:
            if isinstance(result, ImagesimError):
                raise result
        return results

    def stats(self, timeout: float | None = None) -> list[ShardStats]:
        """Every shard's Stats, in the order of the shard list."""
        deadline = Deadline(timeout or self.timeout)
        replies = self._all(lambda s: s.stub.Stats, index_pb2.StatsRequest(), deadline)
        return [
            protocol.shard_stats_of(address, reply)
            for address, reply in zip(self.addresses, replies, strict=True)
        ]

    def status(self, timeout: float | None = None) -> list[ShardStats]:
        """Deprecated spelling of `stats` (which returns the same typed rows now)."""
        warnings.warn(
            "Collection.status() is deprecated: use Collection.stats()", DeprecationWarning, 2
        )
        return self.stats(timeout)

    # ---- layout ---------------------------------------------------------------------------

    def connect(self, allow_missing: bool = False, timeout: float | None = None) -> Layout:
        """Read every shard's id and recorded layout (one Stats round trip) and check that
        the shard list is exactly the recorded collection, with one dimension and metric.

        With `allow_missing`, shards that do not answer are left out of the check (at least
        one must answer). Returns the layout (version 0 if none is recorded yet)."""
        deadline = Deadline(timeout or self.timeout)
        answers = self._fan_out(lambda s: s.stub.Stats, index_pb2.StatsRequest(), deadline)
        stats: dict[str, ShardStats] = {}
        for address, answer in zip(self.addresses, answers, strict=True):
            if isinstance(answer, ImagesimError):
                if not allow_missing:
                    raise answer
            else:
                stats[address] = protocol.shard_stats_of(address, answer)  # type: ignore[arg-type]
        if not stats:
            raise Unavailable("no shard answered: " + ", ".join(self.addresses))
        ids = {address: s.shard_id for address, s in stats.items()}
        if len(set(ids.values())) != len(ids):
            raise _mismatch(f"two addresses reach the same shard: {ids}")
        shapes = {(s.dimension, s.metric) for s in stats.values()}
        if len(shapes) > 1:
            described = ", ".join(
                f"{a}: {s.dimension}-d {s.metric.value}" for a, s in stats.items()
            )
            raise _mismatch(f"the shards disagree on their vectors ({described})")
        dims, metric = shapes.pop()
        recorded = {s.layout for s in stats.values() if s.layout.version}
        if not recorded:
            layout = Layout(0, tuple(sorted(ids.values())))
        elif len(recorded) > 1:
            versions = sorted(layout.version for layout in recorded)
            raise _mismatch(
                f"the shards record different layouts (versions {versions}): an interrupted "
                "reshard? run `imagesim reshard` again with the same lists"
            )
        else:
            layout = recorded.pop()
            self._check_listed(layout, ids, complete=len(stats) == len(self.shards))
        self.dims, self.metric = dims, metric
        self.models: Counter[str] = Counter()  # items per model fingerprint prefix
        self.embedded_by: Counter[str] = Counter()  # items per runtime/precision
        for s in stats.values():
            self.models.update(s.models)
            self.embedded_by.update(s.embedded_by)
        self._layout = layout
        self._by_id = {ids[s.address]: s for s in self.shards if s.address in ids}
        return layout

    def _check_listed(self, layout: Layout, ids: dict[str, str], complete: bool) -> None:
        strangers = [a for a, shard_id in ids.items() if shard_id not in layout.all_ids]
        if strangers:
            raise _mismatch(
                f"{', '.join(strangers)} is not part of the collection recorded on the other "
                f"shards ({', '.join(layout.shard_ids)}): add shards with `imagesim reshard`"
            )
        absent = sorted(layout.all_ids - set(ids.values()))
        if complete and absent:
            raise _mismatch(
                f"the shard list lacks shards of the recorded collection: {', '.join(absent)} "
                "(list every shard; remove shards with `imagesim reshard`)"
            )

    @property
    def layout(self) -> Layout:
        if self._layout is None:
            self.connect()
        assert self._layout is not None
        return self._layout

    def record_layout(self) -> Layout:
        """Record the layout on every shard if none is recorded yet (before the first write).
        While a reshard moves items, writes wait: FailedPrecondition (LAYOUT_CHANGED)."""
        layout = self.layout
        self._refuse_during_reshard(layout)
        if layout.version:
            return layout
        new = Layout(1, layout.shard_ids)
        for shard in self.shards:
            # Aborted: another client recorded one first; connect() checks that it matches.
            with contextlib.suppress(Aborted):
                try:
                    shard.set_layout(new, expected_version=0)
                except PermissionDenied as exc:
                    raise PermissionDenied(
                        f"{exc.message}: a new collection's layout is recorded once, by its "
                        "first write with an admin key; later writes need only write",
                        reason=exc.reason,
                        metadata=exc.metadata,
                        address=exc.address,
                    ) from None
        return self.connect()

    @staticmethod
    def _refuse_during_reshard(layout: Layout) -> None:
        if layout.next_shard_ids:
            raise FailedPrecondition(
                f"a reshard to {', '.join(layout.next_shard_ids)} is in progress: writes wait "
                "until `imagesim reshard` finishes (searches go on)",
                reason=Reason.LAYOUT_CHANGED,
            )

    def shard_for(self, key: str) -> IndexClient:
        """The client of the shard holding `key` under the recorded layout."""
        shard_ids = self.layout.shard_ids  # connects first, if needed
        return self._by_id[home(key, shard_ids)]

    def _group(self, keys: Iterable[str]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = defaultdict(list)
        shard_ids = self.layout.shard_ids  # connects first, if needed
        for key in keys:
            groups[home(key, shard_ids)].append(key)
        return groups

    # ---- writes ---------------------------------------------------------------------------

    def add(self, items: Iterable[ItemToAdd], timeout: float | None = None) -> int:
        """Route each item to its shard; returns items sent. A shard that refuses an item as
        not its own (the layout changed meanwhile) makes the client read the layout again and
        retry once."""
        items = list(items)
        for attempt in range(2):
            layout = self.record_layout()
            by_key = {item.key: item for item in items}
            try:
                for shard_id, keys in self._group(by_key).items():
                    batch = [by_key[k] for k in keys]
                    self._by_id[shard_id].add(batch, layout.version, timeout)
                return len(items)
            except FailedPrecondition as exc:
                if attempt or exc.reason not in (Reason.WRONG_SHARD, Reason.LAYOUT_CHANGED):
                    raise
                self.connect()
        raise AssertionError("unreachable")

    def remove(self, keys: Iterable[str], timeout: float | None = None) -> tuple[int, int]:
        """Returns (removed, missing)."""
        self._refuse_during_reshard(self.layout)
        removed = missing = 0
        for shard_id, batch in self._group(keys).items():
            reply = self._by_id[shard_id].remove(batch, timeout)
            removed, missing = removed + reply.removed, missing + reply.missing
        return removed, missing

    def missing(self, keys: Iterable[str], chunk: int = 2000) -> list[str]:
        """The keys no shard holds yet (each key is asked of its own shard), in order."""
        keys = list(keys)
        present: set[str] = set()
        for shard_id, shard_keys in self._group(keys).items():
            for start in range(0, len(shard_keys), chunk):
                batch = shard_keys[start : start + chunk]
                flags = self._by_id[shard_id].contains(batch)
                present.update(k for k, here in zip(batch, flags, strict=True) if here)
        return [k for k in keys if k not in present]

    def build(self, trees: int = 0, timeout: float = BUILD_TIMEOUT) -> list[BuildResult]:
        """Build every shard at once; one answer per shard, in the order of the shard list."""
        replies = self._all(
            lambda s: s.stub.Build, index_pb2.BuildRequest(trees=trees), Deadline(timeout)
        )
        return [
            protocol.build_result_of(reply, address)
            for address, reply in zip(self.addresses, replies, strict=True)
        ]

    # ---- reads ----------------------------------------------------------------------------

    def get(self, key: str, timeout: float | None = None) -> Item:
        """One item (vector and metadata) from its home shard; NotFound if absent. While a
        reshard moves items, the new home is asked first, then the old one."""
        layout = self.layout
        if not layout.next_shard_ids:
            return self.shard_for(key).get(key, timeout)
        deadline = Deadline(timeout or self.timeout)
        new_home = self._by_id[home(key, layout.next_shard_ids)]
        try:
            return new_home.get(key, deadline.remaining())
        except NotFound:
            return self.shard_for(key).get(key, deadline.remaining())

    def search(
        self,
        vector: np.ndarray,
        params: SearchParams = SearchParams(),
        timeout: float | None = None,
        allow_partial: bool = False,
    ) -> SearchResult:
        """The collection's k nearest neighbours of one vector."""
        return self.search_many(np.atleast_2d(vector), params, timeout, allow_partial)[0]

    def search_many(
        self,
        vectors: np.ndarray,
        params: SearchParams = SearchParams(),
        timeout: float | None = None,
        allow_partial: bool = False,
    ) -> list[SearchResult]:
        """Search every shard in parallel for all the query vectors at once (one round trip
        per shard) and merge each query's global top-k.

        A failed shard fails the search with UNAVAILABLE naming it, unless `allow_partial`,
        which returns what the other shards found and names the missing shards."""
        deadline = Deadline(timeout or self.timeout)
        layout = self._layout or self.connect(allow_missing=allow_partial)
        request = protocol.search_request(vectors, params)
        results = self._fan_out(lambda s: s.stub.Search, request, deadline)
        found: list[list[list[Neighbor]]] = []
        missing: dict[str, ImagesimError] = {}
        for shard, result in zip(self.shards, results, strict=True):
            if isinstance(result, ImagesimError):
                if isinstance(result, InvalidArgument):
                    raise result
                missing[shard.address] = result
                continue
            reply: index_pb2.SearchResponse = result  # type: ignore[assignment]
            if reply.layout_version != layout.version:
                layout = self.connect(allow_missing=allow_partial)  # refuses a bad list
            found.append([protocol.neighbors_of(r, shard.address) for r in reply.results])
        if missing and not allow_partial:
            if len(missing) == 1:
                address, error = next(iter(missing.items()))
                raise Unavailable(f"shard {address} failed: {error}", address=address)
            raise Unavailable(
                f"{len(missing)} shards failed: "
                + "; ".join(f"{a}: {e}" for a, e in missing.items())
            )
        return [
            SearchResult(merge_top_k([per_shard[q] for per_shard in found], params.k), missing)
            for q in range(len(np.atleast_2d(vectors)))
        ]

    def similar(
        self,
        key: str,
        params: SearchParams = SearchParams(),
        timeout: float | None = None,
        allow_partial: bool = False,
    ) -> SearchResult:
        """More like this: the neighbours of an item already in the collection (its vector is
        read from its home shard), the item itself left out."""
        deadline = Deadline(timeout or self.timeout)
        item = self.get(key, deadline.remaining())
        result = self.search(
            item.vector, params.with_k(params.k + 1), deadline.remaining(), allow_partial
        )
        result.neighbors = [n for n in result.neighbors if n.key != key][: params.k]
        return result

    def scan(
        self, page_size: int = 0, include_vectors: bool = False, include_metadata: bool = True
    ) -> Iterator[Item]:
        """Every item of the collection, shard after shard (each in key order)."""
        for shard in self.shards:
            for page in shard.scan(page_size, "", include_vectors, include_metadata, timeout=3600):
                yield from page

    def check_model(
        self, fingerprint: str, runtime: str = "", precision: str = "", adding: bool = True
    ) -> list[str]:
        """Refuse vectors of another model than the one that made the collection's vectors
        (FailedPrecondition, SPACE_MISMATCH: they are not comparable); refuse to add int8
        vectors to a collection holding float vectors of the model, or the reverse (a query,
        `adding` False, gets a warning instead); return warnings when this runtime/precision
        differs from some already there (comparable within the agreement docs/performance.md
        states). Reads what connect() read."""
        self.layout  # noqa: B018 - connects once
        made = reserved.model_tags(fingerprint, runtime, precision)
        model = made.get(reserved.MODEL)
        if model and self.models and model not in self.models:
            known = ", ".join(f"{m} ({n} items)" for m, n in self.models.most_common())
            raise FailedPrecondition(
                f"the collection holds vectors of model {known}; these come from model "
                f"{model}: vectors of different models are not comparable (use another "
                "collection, or the embedder the collection was made with)",
                reason=Reason.SPACE_MISMATCH,
            )
        mine = made.get(reserved.EMBEDDED_BY)
        others = sorted(set(self.embedded_by) - {mine}) if mine else []
        if not others:
            return []
        assert mine is not None
        clash = [other for other in others if reserved.quantized(other) != reserved.quantized(mine)]
        if clash and adding:
            raise FailedPrecondition(
                f"the collection holds vectors made on {', '.join(clash)}; these come from "
                f"{mine}: int8 and float vectors are not mixed in one collection (int8 vectors "
                "differ more from float ones than float runtimes do among themselves; use "
                "another collection, or the precision the collection was made with)",
                reason=Reason.SPACE_MISMATCH,
            )
        if clash:
            return [
                f"note: the collection holds vectors made on {', '.join(clash)}; this query "
                f"comes from {mine}: int8 and float vectors agree less than float runtimes do "
                "(results may differ from a query made with the collection's own precision)"
            ]
        return [
            f"note: the collection also holds vectors made on {', '.join(others)}; these "
            f"come from {mine} (same model: they agree to within the top-10 agreement the "
            "benchmark in docs/performance.md gives)"
        ]

    def check_dims(self, dims: int) -> None:
        """The shards must hold `dims`-d vectors (those the embedder makes)."""
        self.layout  # noqa: B018 - connects once
        if self.dims != dims:
            raise FailedPrecondition(
                f"the shards hold {self.dims}-d vectors but the embeddings are {dims}-d "
                "(index and query in the same space, or start the shards with matching --dims)",
                reason=Reason.SPACE_MISMATCH,
            )
