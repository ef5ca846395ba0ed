"""Bulk work over a folder: files -> embedder stream -> shards or a vector dump.

Files are read lazily as the stream asks for them, the embedder keeps a bounded window in
flight, and vectors go to their shards in chunks, so memory stays bounded for any folder size.
An unreadable or undecodable file is reported and skipped, never fatal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
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
    per_shard: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def embed_files(
    paths: list[Path],
    embedder: EmbedderClient,
    report: BulkReport,
    space: str = "full",
    per_image_timeout: float = 2.0,
    progress: bool = True,
) -> Iterator[tuple[str, np.ndarray]]:
    """(key, vector) for each readable, decodable file (key = the path as a string); failures
    go to `report.failed`."""
    bar = tqdm(total=len(paths), unit="img", disable=not progress, dynamic_ncols=True)

    def read_files() -> Iterator[tuple[str, bytes]]:
        for path in paths:
            try:
                data = path.read_bytes()
            except OSError as exc:
                report.failed.append((str(path), f"cannot read: {exc.strerror or exc}"))
                bar.update(1)
                continue
            yield str(path), data

    timeout = embedder.timeout + per_image_timeout * len(paths)
    try:
        for embedded in embedder.embed_stream(read_files(), space, timeout=timeout):
            bar.update(1)
            if embedded.error is not None or embedded.vector is None:
                report.failed.append((embedded.id, str(embedded.error)))
                bar.set_postfix(failed=len(report.failed))
                continue
            yield embedded.id, embedded.vector
    finally:
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


def index_paths(
    paths: list[Path],
    embedder: EmbedderClient,
    collection: Collection,
    space: str = "full",
    chunk_size: int = 128,
    progress: bool = True,
    build: bool = True,
) -> BulkReport:
    """Embed and add every path (key = the path as a string), then build every shard."""
    report = BulkReport()
    vectors = embed_files(paths, embedder, report, space, progress=progress)
    return add_vectors(vectors, collection, report, chunk_size, build)
