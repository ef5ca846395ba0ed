"""The Embedder's core: image bytes -> vector in a named space. Knows nothing of gRPC.

Decoding runs in the calling thread; the model runs on the batcher's single thread, so
concurrent callers share model calls.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from imagesim.embedder_server.batcher import AdaptiveBatcher
from imagesim.embedder_server.model import InceptionFeatures
from imagesim.embedder_server.preprocess import ImageLimits, preprocess
from imagesim.errors import FailedPrecondition, InvalidArgument, Reason

FULL = "full"
REDUCED = "reduced"


class Reducer(Protocol):
    """Maps full vectors to a smaller space (PCA or autoencoder)."""

    input_dim: int
    output_dim: int
    description: str

    def transform(self, vectors: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class SpaceSpec:
    name: str
    dimension: int
    description: str


class Embedder:
    """Embeds encoded images with a shared model batcher, optionally reducing the vector."""

    def __init__(
        self,
        features: InceptionFeatures,
        batcher: AdaptiveBatcher,
        limits: ImageLimits,
        reducer: Reducer | None = None,
    ) -> None:
        self.features = features
        self.batcher = batcher
        self.limits = limits
        self.reducer = reducer
        self.images_embedded = 0  # successes since start (Info reports it)
        self._count_lock = threading.Lock()

    @property
    def model_fingerprint(self) -> str:
        return self.features.info.fingerprint

    def spaces(self) -> list[SpaceSpec]:
        info = self.features.info
        spaces = [SpaceSpec(FULL, info.dimension, f"{info.name} global average pool")]
        if self.reducer is not None:
            spaces.append(SpaceSpec(REDUCED, self.reducer.output_dim, self.reducer.description))
        return spaces

    def check_space(self, space: str) -> None:
        if space == REDUCED and self.reducer is None:
            raise FailedPrecondition(
                "the reduced space is not offered: this embedder was started without a "
                "reducer (start it with --reducer DIR, see `imagesim reducer train`)",
                reason=Reason.SPACE_NOT_OFFERED,
            )
        if space not in (FULL, REDUCED):
            raise InvalidArgument(
                f"unknown vector space {space!r}", reason=Reason.VALUE_OUT_OF_RANGE
            )

    def embed(self, image: bytes, space: str = FULL) -> np.ndarray:
        """One encoded image -> float32 vector in `space`."""
        self.check_space(space)
        pixels = preprocess(image, self.features.info.input_size, self.limits)
        vector = self.batcher.submit(pixels).result()
        if space == REDUCED:
            assert self.reducer is not None
            vector = self.reducer.transform(vector[np.newaxis])[0]
        with self._count_lock:
            self.images_embedded += 1
        return vector
