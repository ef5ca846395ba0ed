"""Query latency, image -> top-10 over 2 shards through both services, each query right after
the same runtime ran the same image alone at batch 1 in-process (drift hits both alike). The
shards hold the structured vectors plus the photos' own vectors, so every query must find its
own photo first."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from bench.common import Config, Workload, percentile
from imagesim.client.collection import Collection
from imagesim.client.embedder_client import EmbedderClient
from imagesim.embedder_server.runtimes.base import ModelRuntime
from imagesim.params import SearchParams


@dataclass
class QueryResult:
    config: str
    queries: int
    p50_ms: float
    p99_ms: float
    bare_bs1_p50_ms: float
    target_ms: float  # 1.3 x bare + 2 ms
    ratio_vs_bare: float
    top1_is_self: float  # share of queries whose first hit is the photo itself


def photo_key(n: int) -> str:
    return f"photo:{n}"


def query_latency(
    config: Config,
    runtime: ModelRuntime,
    embedder: str,
    shards: list[str],
    work: Workload,
    count: int,
) -> QueryResult:
    bare, times, self_first = [], [], 0
    with EmbedderClient(embedder) as client, Collection(shards) as collection:
        for data in work.jpegs[:2]:
            collection.search(client.embed(data), SearchParams(k=10))
        for n in range(count):
            data, pixels = work.jpegs[n % len(work.jpegs)], work.pixels[n % len(work.jpegs)]
            started = time.perf_counter()
            runtime(pixels[np.newaxis])
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            hits = collection.search(client.embed(data), SearchParams(k=10))
            times.append(time.perf_counter() - started)
            self_first += hits.neighbors[0].key == photo_key(n % len(work.jpegs))
    bare_ms, p50 = percentile(bare, 50) * 1000, percentile(times, 50) * 1000
    return QueryResult(
        config=config.label,
        queries=count,
        p50_ms=p50,
        p99_ms=percentile(times, 99) * 1000,
        bare_bs1_p50_ms=bare_ms,
        target_ms=1.3 * bare_ms + 2.0,
        ratio_vs_bare=p50 / bare_ms,
        top1_is_self=self_first / count,
    )
