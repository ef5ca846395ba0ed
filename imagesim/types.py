"""The domain types both ends share: items, neighbours, layouts, limits, what a write, a build,
a shard's Stats and the Embedder's Info answer. Plain dataclasses, no gRPC: imagesim.protocol
converts them to and from the imagesim.v1 messages (one place, so servers and clients agree),
and every public client method returns them, never a generated message."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imagesim.enums import Metric, Precision, Runtime, Space
from imagesim.limits import ImageLimits, IndexLimits, MiB

if TYPE_CHECKING:
    import numpy as np

DEFAULT_MAX_MESSAGE_BYTES = 64 * MiB  # gRPC messages, both ways (imagesim.channel uses it)
DEFAULT_MAX_STREAMS = 4  # of the handler threads: the rest stay for unary calls
DEFAULT_STREAM_IDLE_TIMEOUT = 60.0  # seconds
# Health Watch streams are open to callers without a key (load balancers), so they get their
# own small pool and never the --max-streams slots of authenticated work; each holds a handler
# thread while open, and is ended (OK: the client watches again) after its lifetime.
DEFAULT_MAX_HEALTH_WATCHES = 2
DEFAULT_HEALTH_WATCH_LIFETIME = 300.0  # seconds


# ---- items ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemToAdd:
    key: str
    vector: np.ndarray
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Item:
    """An item read back from a shard (vector empty when not asked for)."""

    key: str
    vector: np.ndarray
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Neighbor:
    key: str
    distance: float
    shard: str = ""  # the address of the shard that answered (empty inside a shard)
    metadata: Mapping[str, str] | None = None


# ---- writes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AddResult:
    added: int  # new keys
    replaced: int  # keys that existed: vector and metadata replaced
    count: int  # items on the shard afterwards
    requests: int = 1  # messages of an AddStream


@dataclass(frozen=True)
class RemoveResult:
    removed: int
    missing: int  # keys the shard did not hold
    count: int  # items on the shard afterwards


@dataclass(frozen=True)
class BuildResult:
    generation: int  # 0: the shard holds no items
    count: int
    trees: int
    seconds: float
    shard: str = ""  # the address of the shard that built


# ---- the collection's layout ------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """The shards of a collection, as recorded on each of its shards (version 0: none)."""

    version: int = 0
    shard_ids: tuple[str, ...] = ()
    next_shard_ids: tuple[str, ...] = ()  # while a reshard moves items

    @property
    def all_ids(self) -> set[str]:
        return {*self.shard_ids, *self.next_shard_ids}

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "shard_ids": list(self.shard_ids),
                "next_shard_ids": list(self.next_shard_ids),
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> Layout:
        if not text:
            return cls()
        value = json.loads(text)
        return cls(value["version"], tuple(value["shard_ids"]), tuple(value["next_shard_ids"]))


# ---- limits a server reports ------------------------------------------------------------


@dataclass(frozen=True)
class StreamLimits:
    """What a server allows streams (reported by Info/Stats)."""

    max_streams: int = DEFAULT_MAX_STREAMS  # streaming calls open at once
    idle_timeout: float = DEFAULT_STREAM_IDLE_TIMEOUT  # s without a client message; 0 = none
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # largest message either way
    # Streams callers may open without a key (health Watch): their own pool and lifetime.
    max_health_watches: int = DEFAULT_MAX_HEALTH_WATCHES
    health_watch_lifetime: float = DEFAULT_HEALTH_WATCH_LIFETIME  # s; 0 = none


# ---- what Stats and Info answer ---------------------------------------------------------


@dataclass(frozen=True)
class ShardStats:
    """One shard's Stats: what the shard reports of itself, and what a client reads back (with
    the address it reached the shard at and the server's stream limits)."""

    shard_id: str
    count: int
    built_count: int
    staged: int
    hidden: int
    dimension: int
    metric: Metric
    generation: int
    trees: int
    built: bool
    building: bool
    index_bytes: int
    last_build_time: float | None  # Unix seconds; None: never built
    last_build_seconds: float | None
    last_build_error: str
    layout: Layout
    project_dims: int
    models: dict[str, int]  # items per model fingerprint (imagesim.model)
    embedded_by: dict[str, int]  # items per runtime/precision (imagesim.embedded_by)
    limits: IndexLimits
    streams: StreamLimits = field(default_factory=StreamLimits)  # the server's, not the shard's
    shard: str = ""  # the address a client reached it at

    def row(self) -> dict[str, Any]:
        """The JSON row the CLI and the web API show (plain values only)."""
        return {
            "shard": self.shard,
            "shard_id": self.shard_id,
            "count": self.count,
            "built_count": self.built_count,
            "staged": self.staged,
            "hidden": self.hidden,
            "dimension": self.dimension,
            "metric": self.metric.value,
            "generation": self.generation,
            "trees": self.trees,
            "built": self.built,
            "building": self.building,
            "index_bytes": self.index_bytes,
            "last_build_seconds": self.last_build_seconds or 0.0,
            "last_build_error": self.last_build_error,
            "layout_version": self.layout.version,
            "project_dims": self.project_dims,
            "models": self.models,
            "embedded_by": self.embedded_by,
        }


@dataclass(frozen=True)
class CollectionTotals:
    """A collection's figures added up over its shards (`stats --json` and /api/stats)."""

    shards: int
    count: int
    built_count: int
    staged: int
    hidden: int
    index_bytes: int
    models: dict[str, int]
    embedded_by: dict[str, int]

    @classmethod
    def of(cls, shards: Sequence[ShardStats]) -> CollectionTotals:
        return cls(
            shards=len(shards),
            count=sum(s.count for s in shards),
            built_count=sum(s.built_count for s in shards),
            staged=sum(s.staged for s in shards),
            hidden=sum(s.hidden for s in shards),
            index_bytes=sum(s.index_bytes for s in shards),
            models=dict(sum((Counter(s.models) for s in shards), Counter())),
            embedded_by=dict(sum((Counter(s.embedded_by) for s in shards), Counter())),
        )


@dataclass(frozen=True)
class SpaceInfo:
    space: Space
    dimension: int
    description: str = ""


@dataclass(frozen=True)
class EmbedderInfo:
    """What an Embedder runs and allows (its Info)."""

    model: str
    weights: str
    untrained: bool
    model_fingerprint: str
    spaces: tuple[SpaceInfo, ...]
    input_height: int
    input_width: int
    runtime: Runtime | None  # None: a server too old to say
    precision: Precision | None
    max_batch_size: int
    max_batch_time: float  # seconds
    limits: ImageLimits
    streams: StreamLimits
    images_embedded: int
    notes: tuple[str, ...] = ()
