"""The parameters of a nearest-neighbour search: one definition shared by the shard core, the
clients and the CLI (the proto's SearchRequest carries the same fields)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

# The candidate pool multiplier `--rerank` asks for when no number is given.
DEFAULT_RERANK_FACTOR = 10


@dataclass(frozen=True)
class SearchParams:
    """k: neighbours per query. search_k: Annoy nodes to inspect (0 = Annoy's default).
    rerank_factor: Annoy returns rerank_factor x k candidates, the best k by exact distance
    are kept (1 = no extra pool). max_distance: only neighbours at most this far (None = no
    threshold). where: metadata equality filter, every pair must match.
    include_metadata: return each neighbour's metadata."""

    k: int = 10
    search_k: int = 0
    rerank_factor: int = 1
    max_distance: float | None = None
    where: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    include_metadata: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "where", MappingProxyType(dict(self.where)))

    def with_k(self, k: int) -> SearchParams:
        return replace(self, k=k)

    @property
    def pool(self) -> int:
        """Candidates to fetch from Annoy for k results."""
        return self.k * max(1, self.rerank_factor)
