"""Make a collection match a folder: embed new files, re-embed changed ones, remove the items
whose files are gone.

A file is *changed* when its size or modification time (whole seconds) differs from what the
item's metadata recorded when it was indexed (`file_size`, `mtime`: see bulk.common.image_metadata);
an item without them is re-embedded. Only keys that belong to the folder are ever removed: keys
are the paths as indexed (`photos/a.jpg` for `imagesim index photos`), so the folder's items are
the keys under that same path, and an item is removed only when no file exists at its key any
more. A sync is idempotent and needs no journal: run again after an interruption, it plans from
what the shards hold and finishes the job.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from imagesim.bulk.common import BulkReport, path_key
from imagesim.client.bulk import add_vectors, embed_files
from imagesim.client.collection import Collection
from imagesim.client.embedder_client import EmbedderClient
from imagesim.enums import Space
from imagesim.images import list_images
from imagesim.types import Item

SCAN_PAGE = 2048  # items a Scan page carries (metadata only)
SCAN_TIMEOUT = 3600.0  # one deadline for scanning a shard's items under the folder


@dataclass(frozen=True)
class LocalFile:
    path: Path
    key: str
    size: int
    mtime: int  # whole seconds, as the metadata records it


@dataclass
class SyncPlan:
    """What a sync would do; `describe()` is the dry run's text."""

    folder: Path
    new: list[LocalFile] = field(default_factory=list)
    changed: list[LocalFile] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    files_seen: int = 0
    seconds: float = 0.0  # listing and statting the folder, scanning the shards

    @property
    def to_embed(self) -> list[Path]:
        return [f.path for f in self.new + self.changed]

    @property
    def is_noop(self) -> bool:
        return not (self.new or self.changed or self.removed)

    def describe(self, first: int = 5) -> str:
        lines = [
            f"sync plan for {self.folder}: {len(self.new):,} to add, {len(self.changed):,} to "
            f"update, {len(self.removed):,} to remove, {self.unchanged:,} unchanged, "
            f"{len(self.skipped):,} skipped"
        ]
        for title, names in (
            ("add", [f.key for f in self.new]),
            ("update", [f.key for f in self.changed]),
            ("remove", self.removed),
            ("skip", [f"{path}: {reason}" for path, reason in self.skipped]),
        ):
            for name in names[:first]:
                lines.append(f"  {title} {name}")
            if len(names) > first:
                lines.append(f"  ... and {len(names) - first:,} more to {title}")
        return "\n".join(lines)


@dataclass
class SyncReport:
    plan: SyncPlan
    bulk: BulkReport = field(default_factory=BulkReport)
    removed: int = 0

    def summary(self) -> str:
        """One line: `added 12, updated 3, removed 5, unchanged 24,980, skipped 2 unreadable`."""
        failed = {path for path, _ in self.bulk.failed}
        added = sum(1 for f in self.plan.new if f.key not in failed)
        updated = sum(1 for f in self.plan.changed if f.key not in failed)
        skipped = len(self.plan.skipped) + len(failed)
        return (
            f"added {added:,}, updated {updated:,}, removed {self.removed:,}, "
            f"unchanged {self.plan.unchanged:,}, skipped {skipped:,} unreadable"
        )


def belongs_to(key: str, folder: Path) -> bool:
    """Whether `key` names a path under `folder`, spelt as keys of that folder are spelt."""
    parts = PurePath(key).parts
    inside = PurePath(folder).parts if str(folder) != "." else ()
    if PurePath(key).is_absolute() != PurePath(folder).is_absolute():
        return False
    return parts[: len(inside)] == inside and len(parts) > len(inside) and ".." not in parts


def scan_folder_items(collection: Collection, folder: Path) -> Iterator[Item]:
    """The collection's items whose keys lie under `folder` (metadata, no vectors). Each shard
    is scanned from just before the folder's keys and left as soon as they end."""
    start = "" if str(folder) == "." else str(folder)
    prefix = start + os.sep if start else ""
    for shard in collection.shards:
        for page in shard.scan(SCAN_PAGE, start, False, True, timeout=SCAN_TIMEOUT):
            for item in page:
                if prefix and item.key > prefix and not item.key.startswith(prefix):
                    break
                if belongs_to(item.key, folder):
                    yield item
            else:
                continue
            break


def local_files(folder: Path, plan: SyncPlan) -> dict[str, LocalFile]:
    """key -> file for every image under `folder`; what cannot be statted or keyed is skipped."""
    found: dict[str, LocalFile] = {}
    for path in list_images(folder):
        plan.files_seen += 1
        try:
            key = path_key(path)
            stat = path.stat()
        except (ValueError, OSError) as exc:
            reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
            plan.skipped.append((os.fsencode(path).decode("utf-8", "backslashreplace"), reason))
            continue
        found[key] = LocalFile(path, key, stat.st_size, int(stat.st_mtime))
    return found


def unchanged(file: LocalFile, metadata: Mapping[str, str]) -> bool:
    return metadata.get("file_size") == str(file.size) and metadata.get("mtime") == str(file.mtime)


def plan_sync(folder: Path, collection: Collection) -> SyncPlan:
    """Compare the folder with the collection's items under it; changes nothing."""
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a directory")
    started = time.monotonic()
    plan = SyncPlan(folder)
    files = local_files(folder, plan)
    seen: set[str] = set()
    for item in scan_folder_items(collection, folder):
        seen.add(item.key)
        file = files.get(item.key)
        if file is None:
            if not os.path.lexists(item.key):  # only a file that is gone loses its item
                plan.removed.append(item.key)
        elif unchanged(file, item.metadata):
            plan.unchanged += 1
        else:
            plan.changed.append(file)
    plan.new = [f for key, f in files.items() if key not in seen]
    plan.seconds = time.monotonic() - started
    return plan


def apply_sync(
    plan: SyncPlan,
    embedder: EmbedderClient,
    collection: Collection,
    space: Space = Space.FULL,
    chunk_size: int = 128,
    progress: bool = True,
    build: bool = True,
    extra_metadata: Mapping[str, str] | None = None,
    streams: int | None = None,
) -> SyncReport:
    """Carry out `plan`: embed and add (replace) new and changed files, remove the items of
    files that are gone, then build if anything was added or removed and `build`. A file that
    cannot be indexed stays new (it is tried again, and reported, on every sync; one that fails
    the header check is never sent to the embedder)."""
    report = SyncReport(plan)
    if plan.to_embed:
        vectors = embed_files(
            plan.to_embed,
            embedder,
            report.bulk,
            space,
            progress=progress,
            extra_metadata=extra_metadata,
            streams=streams,
        )
        add_vectors(vectors, collection, report.bulk, chunk_size, build=False)
    if plan.removed:
        report.removed, _ = collection.remove(plan.removed)
    if build and (report.bulk.done or report.removed):
        collection.build()
    return report
