"""Items added since the live generation: kept in memory (or a memory-mapped scratch file),
searched exactly.

Append-only, so searches need no lock: a row, once written, never changes; a replaced or
removed item's row is only marked dead (a flag that goes from alive to dead, never back). A
search reads a `StagingSnapshot` (arrays + row count published as one reference) and works on
it while writes go on. Writers are serialized by the shard's write lock.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from imagesim.enums import Metric
from imagesim.index_server.vectors import coarse_distances, distances, row_norms

# Given candidate keys (closest first), the ones a metadata filter keeps.
KeepFn = Callable[[list[str]], set[str]]

# Rows refined in float64 beyond the k asked for (the float32 pass only ranks candidates).
REFINE_MARGIN = 16


@dataclass(frozen=True)
class StagingSnapshot:
    """Rows [0, count) of the staging arrays as of one moment."""

    matrix: np.ndarray
    norms: np.ndarray
    alive: np.ndarray  # shared with the writer: flags may turn dead after the snapshot
    keys: list[str]
    count: int

    def __len__(self) -> int:
        return int(np.count_nonzero(self.alive[: self.count]))

    def search(
        self,
        queries: np.ndarray,
        k: int,
        metric: Metric,
        max_distance: float | None = None,
        keep: KeepFn | None = None,
    ) -> list[list[tuple[float, str]]]:
        """Exact top-k of the live rows for each query: (distance, key), closest first; with
        `keep`, only keys it keeps (it is asked in blocks, closest first, until k are found).

        A float32 pass ranks every row; the best k + margin are re-measured in float64."""
        n = self.count
        if n == 0:
            return [[] for _ in queries]
        matrix = self.matrix[:n]
        coarse = coarse_distances(matrix, self.norms[:n], queries, metric)
        coarse[:, ~self.alive[:n]] = np.inf
        if max_distance is not None:  # the float32 pass errs by far less than this margin
            coarse[coarse > max_distance + 1e-3] = np.inf
        results = []
        for query, row in zip(queries, coarse, strict=True):
            picked = self._candidates(row, k + REFINE_MARGIN, keep)
            exact = distances(matrix[picked], query, metric)
            found = [
                (float(exact[i]), self.keys[picked[i]]) for i in np.argsort(exact, kind="stable")
            ]
            if max_distance is not None:
                found = [hit for hit in found if hit[0] <= max_distance]
            results.append(found[:k])
        return results

    def _candidates(self, row: np.ndarray, want: int, keep: KeepFn | None) -> np.ndarray:
        """Up to `want` finite rows, closest first, that `keep` keeps."""
        finite = int(np.isfinite(row).sum())
        if keep is None:
            if want < finite:
                picked: np.ndarray = np.argpartition(row, want - 1)[:want]
                finite_picked: np.ndarray = picked[np.isfinite(row[picked])]
                return finite_picked
            return np.flatnonzero(np.isfinite(row))
        ranked = np.argsort(row, kind="stable")[:finite]
        chosen: list[int] = []
        block = max(4 * want, 256)
        for start in range(0, finite, block):
            rows = ranked[start : start + block]
            kept = keep([self.keys[r] for r in rows])
            chosen.extend(int(r) for r in rows if self.keys[r] in kept)
            if len(chosen) >= want:
                break
        return np.asarray(chosen[:want], dtype=np.int64)


class _Rows:
    """The staging matrix's storage: anonymous memory, or (with a directory) an unnamed
    scratch file there, memory-mapped for searches and written with pwrite. A file-backed
    matrix is page cache, not process memory: rows are written without touching the mapping,
    so a shard holding a million staged 2048-d items does not hold 8 GB of them (a search maps
    in the pages it reads; the kernel can drop them again). The file is never durable (the
    store is) and disappears with its last mapping."""

    def __init__(self, dims: int, directory: Path | None) -> None:
        self.dims = dims
        # Open for the set's lifetime (closed when it is dropped; mappings outlive it).
        self._file = (
            tempfile.TemporaryFile(dir=directory)  # noqa: SIM115
            if directory is not None
            else None
        )

    def allocate(self, capacity: int, old: np.ndarray | None) -> np.ndarray:
        """A (capacity, dims) float32 matrix whose first rows are `old`'s."""
        if self._file is None:
            matrix = np.empty((capacity, self.dims), dtype=np.float32)
            if old is not None:
                matrix[: len(old)] = old
            return matrix
        size = capacity * self.dims * 4
        os.ftruncate(self._file.fileno(), size)  # the old rows are in the file already
        mapped = mmap.mmap(self._file.fileno(), size, prot=mmap.PROT_READ)
        return np.frombuffer(mapped, dtype=np.float32).reshape(capacity, self.dims)

    def write(self, matrix: np.ndarray, start: int, rows: np.ndarray) -> None:
        if self._file is None:
            matrix[start : start + len(rows)] = rows
            return
        data = np.ascontiguousarray(rows, dtype=np.float32).tobytes()
        os.pwrite(self._file.fileno(), data, start * self.dims * 4)


