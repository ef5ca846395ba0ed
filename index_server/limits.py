"""What one request may ask of a shard, and the checks that enforce it.

Every limit is configurable (imagesim-index flags), reported by Stats, documented in
docs/operations.md, and enforced before any work is done: over a limit is INVALID_ARGUMENT with the
limit named in the message and in ErrorInfo metadata ("limit").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

from imagesim.enums import Metric
from imagesim.errors import InvalidArgument, Reason
from imagesim.index_server.vectors import as_vectors
from imagesim.limits import IndexLimits

__all__ = [
    "IndexLimits",
    "check_count",
    "check_items",
    "check_key",
    "check_metadata",
    "check_range",
]


def _too_many(what: str, count: int, limit: int, reason: Reason) -> InvalidArgument:
    return InvalidArgument(
        f"{what}: {count:,} is over the limit of {limit:,}",
        reason=reason,
        metadata={"limit": str(limit)},
    )


def check_count(what: str, count: int, limit: int) -> None:
    """At most `limit` items, keys or queries in one request."""
    if count > limit:
        raise _too_many(f"too many {what} in one request", count, limit, Reason.TOO_MANY_ITEMS)


def check_range(what: str, value: int, low: int, high: int) -> None:
    """`low <= value <= high`."""
    if not low <= value <= high:
        raise InvalidArgument(
            f"{what} must be between {low:,} and {high:,}, not {value:,}",
            reason=Reason.VALUE_OUT_OF_RANGE,
            metadata={"limit": str(high)},
        )


def check_key(key: str, limits: IndexLimits, what: str = "key") -> None:
    if not key:
        raise InvalidArgument(f"{what} is empty", reason=Reason.KEY_EMPTY)
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > limits.max_key_bytes:
        raise InvalidArgument(
            f"{what} {key[:40]!r}... is {size:,} bytes; the limit is {limits.max_key_bytes:,}",
            reason=Reason.KEY_TOO_LONG,
            metadata={"limit": str(limits.max_key_bytes)},
        )


def check_metadata(key: str, metadata: Mapping[str, str], limits: IndexLimits) -> None:
    size = len(json.dumps(dict(metadata), ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > limits.max_metadata_bytes:
        raise InvalidArgument(
            f"metadata of {key[:40]!r} is {size:,} bytes; the limit is "
            f"{limits.max_metadata_bytes:,}",
            reason=Reason.METADATA_TOO_LARGE,
            metadata={"limit": str(limits.max_metadata_bytes)},
        )


def check_items(
    items: Sequence[tuple[str, object, Mapping[str, str]]],
    dims: int,
    metric: Metric,
    limits: IndexLimits,
) -> tuple[list[str], np.ndarray]:
    """The keys and vectors (one matrix) of the items of an Add: keys valid and distinct,
    metadata within its limit, every vector of `dims` values fit for `metric`."""
    keys = [key for key, _, _ in items]
    seen: set[str] = set()
    for key, _, metadata in items:
        check_key(key, limits, "key")
        if key in seen:
            raise InvalidArgument(
                f"key {key[:80]!r} appears twice in one request", reason=Reason.KEY_DUPLICATE
            )
        seen.add(key)
        if metadata:
            check_metadata(key, metadata, limits)
    matrix = as_vectors(
        [values for _, values, _ in items], dims, metric, lambda n: f"item {keys[n][:80]!r}"
    )
    return keys, matrix
