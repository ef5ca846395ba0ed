"""An Index shard's Prometheus metrics.

The shard's counts (items, staged, hidden, generation, index bytes, building) are read from
`Shard.stats()` at scrape time, so they are never stale and cost nothing between scrapes.
Build and search durations and build failures (requested or automatic) are reported by the
shard core itself through the ShardObserver interface this class implements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

BUILD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
SEARCH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                  0.5, 1)  # fmt: skip


class ShardMetrics(Collector):
    """Registered with the server's registry; `stats` returns the shard's ShardStats, or None
    while the shard is loading."""

    def __init__(self, stats: Callable[[], Any | None]) -> None:
        self._stats = stats
        self._registry = CollectorRegistry()
        self.build_seconds = Histogram(
            "imagesim_index_build_seconds",
            "Wall time of each index build (requested or automatic).",
            buckets=BUILD_BUCKETS,
            registry=self._registry,
        )
        self.build_failures = Counter(
            "imagesim_index_build_failures_total",
            "Builds that failed (the previous generation stayed live).",
            registry=self._registry,
        )
        self.search_seconds = Histogram(
            "imagesim_index_search_seconds",
            "Time the shard spent on one search (without gRPC).",
            buckets=SEARCH_BUCKETS,
            registry=self._registry,
        )

    def build_finished(self, generation: int, seconds: float) -> None:
        self.build_seconds.observe(seconds)

    def build_failed(self) -> None:
        self.build_failures.inc()

    def searched(self, seconds: float) -> None:
        self.search_seconds.observe(seconds)

    def describe(self) -> list[Metric]:
        return []  # collected at scrape time only

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        if stats is not None:
            for name, help, value in (
                ("imagesim_index_items", "Live items (built + staged - hidden).", stats.count),
                ("imagesim_index_items_built", "Items in the live generation.", stats.built_count),
                ("imagesim_index_items_staged", "Items searched exactly until the next build.",
                 stats.staged),
                ("imagesim_index_items_hidden", "Built items removed or replaced since.",
                 stats.hidden),
                ("imagesim_index_generation", "Live generation number (0 = none).",
                 stats.generation),
                ("imagesim_index_bytes", "Size of the live generation's index file.",
                 stats.index_bytes),
                ("imagesim_index_trees", "Trees in the live generation.", stats.trees),
                ("imagesim_index_building", "1 while a build runs.", int(stats.building)),
                ("imagesim_index_last_build_timestamp_seconds",
                 "When the live generation was built (Unix time; 0 = never).",
                 stats.last_build_time or 0),
                ("imagesim_index_last_build_failed",
                 "1 while the latest build (requested or automatic) has failed.",
                 int(bool(stats.last_build_error))),
            ):  # fmt: skip
                yield GaugeMetricFamily(name, help, value=value)
        yield from self._registry.collect()
