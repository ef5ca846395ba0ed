"""Carry out a duplicates plan, safely and reversibly: move (or delete) the files it marks,
remove their items from the collection, and undo it all from the manifest.

Crash safety. Before any file moves, a manifest is written (atomically) beside the quarantine:
every move (source, destination, size, mtime) and every moved item's vector and metadata (an
.npz), so an undo can put items back without embedding anything. Each move is a rename (or, across
file systems, a copy to a temporary name, fsync, rename, then unlink of the source), so a file is
always whole in one of its two places. Whether an entry is done is read from the disk itself
(source gone, destination there), so an apply or an undo interrupted at any point is finished by
running it again with the same plan or manifest. Nothing is ever overwritten: a destination (or,
on undo, a source) that is already taken is reported and left alone, and a quarantine folder
that overlaps the photos' folder (inside it, or holding it) is refused. A file whose size or mtime
changed since the plan was made is not moved. Two applies or undos on the same quarantine folder
at once: the second is refused (an OS lock, released even if the first is killed).
"""

from __future__ import annotations

import errno
import fcntl
import filecmp
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imagesim.atomic import fsync_path, write_atomic, write_text_atomic
from imagesim.client.collection import Collection
from imagesim.client.images_root import ImagesRoot
from imagesim.client.review_plan import Plan
from imagesim.errors import FailedPrecondition, ImagesimError, InvalidArgument, NotFound
from imagesim.types import ItemToAdd

MANIFEST_FORMAT = "imagesim-quarantine-manifest"
LOCK_NAME = ".imagesim-quarantine.lock"


@dataclass
class Entry:
    key: str
    src: str  # the file's real path under the images root
    dst: str  # in the quarantine folder ("" when deleting)
    file_size: int
    mtime_ns: int


