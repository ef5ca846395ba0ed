"""Writing a new generation: the streaming build from one snapshot of the store into
generations/.tmp-gen-N, fsynced, renamed to generations/gen-N and loaded back. The files and
what makes a generation live (CURRENT) are described in generation.py.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from annoy import AnnoyIndex

from imagesim.atomic import fsync_path
from imagesim.enums import Metric
from imagesim.index_server.generation import (
    GENERATIONS,
    INDEX_FILE,
    PROJECTION_FILE,
    VECTORS_FILE,
    Generation,
    Projection,
    check_projection,
)
from imagesim.index_server.item_store import Block
from imagesim.pca import StreamingPCA, l2_normalise

# The generations' log, as before the builder had a module of its own.
log = logging.getLogger("imagesim.index_server.generation")

PROJECTION_SAMPLE = 20_000  # rows (spread over the whole generation) the PCA is fitted on
PROJECT_CHUNK = 1024  # rows read back and projected at a time while filling the index


def _write_json(path: Path, value: object) -> None:
    with open(path, "w") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())


class GenerationBuilder:
    """Builds generation `number` of `count` items: `fill` takes the blocks of one snapshot,
    `finish` builds the trees and writes everything under generations/.tmp-gen-N, fsynced,
    renamed to generations/gen-N and loaded back (memory-mapped). It is not live until
    `publish` names it in CURRENT.

    Memory is bounded by a block, not by the item count: blocks stream from the store into
    Annoy's on-disk build (its nodes live in the index file). With a projection, the full
    vectors are appended to vectors.npy with plain writes (no mapping: written pages stay in
    the page cache, not in this process), the PCA is fitted from running sums over a sample
    spread over all items, then vectors.npy is read back block by block, projected and added.
    What stays in memory is the keys and seqs and Annoy's tree construction. The snapshot can
    be closed before `finish`, so a long build does not hold the store's read transaction.
    """

    def __init__(
        self,
        data_dir: Path,
        number: int,
        count: int,
        dims: int,
        metric: Metric,
        project_dims: int = 0,
    ) -> None:
        self.started = time.perf_counter()
        self.number, self.count, self.dims, self.metric = number, count, dims, metric
        self.root = data_dir / GENERATIONS
        self.root.mkdir(parents=True, exist_ok=True)
        self.name = f"gen-{number:06d}"
        self.tmp = self.root / f".tmp-{self.name}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        self.keys: list[str] = []
        self.seqs: list[int] = []
        self.projection: Projection | None = None
        self.project_dims = min(project_dims, dims) if count > 1 else 0
        self.annoy: AnnoyIndex | None = None

    def _annoy(self, dims: int) -> AnnoyIndex:
        annoy = AnnoyIndex(dims, self.metric.value)
        annoy.set_seed(self.number)  # reproducible builds
        annoy.on_disk_build(str(self.tmp / INDEX_FILE))  # written as it builds: no save
        return annoy

    def fill(self, blocks: Iterable[Block]) -> None:
        if self.project_dims:
            self._fill_projected(blocks)
            return
        annoy = self.annoy = self._annoy(self.dims)
        for block in blocks:
            first = len(self.keys)
            self._take(block)
            for j, vector in enumerate(block.vectors):
                annoy.add_item(first + j, vector)  # dense ids: Annoy allocates max(id) + 1
        self._check_count()

    def _take(self, block: Block) -> None:
        if len(self.keys) + len(block.keys) > self.count:
            raise RuntimeError(f"the snapshot holds more than {self.count} items")
        self.keys.extend(block.keys)
        self.seqs.extend(block.seqs)

    def _fill_projected(self, blocks: Iterable[Block]) -> None:
        metric = self.metric
        check_projection(metric)
        sample = np.zeros(self.count, dtype=bool)
        rng = np.random.default_rng(self.number)
        sample[rng.choice(self.count, min(self.count, PROJECTION_SAMPLE), replace=False)] = True
        pca = StreamingPCA(self.dims)
        path = self.tmp / VECTORS_FILE
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f4", "fortran_order": False, "shape": (self.count, self.dims)}
            )
            header = f.tell()
            for block in blocks:
                first = len(self.keys)
                self._take(block)
                f.write(block.vectors.tobytes())
                picked = block.vectors[sample[first : len(self.keys)]]
                pca.add(l2_normalise(picked) if metric is Metric.ANGULAR else picked)
            self._check_count()
            f.flush()
            os.fsync(f.fileno())
        self.projection = projection = Projection.of(pca.fit(self.project_dims), metric)
        projection.save(self.tmp / PROJECTION_FILE)
        annoy = self.annoy = self._annoy(projection.output_dims)
        with open(path, "rb") as f:
            for start in range(0, self.count, PROJECT_CHUNK):
                rows = min(PROJECT_CHUNK, self.count - start)
                f.seek(header + 4 * self.dims * start)
                full = np.fromfile(f, dtype="<f4", count=rows * self.dims)
                for j, row in enumerate(projection(full.reshape(rows, self.dims))):
                    annoy.add_item(start + j, row)

    def _check_count(self) -> None:
        if len(self.keys) != self.count:
            raise RuntimeError(f"the snapshot held {len(self.keys)} items, not {self.count}")

    def finish(self, trees: int) -> Generation:
        assert self.annoy is not None, "fill() first"
        self.annoy.build(trees, n_jobs=-1)
        self.annoy.unload()
        fsync_path(self.tmp / INDEX_FILE)
        _write_json(self.tmp / "items.json", {"keys": self.keys, "seqs": self.seqs})
        build_seconds = time.perf_counter() - self.started
        meta = {
            "number": self.number,
            "dims": self.dims,
            "metric": self.metric.value,
            "trees": trees,
            "count": len(self.keys),
            "project_dims": self.projection.output_dims if self.projection else 0,
            "built_at": time.time(),
            "build_seconds": build_seconds,
        }
        _write_json(self.tmp / "meta.json", meta)
        fsync_path(self.tmp)
        final = self.root / self.name
        shutil.rmtree(final, ignore_errors=True)
        os.rename(self.tmp, final)
        fsync_path(self.root)
        generation = Generation.load(final, self.dims, self.metric)
        log.info(
            "generation %d: %d items, %d trees, %.2f s",
            self.number,
            len(self.keys),
            trees,
            build_seconds,
        )
        return generation
