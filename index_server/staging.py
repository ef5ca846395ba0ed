"""Items added since the live generation: kept in memory, searched exactly."""

from __future__ import annotations

import numpy as np

from imagesim.index_server.vectors import distances, top_k


class StagingSet:
    """A growable matrix of vectors with a key -> row map; deleted rows are masked out."""

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self._matrix = np.empty((64, dims), dtype=np.float32)
        self._keys: list[str | None] = []
        self._seqs: list[int] = []
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def seq(self, key: str) -> int:
        return self._seqs[self._rows[key]]

    def put(self, key: str, seq: int, vector: np.ndarray) -> None:
        self.discard(key)
        row = len(self._keys)
        if row == self._matrix.shape[0]:
            grown = np.empty((2 * row, self.dims), dtype=np.float32)
            grown[:row] = self._matrix
            self._matrix = grown
        self._matrix[row] = vector
        self._keys.append(key)
        self._seqs.append(seq)
        self._rows[key] = row

    def discard(self, key: str) -> None:
        row = self._rows.pop(key, None)
        if row is not None:
            self._keys[row] = None

    def items(self) -> list[tuple[str, int, np.ndarray]]:
        return [(k, self._seqs[r], self._matrix[r]) for k, r in self._rows.items()]

    def search(self, query: np.ndarray, k: int, metric: str) -> list[tuple[float, str]]:
        """Exact top-k among the staged items: (distance, key), closest first."""
        if not self._rows:
            return []
        rows = np.fromiter(self._rows.values(), dtype=np.int64, count=len(self._rows))
        dist = distances(self._matrix[rows], query, metric)
        return [(float(dist[i]), self._keys[rows[i]]) for i in top_k(dist, k)]  # type: ignore[misc]
