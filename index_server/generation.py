"""Annoy index generations: built in a temporary directory, fsynced, renamed into place.

Layout under the shard's data directory:
    generations/gen-000007/index.ann   the Annoy file (memory-mapped when loaded)
    generations/gen-000007/items.json  internal id -> key and the item's write sequence number
    generations/gen-000007/meta.json   dims, metric, trees, count, build time
    (with a projection, --project-dims P:)
    generations/gen-000007/projection.npz  PCA mean and components, full dims -> P
    generations/gen-000007/vectors.npy     the full float32 vectors, memory-mapped, for the
                                           exact re-rank of the P-d index's candidates
    CURRENT                            name of the live generation (replaced atomically)
A crash at any point leaves CURRENT naming a complete generation (or none): a new generation
is written, renamed and loaded back before CURRENT names it. A shard emptied by removes
retires its generation (CURRENT is removed) at the next build.

This module loads generations and keeps CURRENT; generation_builder writes new ones.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from annoy import AnnoyIndex

from imagesim.atomic import fsync_path
from imagesim.enums import Metric
from imagesim.errors import FailedPrecondition, Reason
from imagesim.pca import PrincipalComponents

CURRENT = "CURRENT"
GENERATIONS = "generations"
INDEX_FILE = "index.ann"


def annoy_node_bytes(dims: int, metric: Metric) -> int:
    """Bytes per node of an Annoy file: n_descendants + 2 children (+ an offset for the
    Minkowski metrics) + the float32 vector."""
    return (12 if metric is Metric.ANGULAR else 16) + 4 * dims


PROJECTION_FILE = "projection.npz"
VECTORS_FILE = "vectors.npy"


def check_projection(metric: Metric) -> None:
    """A PCA projection keeps angles and L2 distances, not L1 ones."""
    if metric not in (Metric.ANGULAR, Metric.EUCLIDEAN):
        raise FailedPrecondition(
            f"a projected index needs the angular or euclidean metric, not {metric.value}",
            reason=Reason.BUILD_FAILED,
        )


@dataclass(frozen=True)
class Projection:
    """PCA from the full dims to fewer, fitted on the generation's own vectors. Annoy searches
    the projected vectors (small leaves, cheap distances); the candidates are then re-ranked
    by exact distance in the full space."""

    metric: Metric
    mean: np.ndarray
    components: np.ndarray  # (output_dims, dims)

    @property
    def output_dims(self) -> int:
        return int(self.components.shape[0])

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32)
        if self.metric is Metric.ANGULAR:
            x = x / np.linalg.norm(x, axis=-1, keepdims=True)
        projected: np.ndarray = ((x - self.mean) @ self.components.T).astype(np.float32)
        return projected

    @classmethod
    def of(cls, pca: PrincipalComponents, metric: Metric) -> Projection:
        return cls(metric, pca.mean.astype(np.float32), pca.components.astype(np.float32))

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(
                f, mean=self.mean, components=self.components, metric=np.array(self.metric.value)
            )
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, path: Path) -> Projection:
        with np.load(path) as data:
            return cls(Metric(str(data["metric"])), data["mean"], data["components"])


@dataclass
class Generation:
    """One built, loaded (memory-mapped) Annoy index and the keys of its items."""

    number: int
    path: Path
    annoy: AnnoyIndex
    keys: list[str]
    seqs: list[int]
    dims: int
    metric: Metric
    trees: int
    built_at: float
    build_seconds: float
    file_bytes: int
    projection: Projection | None = None
    vectors: np.ndarray | None = None  # (count, dims) float32, memory-mapped, with a projection

    @property
    def count(self) -> int:
        return len(self.keys)

    @cached_property
    def ids(self) -> dict[str, int]:
        """Key -> Annoy's internal id."""
        return {key: i for i, key in enumerate(self.keys)}

    @classmethod
    def load(cls, path: Path, dims: int, metric: Metric) -> Generation:
        """Load (memory-map) and check a generation directory; FailedPrecondition if it is
        missing, incomplete or of another layout."""
        try:
            return cls._load(path, dims, metric)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FailedPrecondition(
                f"generation {path} cannot be loaded: {exc}", reason=Reason.BUILD_FAILED
            ) from exc

    @classmethod
    def _load(cls, path: Path, dims: int, metric: Metric) -> Generation:
        meta = json.loads((path / "meta.json").read_text())
        if meta["dims"] != dims or meta["metric"] != metric.value:
            raise FailedPrecondition(
                f"generation {path} holds {meta['dims']}-d {meta['metric']} vectors, "
                f"the shard is {dims}-d {metric.value}"
            )
        projection, vectors, index_dims = None, None, dims
        if (path / PROJECTION_FILE).exists():
            projection = Projection.load(path / PROJECTION_FILE)
            vectors = np.load(path / VECTORS_FILE, mmap_mode="r")
            index_dims = projection.output_dims
        index_path = path / INDEX_FILE
        size = index_path.stat().st_size
        # Annoy can crash on a file of another dimension (annoy #394): check before loading.
        node = annoy_node_bytes(index_dims, metric)
        if size % node or size // node < meta["count"]:
            raise FailedPrecondition(
                f"{index_path} ({size} bytes) does not fit {index_dims}-d items"
            )
        items = json.loads((path / "items.json").read_text())
        if len(items["keys"]) != meta["count"] or len(items["seqs"]) != meta["count"]:
            raise FailedPrecondition(f"{path}/items.json does not list {meta['count']} items")
        annoy = AnnoyIndex(index_dims, metric.value)
        annoy.load(str(index_path))  # mmap: no copy, instant
        return cls(
            number=meta["number"],
            path=path,
            annoy=annoy,
            keys=items["keys"],
            seqs=items["seqs"],
            dims=dims,
            metric=metric,
            trees=meta["trees"],
            built_at=meta["built_at"],
            build_seconds=meta["build_seconds"],
            file_bytes=size + (vectors.nbytes if vectors is not None else 0),
            projection=projection,
            vectors=vectors,
        )


def current_name(data_dir: Path) -> str | None:
    """The directory name CURRENT points at (None if there is no CURRENT)."""
    try:
        return (data_dir / CURRENT).read_text().strip() or None
    except FileNotFoundError:
        return None


def current_generation(data_dir: Path, dims: int, metric: Metric) -> Generation | None:
    """The live generation named by CURRENT, loaded; None if never built.
    FailedPrecondition if CURRENT names a generation that cannot be loaded."""
    name = current_name(data_dir)
    if name is None:
        return None
    return Generation.load(data_dir / GENERATIONS / name, dims, metric)


def _replace_file(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def publish(data_dir: Path, generation: Generation) -> None:
    """Make `generation` the live one on disk: CURRENT is replaced atomically."""
    _replace_file(data_dir / CURRENT, generation.path.name + "\n")


def retire(data_dir: Path) -> None:
    """No generation is live any more (the shard is empty): CURRENT is removed."""
    try:
        os.unlink(data_dir / CURRENT)
    except FileNotFoundError:
        return
    fsync_path(data_dir)


def remove_stale(data_dir: Path) -> None:
    """Delete temporary and superseded generation directories: all but the one CURRENT names
    (a mapped file stays readable by searches still holding it until they drop it)."""
    root = data_dir / GENERATIONS
    if not root.exists():
        return
    keep = current_name(data_dir)
    for entry in root.iterdir():
        if entry.name != keep:
            shutil.rmtree(entry, ignore_errors=True)