@dataclass
class Outcome:
    """What an apply or undo did (or, dry, would do)."""

    manifest: Path
    done: list[Entry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    items: int = 0  # items removed (apply) or put back (undo)

    def lines(self, verb: str) -> list[str]:
        out = [f"{verb} {e.src}" + (f" -> {e.dst}" if e.dst else "") for e in self.done]
        out += [f"skipped {key}: {why}" for key, why in self.skipped]
        return out


def plan_digest(plan: Plan) -> str:
    text = json.dumps(plan.to_json(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def manifest_path(folder: Path, plan: Plan) -> Path:
    return folder / f"imagesim-manifest-{plan_digest(plan)}.json"


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One apply or undo at a time on `folder` (flock: released when the process dies)."""
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FailedPrecondition(
                f"another apply or undo is running on {folder}: wait for it to finish"
            ) from None
        yield
    finally:
        os.close(fd)


def _check_target(folder: Path, images: ImagesRoot, plan: Plan) -> None:
    """The quarantine must lie apart from the folder the plan's files are in: inside it, its
    files would be synced or indexed again; above it, a file's destination could be its own
    source."""
    sources = []
    for group in plan.groups:
        for member in group.members:
            try:
                sources.append(os.path.dirname(images.path_of(member.key)))
            except ImagesimError:
                continue
    photos = os.path.commonpath(sources) if sources else images.root
    real = os.path.realpath(folder)
    if os.path.commonpath([photos, real]) in (photos, real):
        raise InvalidArgument(
            f"the quarantine folder {folder} overlaps the folder the photos are in ({photos}): "
            "choose a folder outside it"
        )


def _plan_entries(plan: Plan, images: ImagesRoot, quarantine: Path | None) -> Outcome:
    outcome = Outcome(Path())
    for member in plan.moves():
        try:
            src = images.path_of(member.key)
            stat = os.stat(src)
        except ImagesimError as exc:
            outcome.skipped.append((member.key, exc.message))
            continue
        except OSError as exc:
            outcome.skipped.append((member.key, f"no file: {exc.strerror or exc}"))
            continue
        if (stat.st_size, stat.st_mtime_ns) != (member.file_size, member.mtime_ns):
            outcome.skipped.append((member.key, "the file changed since the plan was made"))
            continue
        dst = ""
        if quarantine is not None:
            dst = str(Path(os.path.realpath(quarantine)) / os.path.relpath(src, images.root))
            if os.path.lexists(dst):
                outcome.skipped.append((member.key, f"{dst} already exists (never overwritten)"))
                continue
        outcome.done.append(Entry(member.key, src, dst, member.file_size, member.mtime_ns))
    return outcome


def _write_manifest(path: Path, record: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def _save_items(path: Path, collection: Collection, keys: list[str]) -> None:
    items = [collection.get(key) for key in keys]
    arrays = {
        "keys": np.array(keys, dtype=np.str_),
        "vectors": np.stack([i.vector for i in items]).astype(np.float32)
        if items
        else np.zeros((0, 0), np.float32),
        "metadata": np.array([json.dumps(i.metadata) for i in items], dtype=np.str_),
    }
    write_atomic(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def _same(src: str, dst: str) -> bool:
    """Both paths hold the same file: one link of it (a move stopped between link and unlink),
    or a whole copy of it (a copy across file systems stopped before the source's unlink)."""
    try:
        return os.path.samefile(src, dst) or filecmp.cmp(src, dst, shallow=False)
    except OSError:
        return False


def _move(src: str, dst: str) -> None:
    """Move one file so that it is always whole in at least one place; never overwrites `dst`
    (FileExistsError if another file is there). Finishes a move an earlier run began."""
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(dst):
        if not _same(src, dst):
            raise FileExistsError(errno.EEXIST, "another file is there", dst)
    else:
        try:
            os.link(src, dst)  # same file system: atomic, and fails if dst exists
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            tmp = f"{dst}.imagesim-tmp"
            try:
                with open(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
                    fout.flush()
                    os.fsync(fout.fileno())
                os.link(tmp, dst)
            finally:
                Path(tmp).unlink(missing_ok=True)
        fsync_path(Path(dst).parent)
    os.unlink(src)
    fsync_path(Path(src).parent)


def apply_plan(
    plan: Plan,
    collection: Collection,
    quarantine: Path | None,
    manifest_dir: Path,
    dry_run: bool = False,
) -> Outcome:
    """Move (or, without `quarantine`, delete) every file the plan marks and remove its item.

    Running it again with the same plan after an interruption finishes the job."""
    images = ImagesRoot(Path(plan.images_root))
    layout = collection.layout
    if sorted(layout.shard_ids) != sorted(plan.shard_ids):
        raise FailedPrecondition(
            "this plan was made for another collection (shards "
            f"{', '.join(plan.shard_ids)}; these are {', '.join(layout.shard_ids)})"
        )
    if quarantine is not None:
        _check_target(quarantine, images, plan)
    manifest = manifest_path(manifest_dir, plan)
    if dry_run:
        outcome = _plan_entries(plan, images, quarantine)
        outcome.manifest = manifest
        return outcome
    manifest_dir.mkdir(parents=True, exist_ok=True)
    with locked(manifest_dir):
        if manifest.exists():  # an earlier run of this plan: finish it
            record = json.loads(manifest.read_text(encoding="utf-8"))
            outcome = Outcome(manifest, [Entry(**e) for e in record["entries"]])
            outcome.skipped = [tuple(s) for s in record["skipped"]]
        else:
            outcome = _plan_entries(plan, images, quarantine)
            outcome.manifest = manifest
            _save_items(manifest.with_suffix(".npz"), collection, [e.key for e in outcome.done])
            record = {
                "format": MANIFEST_FORMAT,
                "version": 1,
                "plan": plan_digest(plan),
                "mode": "move" if quarantine is not None else "delete",
                "images_root": images.root,
                "shard_ids": plan.shard_ids,
                "state": "applying",
                "entries": [asdict(e) for e in outcome.done],
                "skipped": [list(s) for s in outcome.skipped],
            }
            _write_manifest(manifest, record)
        for entry in outcome.done:
            if not os.path.lexists(entry.src):
                continue  # moved (or deleted) by the earlier run
            try:
                if entry.dst:
                    _move(entry.src, entry.dst)
                else:
                    os.unlink(entry.src)
                    fsync_path(Path(entry.src).parent)
            except OSError as exc:
                outcome.skipped.append((entry.key, f"not moved: {exc.strerror or exc}"))
        # Only the items whose file is gone from the images root leave the collection.
        gone = [e.key for e in outcome.done if not os.path.lexists(e.src)]
        outcome.done = [e for e in outcome.done if e.key in set(gone)]
        if gone:
            outcome.items, _ = collection.remove(gone)
        record["state"] = "applied"
        _write_manifest(manifest, record)
    return outcome


def undo(manifest: Path, collection: Collection, dry_run: bool = False) -> Outcome:
    """Put the files of an apply back where they were and their items back in the collection
    (with the vectors and metadata saved before they were removed). Deleted files cannot come
    back: their entries are reported."""
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"cannot read the manifest {manifest}: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != MANIFEST_FORMAT:
        raise InvalidArgument(f"{manifest} is not an imagesim quarantine manifest")
    if sorted(collection.layout.shard_ids) != sorted(record["shard_ids"]):
        raise FailedPrecondition("this manifest belongs to another collection")
    outcome = Outcome(manifest)
    back: list[Entry] = []
    for entry in (Entry(**e) for e in record["entries"]):
        if not entry.dst:
            outcome.skipped.append((entry.key, "deleted for good (--delete): cannot come back"))
        elif (
            os.path.lexists(entry.dst)
            and os.path.lexists(entry.src)
            and not _same(entry.dst, entry.src)
        ):
            outcome.skipped.append((entry.key, f"{entry.src} exists again (never overwritten)"))
        elif os.path.lexists(entry.dst) or os.path.lexists(entry.src):
            back.append(entry)
        else:
            outcome.skipped.append((entry.key, f"{entry.dst} is gone"))
    outcome.done = back
    if dry_run:
        return outcome
    with locked(manifest.parent):
        for entry in back:
            if os.path.lexists(entry.dst):
                try:
                    _move(entry.dst, entry.src)
                except OSError as exc:
                    outcome.skipped.append((entry.key, f"not put back: {exc.strerror or exc}"))
        outcome.done = [e for e in back if os.path.lexists(e.src) and not os.path.lexists(e.dst)]
        outcome.items = _restore_items(manifest.with_suffix(".npz"), collection, outcome.done)
        record["state"] = "undone"
        _write_manifest(manifest, record)
    return outcome


def _restore_items(vectors: Path, collection: Collection, entries: list[Entry]) -> int:
    wanted = {e.key for e in entries}
    if not wanted:
        return 0
    try:
        data = np.load(io.BytesIO(vectors.read_bytes()))
    except OSError as exc:
        raise NotFound(f"the manifest's vectors {vectors} cannot be read: {exc}") from None
    items = [
        ItemToAdd(str(key), vector, json.loads(str(meta)))
        for key, vector, meta in zip(data["keys"], data["vectors"], data["metadata"], strict=True)
        if str(key) in wanted
    ]
    collection.add(items)
    return len(items)
