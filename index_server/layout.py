"""What a shard is and where its keys belong: its configuration, the lock that makes its data
directory its own, its identity record (dims, metric, shard id, fixed at creation), the
collection layout recorded on it (compare-and-set on its version), and the placement check a
write makes against that layout.

Besides the directory lock, pure checks over values and the store's layout record: the shard
holds its locks (the layout is read and replaced under its write lock).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock, Timeout

from imagesim.enums import Metric
from imagesim.errors import Aborted, FailedPrecondition, InvalidArgument, Reason
from imagesim.index_server.item_store import ItemStore
from imagesim.index_server.limits import check_count
from imagesim.routing import homes
from imagesim.types import Layout

LOCK_FILE = "LOCK"
MAX_SHARDS = 10_000
SHARD_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def lock_data_dir(data_dir: Path) -> FileLock:
    """Hold the data directory for this process's lifetime: one owner per directory."""
    path = data_dir / LOCK_FILE
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise FailedPrecondition(
            f"{data_dir} is in use by another imagesim-index process (it holds the lock {path}); "
            "stop that process or give this one another --data directory"
        ) from None
    return lock


def check_identity(
    store: ItemStore,
    data_dir: Path,
    dims: int | None,
    metric: Metric | str,
    shard_id: str | None,
) -> tuple[int, Metric, str]:
    """The shard's dims, metric and id are fixed at creation; a restart must agree. Records
    them in the store on first use; returns (dims, metric, shard id)."""
    metric = Metric(metric)
    if shard_id is not None and not SHARD_ID.fullmatch(shard_id):
        raise FailedPrecondition(
            f"shard id {shard_id!r}: use 1-128 letters, digits, '.', '_' or '-'"
        )
    layout = store.layout()
    if "dims" not in layout:
        if dims is None or dims <= 0:
            raise FailedPrecondition(
                f"{data_dir} holds no shard yet: give --dims (e.g. 2048) to create one"
            )
        created = shard_id or f"shard-{uuid.uuid4().hex[:10]}"
        store.set_layout({"dims": str(dims), "metric": metric.value, "shard_id": created})
        return dims, metric, created
    if "metric" not in layout:
        raise FailedPrecondition(f"{data_dir}: the shard's layout record is damaged")
    stored_dims, stored_metric = int(layout["dims"]), layout["metric"]
    if (dims not in (None, stored_dims)) or stored_metric != metric.value:
        raise FailedPrecondition(
            f"{data_dir} holds a {stored_dims}-d {stored_metric} shard; it cannot be served "
            f"as {dims}-d {metric.value} (use another --data directory)"
        )
    recorded = layout.get("shard_id")
    if recorded is None:  # created before shard ids existed
        recorded = shard_id or f"shard-{uuid.uuid4().hex[:10]}"
        store.set_layout({"shard_id": recorded})
    elif shard_id not in (None, recorded):
        raise FailedPrecondition(
            f"{data_dir} is shard {recorded!r}; it cannot be served as {shard_id!r}"
        )
    return stored_dims, metric, recorded


def check_layout(layout: Layout, shard_id: str) -> None:
    """A layout this shard may record: valid, distinct shard ids that include `shard_id`."""
    ids = [*layout.shard_ids, *layout.next_shard_ids]
    check_count("shard ids", len(ids), 2 * MAX_SHARDS)
    for group in (layout.shard_ids, layout.next_shard_ids):
        if len(set(group)) != len(group):
            raise InvalidArgument("a shard id is listed twice", reason=Reason.KEY_DUPLICATE)
    if not layout.shard_ids:
        raise InvalidArgument("a layout needs at least one shard id", reason=Reason.KEY_EMPTY)
    for listed in ids:
        if not SHARD_ID.fullmatch(listed):
            raise InvalidArgument(
                f"shard id {listed[:40]!r} is not 1-128 letters, digits, '.', '_' or '-'",
                reason=Reason.VALUE_OUT_OF_RANGE,
            )
    if shard_id not in ids:
        raise InvalidArgument(
            f"the layout does not list this shard ({shard_id})",
            reason=Reason.LAYOUT_MISMATCH,
        )


def check_successor(current: Layout, layout: Layout, expected_version: int) -> None:
    """The compare of compare-and-set: `layout` may replace `current` only if the caller read
    `expected_version` and the new version is above it (caller holds the write lock)."""
    if expected_version != current.version:
        raise Aborted(
            f"the layout is at version {current.version}, not {expected_version}: read it again",
            reason=Reason.LAYOUT_CHANGED,
            metadata={"version": str(current.version)},
        )
    if layout.version <= expected_version:
        raise InvalidArgument(
            f"the new layout's version must be above {expected_version}",
            reason=Reason.LAYOUT_CHANGED,
        )


def check_placement(
    layout: Layout, shard_id: str, keys: Sequence[str], layout_version: int
) -> None:
    """Refuse keys that live on another shard under the recorded `layout` (the caller holds
    the write lock, so the layout cannot change meanwhile)."""
    if layout_version and layout_version != layout.version:
        raise FailedPrecondition(
            f"the client routed with layout version {layout_version}; this shard records "
            f"version {layout.version}: read the layout again",
            reason=Reason.LAYOUT_CHANGED,
            metadata={"version": str(layout.version)},
        )
    if not layout.version:
        return
    for key in keys:
        owners = homes(key, layout.shard_ids, layout.next_shard_ids)
        if shard_id not in owners:
            raise FailedPrecondition(
                f"key {key[:80]!r} belongs on shard {sorted(owners)[0]}, not on "
                f"{shard_id} (collection layout version {layout.version})",
                reason=Reason.WRONG_SHARD,
                metadata={"home": sorted(owners)[0], "version": str(layout.version)},
            )
