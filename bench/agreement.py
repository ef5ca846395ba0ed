"""How far each runtime/precision's vectors are from TensorFlow float32's on real photos:
the share of each photo's top-10 neighbours kept, and the lowest cosine between twins. Beside
them, how close the reference's 10th and 11th neighbours are (median gap in cosine): when a
runtime moves a vector by more than that gap, the top-10 reshuffles at its edge, whatever the
runtime's quality (untrained weights put every photo in a narrow cone)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.common import Config
from imagesim.embedder_server.runtimes.base import ModelRuntime
from imagesim.recall import row_cosines, top_k_agreement


@dataclass
class AgreementResult:
    config: str
    photos: int
    top10_vs_tensorflow_float32: float
    min_cosine_vs_tensorflow_float32: float
    reference_gap_10th_11th: float  # median over photos, in cosine


def neighbour_gap(vectors: np.ndarray, k: int = 10) -> float:
    """Median over rows of the cosine gap between a row's k-th and (k+1)-th neighbour."""
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosines = units @ units.T
    np.fill_diagonal(cosines, -np.inf)
    ranked = -np.sort(-cosines, axis=1)
    return float(np.median(ranked[:, k - 1] - ranked[:, k]))


def embed_all(runtime: ModelRuntime, pixels: np.ndarray, batch: int = 16) -> np.ndarray:
    return np.concatenate([runtime(pixels[n : n + batch]) for n in range(0, len(pixels), batch)])


def agreement(
    runtimes: dict[Config, ModelRuntime], pixels: np.ndarray, against: Config
) -> list[AgreementResult]:
    reference = embed_all(runtimes[against], pixels)
    gap = neighbour_gap(reference)
    results = []
    for config, runtime in runtimes.items():
        if config == against:
            continue
        vectors = embed_all(runtime, pixels)
        results.append(
            AgreementResult(
                config.label,
                len(pixels),
                top_k_agreement(reference, vectors, 10),
                float(row_cosines(reference, vectors).min()),
                gap,
            )
        )
    return results
