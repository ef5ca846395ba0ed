"""Items added since the live generation: kept in memory, searched exactly.

Append-only, so searches need no lock: a row, once written, never changes; a replaced or
removed item's row is only marked dead (a flag that goes from alive to dead, never back). A
search reads a `StagingSnapshot` (arrays + row count published as one reference) and works on
it while writes go on. Writers are serialized by the shard's write lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


class StagingSet:
    """A growable, append-only matrix of vectors with a key -> row map."""

    def __init__(self, dims: int, capacity: int = 64) -> None:
        self.dims = dims
        self._rows: dict[str, int] = {}
        self._seqs: list[int] = []
        self._keys: list[str] = []
        self._snapshot = StagingSnapshot(
            np.empty((capacity, dims), dtype=np.float32),
            np.empty(capacity, dtype=np.float32),
            np.zeros(capacity, dtype=bool),
            self._keys,
            0,
        )

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
        snap = self._snapshot
        row = snap.count
        matrix, norms, alive = snap.matrix, snap.norms, snap.alive
        if row == matrix.shape[0]:  # grow: new arrays; readers keep the old ones
            capacity = 2 * row
            matrix = np.concatenate([matrix, np.empty((row, self.dims), dtype=np.float32)])
            norms = np.concatenate([norms, np.empty(row, dtype=np.float32)])
            alive = np.concatenate([alive, np.zeros(capacity - row, dtype=bool)])
        matrix[row] = vector
        norms[row] = row_norms(vector[np.newaxis])[0]
        alive[row] = True
        self._keys.append(key)
        self._seqs.append(seq)
        old = self._rows.get(key)
        self._rows[key] = row
        self._snapshot = StagingSnapshot(matrix, norms, alive, self._keys, row + 1)
        if old is not None:
            alive[old] = False

    def discard(self, key: str) -> None:
        row = self._rows.pop(key, None)
        if row is not None:
            self._snapshot.alive[row] = False

    def items(self) -> list[tuple[str, int, np.ndarray]]:
        """(key, seq, vector) of every live row."""
        matrix = self._snapshot.matrix
        return [(k, self._seqs[r], matrix[r]) for k, r in self._rows.items()]
