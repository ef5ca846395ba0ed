"""The Embedder's Prometheus metrics (an EmbedderObserver).

Fed by the core (embedder.Embedder calls the observer): images embedded / rejected by reason / in
flight, for Embed and EmbedStream alike, and decode seconds; by `timed_model` around the model
function the batcher calls: batch size and model seconds; by the batcher: each image's wait for
its model call (`queued`); and the model info (runtime and precision included).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from imagesim.embedder_server.observer import EmbedderObserver

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                 10, 30)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class EmbedderMetrics(Collector):
    """Registered with the server's registry (GrpcServer collectors)."""

    def __init__(self) -> None:
        registry = CollectorRegistry(auto_describe=True)  # ours only; the server's collects it
        self._registry = registry
        self.embedded = Counter(
            "imagesim_embedder_images_embedded_total", "Images embedded.", registry=registry
        )
        self.rejected = Counter(
            "imagesim_embedder_images_rejected_total",
            "Images refused or failed, by ErrorReason.",
            ["reason"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "imagesim_embedder_images_in_flight",
            "Images being decoded, queued or run now.",
            registry=registry,
        )
        self.decode_seconds = Histogram(
            "imagesim_embedder_decode_seconds",
            "Decode and resize of one image.",
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.queue_seconds = Histogram(
            "imagesim_embedder_queue_wait_seconds",
            "Wait of one image for its model call.",
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.model_seconds = Histogram(
            "imagesim_embedder_model_seconds",
            "One model call (a batch).",
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "imagesim_embedder_batch_size",
            "Images per model call.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.model = Info(
            "imagesim_embedder_model", "The model this embedder runs.", registry=registry
        )

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()

    def describe(self) -> list[Metric]:
        return []  # collected at scrape time only

    # ---- EmbedderObserver ---------------------------------------------------------------

    def image_started(self) -> None:
        self.in_flight.inc()

    def image_done(self, reason: str | None) -> None:
        self.in_flight.dec()
        if reason is None:
            self.embedded.inc()
        else:
            self.rejected.labels(reason).inc()

    def decoded(self, seconds: float) -> None:
        self.decode_seconds.observe(seconds)

    def queued(self, seconds: float) -> None:
        self.queue_seconds.observe(seconds)

    def batch_ran(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.model_seconds.observe(seconds)

    def set_model(self, info: Any) -> None:
        """Model name, weights, precision and runtime, from the model's info."""

        def label(value: Any) -> str:
            return str(getattr(value, "value", value))  # enums by their value ("float32")

        self.model.info(
            {
                "model": label(info.name),
                "weights": label(info.weights),
                "precision": label(info.precision),
                # A model without a `runtime` field runs on TensorFlow.
                "runtime": label(getattr(info, "runtime", "tensorflow")),
            }
        )


def timed_model(
    model: Callable[[np.ndarray], np.ndarray], observer: EmbedderObserver
) -> Callable[[np.ndarray], np.ndarray]:
    """The model function the batcher calls, reporting each batch's size and duration."""

    def run(batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        result = model(batch)
        observer.batch_ran(len(batch), time.perf_counter() - start)
        return result

    return run
