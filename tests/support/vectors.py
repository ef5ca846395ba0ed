"""Synthetic vectors with the structure of pooled CNN features, for tests and benchmarks."""

from __future__ import annotations

import numpy as np


def structured(n: int, dims: int = 2048, seed: int = 0, clusters: int = 500) -> np.ndarray:
    """Clustered, non-negative (ReLU-like) vectors: `clusters` sparse positive centres (the same
    for every seed, so queries and data share them), members spread around them."""
    centres = np.random.default_rng(42).gamma(0.5, 1.0, size=(clusters, dims))
    rng = np.random.default_rng(seed)
    data = centres[rng.integers(clusters, size=n)] + rng.normal(0.0, 0.35, size=(n, dims))
    return (np.maximum(data, 0.0) + 1e-3).astype(np.float32)  # never all zero