class Reserved(NamedTuple):
    """Rows [first, stop) written by `StagingSet.reserve`, in arrays not yet published."""

    matrix: np.ndarray
    norms: np.ndarray
    alive: np.ndarray
    first: int
    stop: int


class StagingSet:
    """A growable, append-only matrix of vectors with a key -> row map. With `directory`,
    the matrix is a memory-mapped scratch file there (see `_Rows`)."""

    def __init__(self, dims: int, capacity: int = 64, directory: Path | None = None) -> None:
        self.dims = dims
        self.directory = directory
        self._storage = _Rows(dims, directory)
        self._rows: dict[str, int] = {}
        self._seqs: list[int] = []
        self._keys: list[str] = []
        self._snapshot = StagingSnapshot(
            self._storage.allocate(capacity, None),
            np.empty(capacity, dtype=np.float32),
            np.zeros(capacity, dtype=bool),
            self._keys,
            0,
        )

    def empty(self, capacity: int = 64) -> StagingSet:
        """A new, empty set stored like this one."""
        return StagingSet(self.dims, capacity, self.directory)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    @property
    def dead_rows(self) -> int:
        return self._snapshot.count - len(self._rows)

    def snapshot(self) -> StagingSnapshot:
        return self._snapshot

    def seq(self, key: str) -> int:
        return self._seqs[self._rows[key]]

    def put(self, key: str, seq: int, vector: np.ndarray) -> None:
        """Stage `vector` as the key's live row (the old row, if any, dies after the new one
        is visible, so a concurrent search never misses the key)."""
        self.put_many([key], [seq], np.asarray(vector, dtype=np.float32)[np.newaxis])

    def put_many(self, keys: Sequence[str], seqs: Sequence[int], vectors: np.ndarray) -> None:
        """`put` of each (distinct) key in turn, in one step: the rows become visible together,
        then the replaced rows die."""
        self.publish(keys, seqs, self.reserve(vectors))

    def reserve(self, vectors: np.ndarray) -> Reserved:
        """Write `vectors` into the rows after the visible ones, unseen until `publish`ed (the
        slow half of `put_many`, so a writer can do it while its transaction commits). The
        next `reserve` or `put_many` reuses the rows if they are never published."""
        snap = self._snapshot
        first, added = snap.count, len(vectors)
        matrix, norms, alive = snap.matrix, snap.norms, snap.alive
        if first + added > matrix.shape[0]:  # grow: new arrays; readers keep the old ones
            capacity = max(2 * matrix.shape[0], first + added)
            matrix = self._storage.allocate(capacity, matrix[:first])
            norms = np.concatenate([norms[:first], np.empty(capacity - first, np.float32)])
            alive = np.concatenate([alive[:first], np.zeros(capacity - first, dtype=bool)])
        stop = first + added
        self._storage.write(matrix, first, vectors)
        norms[first:stop] = row_norms(vectors)  # rows past the count: no reader looks there
        return Reserved(matrix, norms, alive, first, stop)

    def publish(self, keys: Sequence[str], seqs: Sequence[int], reserved: Reserved) -> None:
        """Make `reserved`'s rows the live rows of `keys` (as `put_many` does)."""
        matrix, norms, alive, first, stop = reserved
        if first != self._snapshot.count or stop - first != len(keys):
            raise ValueError("rows reserved for another state of the set")
        alive[first:stop] = True
        self._keys.extend(keys)
        self._seqs.extend(seqs)
        replaced = [self._rows[key] for key in keys if key in self._rows]
        self._rows.update(zip(keys, range(first, stop), strict=True))
        self._snapshot = StagingSnapshot(matrix, norms, alive, self._keys, stop)
        if replaced:
            alive[replaced] = False

    def discard(self, key: str) -> None:
        row = self._rows.pop(key, None)
        if row is not None:
            self._snapshot.alive[row] = False

    def items(self) -> list[tuple[str, int, np.ndarray]]:
        """(key, seq, vector) of every live row."""
        matrix = self._snapshot.matrix
        return [(k, self._seqs[r], matrix[r]) for k, r in self._rows.items()]
