"""Bulk indexing: a folder of images -> embedder stream -> shards, with a progress bar.

Files are read lazily as the stream asks for them, the embedder keeps a bounded window in
flight, and vectors go to their shards in chunks, so memory stays bounded for any folder size.
An unreadable or undecodable file is reported and skipped, never fatal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
class IndexReport:
    indexed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    per_shard: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.indexed / self.seconds if self.seconds else 0.0


def index_paths(
    paths: list[Path],
    embedder: EmbedderClient,
    collection: Collection,
    space: str = "full",
    chunk_size: int = 128,
    per_image_timeout: float = 2.0,
    progress: bool = True,
    build: bool = True,
) -> IndexReport:
    """Embed and add every path (key = the path as a string), then build every shard."""
    started = time.monotonic()
    report = IndexReport(per_shard=dict.fromkeys(collection.addresses, 0))
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

    pending: list[list[ItemToAdd]] = [[] for _ in collection.shards]

    def flush(number: int) -> None:
        if pending[number]:
            shard = collection.shards[number]
            shard.add(pending[number])
            report.per_shard[shard.address] += len(pending[number])
            pending[number] = []

    timeout = collection.timeout + per_image_timeout * len(paths)
    try:
        for embedded in embedder.embed_stream(read_files(), space, timeout=timeout):
            bar.update(1)
            if embedded.error is not None or embedded.vector is None:
                report.failed.append((embedded.id, str(embedded.error)))
                bar.set_postfix(failed=len(report.failed))
                continue
            number = shard_for(embedded.id, len(collection.shards))
            pending[number].append(ItemToAdd(embedded.id, embedded.vector))
            report.indexed += 1
            if len(pending[number]) >= chunk_size:
                flush(number)
        for number in range(len(pending)):
            flush(number)
    finally:
        bar.close()
    if build:
        collection.build()
    report.seconds = time.monotonic() - started
    return report
