"""A shard's searches: the request checks, the metadata-filter strategy, and the search over
one view (Annoy's candidates from the generation, merged with an exact search of staging).

Lock-free: a search reads the shard's current view once (`current`, one reference) and works
on it; writes and builds go on meanwhile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from imagesim.enums import Metric
from imagesim.errors import InvalidArgument, Reason
from imagesim.index_server.item_store import ItemStore
from imagesim.index_server.limits import IndexLimits, check_count, check_metadata, check_range
from imagesim.index_server.staging import KeepFn
from imagesim.index_server.vectors import as_vector, distances
from imagesim.index_server.view import View
from imagesim.params import DEFAULT_RERANK_FACTOR, SearchParams
from imagesim.types import Neighbor

# A metadata filter matching at most this many items is answered by an exact search over
# exactly those items (read from the store) instead of filtering Annoy's candidates.
EXACT_FILTER_ITEMS = 4096
MAX_FILTER_PAIRS = 32
MAX_RERANK_FACTOR = 100
INT32_MAX = 2**31 - 1


class Searcher:
    def __init__(
        self,
        store: ItemStore,
        dims: int,
        metric: Metric,
        limits: IndexLimits,
        current: Callable[[], View],
    ) -> None:
        self.store = store
        self.dims = dims
        self.metric = metric
        self.limits = limits
        self._current = current

    def check(self, count: int, params: SearchParams) -> None:
        limits = self.limits
        if count == 0:
            raise InvalidArgument("no query vectors", reason=Reason.VALUE_OUT_OF_RANGE)
        check_count("queries", count, limits.max_queries_per_search)
        check_range("k", params.k, 1, limits.max_k)
        check_range("search_k", params.search_k, 0, limits.max_search_k)
        check_range("rerank_factor", params.rerank_factor, 0, MAX_RERANK_FACTOR)
        if params.k * count > limits.max_results_per_search:
            raise InvalidArgument(
                f"k x queries = {params.k * count:,} is over the limit of "
                f"{limits.max_results_per_search:,} results per search",
                reason=Reason.TOO_MANY_ITEMS,
                metadata={"limit": str(limits.max_results_per_search)},
            )
        if params.max_distance is not None and not (
            math.isfinite(params.max_distance) and params.max_distance >= 0
        ):
            raise InvalidArgument(
                f"max_distance must be a finite number >= 0, not {params.max_distance}",
                reason=Reason.VALUE_OUT_OF_RANGE,
            )
        check_count("metadata filter pairs", len(params.where), MAX_FILTER_PAIRS)
        check_metadata("the filter", params.where, limits)

    def search(self, queries: Sequence[object], params: SearchParams) -> list[list[Neighbor]]:
        """The k nearest live items of each query vector, closest first."""
        self.check(len(queries), params)
        matrix = np.stack(
            [as_vector(q, self.dims, self.metric, f"query {n}") for n, q in enumerate(queries)]
        )
        where = dict(params.where)
        if where and self.store.metadata_index.count_matching(where) <= EXACT_FILTER_ITEMS:
            found = self._search_matching(matrix, params, where)
        else:
            found = self._search_view(self._current(), matrix, params, where)
        return self._with_metadata(found, params.include_metadata)

    def _search_view(
        self, view: View, matrix: np.ndarray, params: SearchParams, where: dict[str, str]
    ) -> list[list[tuple[float, str]]]:
        keep: KeepFn | None = (
            (lambda keys: self.store.metadata_index.filter_keys(keys, where)) if where else None
        )
        staged = view.staging.snapshot().search(
            matrix, params.k, self.metric, params.max_distance, keep
        )
        results = []
        for query, from_staging in zip(matrix, staged, strict=True):
            from_generation = self._search_generation(view, query, params, keep)
            # A key met in both (replaced during this search) keeps its newer, staged copy.
            merged = {key: d for d, key in from_generation}
            merged.update({key: d for d, key in from_staging})
            results.append(sorted((d, key) for key, d in merged.items())[: params.k])
        return results

    def _search_generation(
        self, view: View, query: np.ndarray, params: SearchParams, keep: KeepFn | None
    ) -> list[tuple[float, str]]:
        """Annoy's candidates minus hidden items (and those the filter drops), fetching more
        until the pool is full or the generation exhausted: removed items never shorten a
        result, and a filter never gives a short list while more matches exist."""
        generation = view.generation
        if generation is None or generation.count == 0:
            return []
        count = generation.count
        projection = generation.projection
        # A projected index ranks approximately: its candidate pool is always re-ranked.
        want = (
            params.pool
            if projection is None
            else params.k * max(params.rerank_factor, DEFAULT_RERANK_FACTOR)
        )
        vector = projection(query[np.newaxis])[0] if projection is not None else query
        n = min(count, want + 8)
        while True:
            search_k = params.search_k or -1
            if projection is not None or (search_k > 0 and n > want + 8):
                # Inspect as many nodes as a plain top-n search would (Annoy's default),
                # at least what the caller asked for.
                search_k = max(search_k, n * generation.trees)
            ids, dists = generation.annoy.get_nns_by_vector(
                vector, n, min(search_k, INT32_MAX), include_distances=True
            )
            candidates = [(d, i) for i, d in zip(ids, dists, strict=True) if not view.hidden[i]]
            if projection is not None and generation.vectors is not None and candidates:
                chosen = [i for _, i in candidates]
                exact = distances(generation.vectors[chosen], query, self.metric)
                candidates = sorted(zip(exact.tolist(), chosen, strict=True))
            beyond = False
            if params.max_distance is not None:
                beyond = bool(candidates) and candidates[-1][0] > params.max_distance
                candidates = [c for c in candidates if c[0] <= params.max_distance]
            if keep is not None and candidates:
                kept = keep([generation.keys[i] for _, i in candidates])
                candidates = [c for c in candidates if generation.keys[c[1]] in kept]
            if len(candidates) >= want or n >= count or beyond:
                return [(float(d), generation.keys[i]) for d, i in candidates[: params.k]]
            # Grow the pool by the share of candidates that survived, at least doubling.
            survived = max(len(candidates), 1) / max(len(ids), 1)
            n = min(count, max(2 * n, math.ceil(want / survived * 1.2)))

    def _search_matching(
        self, matrix: np.ndarray, params: SearchParams, where: dict[str, str]
    ) -> list[list[tuple[float, str]]]:
        """A selective filter: exact distances to exactly the matching items (store reads)."""
        items = self.store.items(self.store.metadata_index.matching_keys(where))
        if not items:
            return [[] for _ in matrix]
        vectors = np.stack([item.vector for item in items])
        results = []
        for query in matrix:
            dist = distances(vectors, query, self.metric)
            order = np.argsort(dist, kind="stable")[: params.k]
            hits = [(float(dist[i]), items[i].key) for i in order]
            if params.max_distance is not None:
                hits = [hit for hit in hits if hit[0] <= params.max_distance]
            results.append(hits)
        return results

    def _with_metadata(
        self, found: list[list[tuple[float, str]]], include_metadata: bool
    ) -> list[list[Neighbor]]:
        if not include_metadata:
            return [[Neighbor(key, d) for d, key in hits] for hits in found]
        metadata = self.store.metadata([key for hits in found for _, key in hits])
        return [
            [Neighbor(key, d, metadata=metadata.get(key, {})) for d, key in hits] for hits in found
        ]
