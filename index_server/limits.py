"""What one request may ask of a shard, and the checks that enforce it.

Every limit is configurable (imagesim-index flags), reported by Stats, documented in
docs/operations.md, and enforced before any work is done: over a limit is INVALID_ARGUMENT with the
limit named in the message and in ErrorInfo metadata ("limit").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from imagesim.errors import FailedPrecondition, InvalidArgument, Reason
from imagesim.settings_base import setting


@dataclass(frozen=True)
class IndexLimits:
    """Each limit is an imagesim-index flag (imagesim.settings_base) and a Stats field."""

    max_key_bytes: int = setting(1024, "longest key, bytes of UTF-8")
    max_metadata_bytes: int = setting(
        64 * 1024, "largest metadata of one item (keys and values together), bytes of UTF-8"
    )
    max_items_per_request: int = setting(  # 4096 x 8 KiB < 64 MiB
        4096, "most items (Add) or keys (Remove, Contains) in one request"
    )
    max_trees: int = setting(1000, "most Annoy trees a Build may ask for")
    max_k: int = setting(1000, "largest k of a Search")
    max_search_k: int = setting(10_000_000, "largest search_k of a Search")
    max_queries_per_search: int = setting(256, "most query vectors in one Search")
    max_results_per_search: int = setting(  # bounds the response the server builds
        20_000, "most neighbours one Search returns in all (k x queries)"
    )
    max_page_size: int = setting(4096, "largest Scan page")
    default_page_size: int = 256  # not a flag, not reported

    def check(self) -> None:
        """Every limit must allow at least one (a server started with --max-k 0 would refuse
        every search): FailedPrecondition naming the flag otherwise."""
        for name, value in vars(self).items():
            if value < 1:
                flag = "--" + name.replace("_", "-")
                raise FailedPrecondition(f"{flag} must be at least 1, not {value}")


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
