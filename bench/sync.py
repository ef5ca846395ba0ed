"""`imagesim sync` when nothing changed: a folder of N files whose items the collection already
holds (their recorded size and mtime match). Measures how many files a no-op sync checks per
second (listing, stat, and the shards' scan of the folder's items) and proves it embeds nothing.

The items carry random 64-d vectors: a no-op sync never reads vectors, so their size does not
matter; the files are a few bytes each (only their names, sizes and mtimes are read).

    python -m bench.sync [--files 25000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import Machine
from imagesim.client.collection import Collection
from imagesim.client.sync import plan_sync
from imagesim.types import ItemToAdd
from tests.support.launch import start_index

FOLDER_FANOUT = 250  # files per sub-folder, like a camera's DCIM folders


@dataclass(frozen=True)
class SyncResult:
    files: int
    shards: int
    seconds: list[float]  # each no-op sync's planning time
    embedded: int  # files a no-op sync would embed (must be 0)

    @property
    def files_per_second(self) -> float:
        return self.files / statistics.median(self.seconds)


def describe(result: SyncResult) -> str:
    return (
        f"no-op sync, {result.files:,} files over {result.shards} shards: "
        f"{statistics.median(result.seconds):.2f} s median of {len(result.seconds)} "
        f"({result.files_per_second:,.0f} files checked/s), {result.embedded} to embed"
    )


def make_folder(folder: Path, files: int) -> list[Path]:
    shutil.rmtree(folder, ignore_errors=True)
    paths = []
    for n in range(files):
        path = folder / f"{n // FOLDER_FANOUT:03d}" / f"IMG_{n:06d}.jpg"
        if n % FOLDER_FANOUT == 0:
            path.parent.mkdir(parents=True)
        path.write_bytes(n.to_bytes(4, "big"))
        paths.append(path)
    return paths


def run(work: Path, files: int = 25_000, shards: int = 2, rounds: int = 3) -> SyncResult:
    work.mkdir(parents=True, exist_ok=True)
    folder = work / "photos"
    paths = make_folder(folder, files)
    servers = [
        start_index(work / f"sync-{n}.log", work / f"sync-{n}", 64, "--auto-build", "0")
        for n in range(shards)
    ]
    try:
        rng = np.random.default_rng(0)
        with Collection([s.address for s in servers], timeout=600) as collection:
            collection.record_layout()
            for start in range(0, len(paths), 2000):
                batch = paths[start : start + 2000]
                items = []
                for path in batch:
                    stat = path.stat()
                    meta = {"file_size": str(stat.st_size), "mtime": str(int(stat.st_mtime))}
                    items.append(ItemToAdd(str(path), rng.random(64, dtype=np.float32), meta))
                collection.add(items)
            seconds, embedded = [], 0
            for _ in range(rounds):
                plan = plan_sync(folder, collection)
                seconds.append(plan.seconds)
                embedded = max(embedded, len(plan.to_embed) + len(plan.removed))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return SyncResult(files, shards, seconds, embedded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=25_000)
    parser.add_argument("--work", type=Path, default=Path(".bench/sync"))
    args = parser.parse_args()
    print(Machine.detect().describe())
    print(describe(run(args.work, args.files)))


if __name__ == "__main__":
    main()
