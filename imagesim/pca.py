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
    covariance = centred.T @ centred / (n - 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1][:output_dims]
    return PrincipalComponents(
        mean=mean,
        components=eigenvectors[:, order].T,
        variances=eigenvalues[order],
        total_variance=float(eigenvalues.clip(0).sum()),
    )
