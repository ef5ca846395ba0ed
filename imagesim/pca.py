"""Principal component analysis in numpy: the one implementation used by the reducer
(2048 -> 256 for serving) and by the index's projected Annoy generations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class PrincipalComponents:
    mean: np.ndarray  # (dims,) float64
    components: np.ndarray  # (output_dims, dims) float64, strongest first
    variances: np.ndarray  # (output_dims,) eigenvalues of the covariance, strongest first
    total_variance: float  # sum of all eigenvalues (for the explained share)

    @property
    def explained_variance(self) -> float:
        return float(self.variances.sum() / self.total_variance) if self.total_variance else 0.0


def fit_pca(x: np.ndarray, output_dims: int) -> PrincipalComponents:
    """The `output_dims` strongest principal components of the rows of `x` (eigenvectors of
    the covariance matrix, computed in float64)."""
    data = np.asarray(x, dtype=np.float64)
    n, dims = data.shape
    if not 1 <= output_dims <= dims or n < 2:
        raise ValueError(f"cannot take {output_dims} components of {n} {dims}-d vectors")
    mean = data.mean(axis=0)
    centred = data - mean
    return _strongest(mean, centred.T @ centred / (n - 1), output_dims)


def _strongest(mean: np.ndarray, covariance: np.ndarray, output_dims: int) -> PrincipalComponents:
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1][:output_dims]
    return PrincipalComponents(
        mean=mean,
        components=eigenvectors[:, order].T,
        variances=eigenvalues[order],
        total_variance=float(eigenvalues.clip(0).sum()),
    )


class StreamingPCA:
    """The same fit as `fit_pca`, from rows given block by block: keeps only the float64 sums
    (dims x dims), never the rows, so a fit over many rows needs no copy of them. Rows are
    shifted by the first block's mean before summing (keeps the float64 sums well conditioned).
    """

    def __init__(self, dims: int) -> None:
        self.n = 0
        self._shift: np.ndarray | None = None
        self._sum = np.zeros(dims)
        self._products = np.zeros((dims, dims))

    def add(self, rows: np.ndarray) -> None:
        block = np.array(rows, dtype=np.float64)  # a copy: shifted in place below
        if not len(block):
            return
        if self._shift is None:
            self._shift = block.mean(axis=0)
        block -= self._shift
        self.n += len(block)
        self._sum += block.sum(axis=0)
        self._products += block.T @ block

    def fit(self, output_dims: int) -> PrincipalComponents:
        """The components of the rows added so far (once: the sums are spent)."""
        n, dims = self.n, self._sum.shape[0]
        if not 1 <= output_dims <= dims or n < 2 or self._shift is None:
            raise ValueError(f"cannot take {output_dims} components of {n} {dims}-d vectors")
        offset = self._sum / n
        covariance = self._products  # in place: no second dims x dims matrix
        covariance -= np.outer(n * offset, offset)
        covariance /= n - 1
        self._products = np.zeros((0, 0))  # spent
        return _strongest(self._shift + offset, covariance, output_dims)
