"""Bulk work over a folder: files -> embedder stream -> shards or a vector dump.

Files are read lazily as the stream asks for them, the embedder keeps a bounded window in
flight, and vectors go to their shards in chunks, so memory stays bounded for any folder size.
Nothing about one file stops a run: a file that cannot be read, is larger than the embedder
accepts, has a name that is not valid UTF-8, cannot be decoded or is refused by its shard is
reported and skipped. Only a server that cannot be reached (or a deadline) ends a run early.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from imagesim.bulk.common import BulkReport, image_metadata, path_key
from imagesim.client.collection import Collection
from imagesim.client.embedder_client import EmbedderClient, ModelIdentity
from imagesim.client.rpc import Deadline
from imagesim.client.stream_pool import Job, StreamPool
from imagesim.enums import Space
from imagesim.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Reason
from imagesim.types import ItemToAdd

DNS_STREAMS = 2  # bulk streams over a dns:/// embedder name (its replica count is unknown)


def read_image_file(path: Path, max_bytes: int = 0) -> tuple[bytes, dict[str, str]]:
    """The file's bytes and default metadata (file size, width, height, mtime), if it looks
    like an image (header only; the embedder decodes it) and fits in `max_bytes` (0 = any).

    Raises ValueError with a reason otherwise, so a bad file never costs a round trip."""
    try:
        stat = path.stat()
        if max_bytes and stat.st_size > max_bytes:
            raise ValueError(
                f"file is {stat.st_size:,} bytes; the embedder accepts at most {max_bytes:,}"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror or exc}") from None
    return data, image_metadata(data, stat.st_mtime)


@dataclass(frozen=True)
class ImageFile:
    key: str
    data: bytes
    metadata: dict[str, str]


def read_ahead(
    paths: list[Path], workers: int, lookahead: int, max_bytes: int = 0
) -> Iterator[tuple[Path, ImageFile | None, str | None]]:
    """(path, file, None) or (path, None, reason) in order; files are read and checked by
    `workers` threads, at most `lookahead` ahead of the consumer (bounded memory)."""

    def load(path: Path) -> tuple[ImageFile | None, str | None]:
        try:
            key = path_key(path)
            data, metadata = read_image_file(path, max_bytes)
            return ImageFile(key, data, metadata), None
        except ValueError as exc:
            return None, str(exc)

    with ThreadPoolExecutor(workers, thread_name_prefix="read") as pool:
        queued: deque[tuple[Path, Future]] = deque()
        remaining = iter(paths)
        for path in remaining:
            queued.append((path, pool.submit(load, path)))
            if len(queued) >= lookahead:
                break
        while queued:
            path, future = queued.popleft()
            next_path = next(remaining, None)
            if next_path is not None:
                queued.append((next_path, pool.submit(load, next_path)))
            image, reason = future.result()
            yield path, image, reason


def _shown(path: Path) -> str:
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def embed_files(
    paths: list[Path],
    embedder: EmbedderClient,
    report: BulkReport,
    space: Space = Space.FULL,
    in_flight: int = 128,
    readers: int = 4,
    per_image_timeout: float = 2.0,
    progress: bool = True,
    extra_metadata: Mapping[str, str] | None = None,
    streams: int | None = None,
) -> Iterator[tuple[str, np.ndarray, dict[str, str]]]:
    """(key, vector, metadata) for each readable, decodable file (key = the path as a
    string), in the order answers arrive; failures go to `report.failed`.

    The images go over `streams` EmbedStreams at once (default: one per replica the embedder
    address names, `DNS_STREAMS` for a dns:/// name) with `in_flight` unanswered images in all;
    a stream that breaks on a transient failure is replaced and its unanswered images are sent
    again (see stream_pool), so a replica dying mid-run loses no image. Files over the
    embedder's size limit are never sent. Every vector must come from the model, runtime and
    precision the embedder reported when the run started: replicas serving another model end
    the run (FailedPrecondition) rather than mix vectors."""
    info = embedder.info()
    expected = ModelIdentity.of(info)
    max_bytes = info.limits.max_bytes
    count = streams or embedder.replicas or DNS_STREAMS
    bar = tqdm(total=len(paths), unit="img", disable=not progress, dynamic_ncols=True)
    metadata: dict[str, dict[str, str]] = {}  # key -> metadata, while queued or in flight

    def jobs() -> Iterator[Job]:
        for path, image, reason in read_ahead(paths, readers, 2 * in_flight, max_bytes):
            if image is None:
                report.failed.append((_shown(path), str(reason)))
                bar.update(1)
                continue
            metadata[image.key] = {**image.metadata, **(extra_metadata or {}), **expected.tags()}
            yield Job(image.key, image.data)

    deadline = Deadline(embedder.timeout + per_image_timeout * len(paths))
    pool = StreamPool(embedder, space, deadline, streams=count, window=max(1, in_flight // count))
    try:
        for job, embedded in pool.run(jobs()):
            bar.update(1)
            meta = metadata.pop(job.id, {})
            if embedded.error is not None or embedded.vector is None:
                report.failed.append((embedded.id, str(embedded.error)))
                bar.set_postfix(failed=len(report.failed))
                continue
            if embedded.model is not None and embedded.model != expected:
                raise FailedPrecondition(
                    f"{job.id} was embedded by {embedded.model.describe()}, but the run "
                    f"started on {expected.describe()}: the replicas at {embedder.address} "
                    "serve different models; vectors of both are never mixed",
                    reason=Reason.SPACE_MISMATCH,
                    address=embedder.address,
                )
            yield embedded.id, embedded.vector, meta
    finally:
        report.resent += pool.stats.resent
        report.streams_broken += pool.stats.streams_broken
        bar.close()


class ShardWriter:
    """Routes items to their shards and sends them in chunks. A chunk a shard refuses as
    invalid is retried item by item, so one bad item is reported and the rest are added."""

    def __init__(self, collection: Collection, report: BulkReport, chunk_size: int = 128):
        self.collection = collection
        self.report = report
        self.chunk_size = chunk_size
        self.pending: dict[str, list[ItemToAdd]] = {}
        for address in collection.addresses:
            report.per_shard.setdefault(address, 0)

    def add(self, item: ItemToAdd) -> None:
        address = self.collection.shard_for(item.key).address
        batch = self.pending.setdefault(address, [])
        batch.append(item)
        if len(batch) >= self.chunk_size:
            self._flush(address)

    def _flush(self, address: str) -> None:
        batch = self.pending.pop(address, [])
        if not batch:
            return
        try:
            self.collection.add(batch)
        except InvalidArgument:
            batch = self._one_by_one(batch)
        self.report.per_shard[address] += len(batch)
        self.report.done += len(batch)

    def _one_by_one(self, batch: list[ItemToAdd]) -> list[ItemToAdd]:
        added = []
        for item in batch:
            try:
                self.collection.add([item])
                added.append(item)
            except InvalidArgument as exc:
                self.report.failed.append((item.key, str(exc)))
        return added

    def flush(self) -> None:
        for address in list(self.pending):
            self._flush(address)


def add_vectors(
    vectors: Iterable[tuple[str, np.ndarray, Mapping[str, str]]],
    collection: Collection,
    report: BulkReport,
    chunk_size: int = 128,
    build: bool = True,
) -> BulkReport:
    """Add (key, vector, metadata) triples to the collection, then build every shard (if the
    key may: without the admin role the build is left to the shards, `report.build_skipped`
    says why)."""
    started = time.monotonic()
    collection.record_layout()
    writer = ShardWriter(collection, report, chunk_size)
    for key, vector, metadata in vectors:
        writer.add(ItemToAdd(key, vector, metadata))
    writer.flush()
    if build:
        try:
            collection.build()
        except PermissionDenied as exc:
            # Adding needs `write`, Build `admin`: a write key's items are added and staged
            # (searched exactly), and each shard builds them in the background.
            if exc.reason != Reason.ROLE_REQUIRED:
                raise
            report.build_skipped = exc.message
    report.seconds += time.monotonic() - started
    return report


def index_paths(
    paths: list[Path],
    embedder: EmbedderClient,
    collection: Collection,
    space: Space = Space.FULL,
    chunk_size: int = 128,
    progress: bool = True,
    build: bool = True,
    resume: bool = True,
    extra_metadata: Mapping[str, str] | None = None,
    streams: int | None = None,
) -> BulkReport:
    """Embed and add every path (key = the path as a string, metadata = file size, width,
    height, mtime + `extra_metadata`), then build every shard.

    With `resume`, paths whose key a shard already holds are skipped, so an interrupted run
    picks up where it stopped."""
    report = BulkReport()
    if resume:
        keys: dict[Path, str] = {}
        for path in paths:
            with contextlib.suppress(ValueError):  # not a valid key: read_ahead reports it
                keys[path] = path_key(path)
        todo = set(collection.missing(keys.values()))
        paths = [p for p in paths if p not in keys or keys[p] in todo]
        report.already = len(keys) - len(todo)
    vectors = embed_files(
        paths,
        embedder,
        report,
        space,
        progress=progress,
        extra_metadata=extra_metadata,
        streams=streams,
    )
    return add_vectors(vectors, collection, report, chunk_size, build)
