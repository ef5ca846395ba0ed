"""How far each runtime/precision's vectors are from TensorFlow float32's on real photos:
the share of each photo's top-10 neighbours kept, and the lowest cosine between twins."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.common import REFERENCE, Config
from imagesim.embedder_server.runtimes.base import ModelRuntime
from imagesim.recall import row_cosines, top_k_agreement


@dataclass
class AgreementResult:
    config: str
    photos: int
    top10_vs_tensorflow_float32: float
    min_cosine_vs_tensorflow_float32: float


def embed_all(runtime: ModelRuntime, pixels: np.ndarray, batch: int = 16) -> np.ndarray:
    return np.concatenate([runtime(pixels[n : n + batch]) for n in range(0, len(pixels), batch)])


def agreement(runtimes: dict[Config, ModelRuntime], pixels: np.ndarray) -> list[AgreementResult]:
    reference = embed_all(runtimes[REFERENCE], pixels)
    results = []
    for config, runtime in runtimes.items():
        if config == REFERENCE:
            continue
        vectors = embed_all(runtime, pixels)
        results.append(
            AgreementResult(
                config.label,
                len(pixels),
                top_k_agreement(reference, vectors, 10),
                float(row_cosines(reference, vectors).min()),
            )
        )
    return results
