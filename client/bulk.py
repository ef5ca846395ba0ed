"""Bulk work over a folder: files -> embedder stream -> shards or a vector dump.

Files are read lazily as the stream asks for them, the embedder keeps a bounded window in
flight, and vectors go to their shards in chunks, so memory stays bounded for any folder size.
An unreadable or undecodable file is reported and skipped, never fatal.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from imagesim.client.collection import Collection
from imagesim.client.embedder_client import EmbedderClient
from imagesim.client.index_client import ItemToAdd
from imagesim.client.merge import shard_for

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursive, by extension), sorted; paths keep the folder
    as given, so keys read like the user typed them."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found.extend(
            Path(root) / f for f in sorted(files) if Path(f).suffix.lower() in IMAGE_SUFFIXES
        )
    return found


@dataclass
class BulkReport:
    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    already: int = 0  # skipped because a previous run had done them
    per_shard: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def read_image_file(path: Path) -> bytes:
    """The file's bytes, if it looks like an image (header only; the embedder decodes it).

    Raises ValueError with a reason otherwise, so a bad file never costs a round trip."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror or exc}") from None
    if not data:
        raise ValueError("empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.size  # noqa: B018 - parsing the header is the check
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"not a readable image: {exc}") from None
    return data


def read_ahead(
    paths: list[Path], workers: int, lookahead: int
) -> Iterator[tuple[Path, bytes | None, str | None]]:
    """(path, bytes, None) or (path, None, reason) in order; files are read and checked by
    `workers` threads, at most `lookahead` ahead of the consumer (bounded memory)."""

    def load(path: Path) -> tuple[bytes | None, str | None]:
        try:
            return read_image_file(path), None
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
            data, reason = future.result()
            yield path, data, reason


def embed_files(
    paths: list[Path],
    embedder: EmbedderClient,
    report: BulkReport,
    space: str = "full",
    in_flight: int = 128,
    readers: int = 4,
    per_image_timeout: float = 2.0,
    progress: bool = True,
) -> Iterator[tuple[str, np.ndarray]]:
    """(key, vector) for each readable, decodable file (key = the path as a string), in order;
    failures go to `report.failed`. At most `in_flight` images are sent and unanswered."""
    bar = tqdm(total=len(paths), unit="img", disable=not progress, dynamic_ncols=True)
    slots = threading.Semaphore(in_flight)
    finished = threading.Event()

    def requests() -> Iterator[tuple[str, bytes]]:
        for path, data, reason in read_ahead(paths, readers, 2 * in_flight):
            if data is None:
                report.failed.append((str(path), str(reason)))
                bar.update(1)
                continue
            while not slots.acquire(timeout=0.5):
                if finished.is_set():
                    return
            yield str(path), data

    timeout = embedder.timeout + per_image_timeout * len(paths)
    try:
        for embedded in embedder.embed_stream(requests(), space, timeout=timeout):
            slots.release()
            bar.update(1)
            if embedded.error is not None or embedded.vector is None:
                report.failed.append((embedded.id, str(embedded.error)))
                bar.set_postfix(failed=len(report.failed))
                continue
            yield embedded.id, embedded.vector
    finally:
        finished.set()
        bar.close()


class ShardWriter:
    """Routes (key, vector) pairs to their shards and sends them in chunks."""

    def __init__(self, collection: Collection, report: BulkReport, chunk_size: int = 128):
        self.collection = collection
        self.report = report
        self.chunk_size = chunk_size
        self.pending: list[list[ItemToAdd]] = [[] for _ in collection.shards]
        for address in collection.addresses:
            report.per_shard.setdefault(address, 0)

    def add(self, key: str, vector: np.ndarray) -> None:
        number = shard_for(key, len(self.pending))
        self.pending[number].append(ItemToAdd(key, vector))
        self.report.done += 1
        if len(self.pending[number]) >= self.chunk_size:
            self._flush(number)

    def _flush(self, number: int) -> None:
        if self.pending[number]:
            shard = self.collection.shards[number]
            shard.add(self.pending[number])
            self.report.per_shard[shard.address] += len(self.pending[number])
            self.pending[number] = []

    def flush(self) -> None:
        for number in range(len(self.pending)):
            self._flush(number)


def add_vectors(
    vectors: Iterable[tuple[str, np.ndarray]],
    collection: Collection,
    report: BulkReport,
    chunk_size: int = 128,
    build: bool = True,
) -> BulkReport:
    """Add (key, vector) pairs to the collection, then build every shard."""
    started = time.monotonic()
    writer = ShardWriter(collection, report, chunk_size)
    for key, vector in vectors:
        writer.add(key, vector)
    writer.flush()
    if build:
        collection.build()
    report.seconds += time.monotonic() - started
    return report


def write_failures(report: BulkReport, path: Path) -> None:
    """The failed files, one `path<TAB>reason` line each."""
    with open(path, "w") as f:
        for failed, reason in report.failed:
            f.write(f"{failed}\t{reason}\n")


def index_paths(
    paths: list[Path],
    embedder: EmbedderClient,
    collection: Collection,
    space: str = "full",
    chunk_size: int = 128,
    progress: bool = True,
    build: bool = True,
    resume: bool = True,
) -> BulkReport:
    """Embed and add every path (key = the path as a string), then build every shard.

    With `resume`, paths whose key a shard already holds are skipped, so an interrupted run
    picks up where it stopped."""
    report = BulkReport()
    if resume:
        todo = set(collection.missing(str(p) for p in paths))
        report.already = len(paths) - len(todo)
        paths = [p for p in paths if str(p) in todo]
    vectors = embed_files(paths, embedder, report, space, progress=progress)
    return add_vectors(vectors, collection, report, chunk_size, build)
