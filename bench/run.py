"""`make bench`: what the system delivers against what each model runtime alone can do, as
ratios measured in one run on one machine (interleaved: the machine is noisy). Prints a table
and writes JSON.

    python -m bench.run [--quick] [--out .bench/results.json] [--only raw,served,...]

Sections (each its own module with a typed result): raw model per runtime/precision (batch 32
throughput, batch 1 latency) and agreement with TensorFlow float32 on real photos; served
throughput (gRPC 1 and 8 clients, bulk dump) and query latency image -> top-10 over 2 shards,
per runtime/precision; start-up to SERVING (converting, and from the cached IR) and RSS; index
recall@10; fan-out 1 vs 4 shards; near-duplicate groups of 25,000 x 2048 (bench.duplicates);
bulk dump on a local Ray against the gRPC dump (bench.ray_local). Opt-in, `--only scale`: one
shard's ingest, build time and memory, idle RSS, disk, search latency and recall at 100k, 300k
and 1M items (bench.scale; `--scale-points` to choose).
--quick runs every code path on tiny inputs (CI smoke test); its timings mean nothing, its
correctness figures (agreement, recall, own photo first) do.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench.agreement import agreement
from bench.common import (
    REFERENCE,
    UNTRAINED,
    Config,
    Machine,
    Workload,
    quantization_record,
    rss_mb,
    start_timed,
)
from bench.duplicates import run as duplicates
from bench.embed import raw_models, served
from bench.fanout import fan_out
from bench.index import index_quality
from bench.query import photo_key, query_latency
from bench.ray_local import ray_vs_grpc
from bench.report import BenchResults, table
from bench.scale import DEFAULT_POINTS
from bench.scale import run as scale
from bench.shards import start_shards, stop_all
from bench.startup import StartupResult, startup
from bench.sync import run as sync
from imagesim.client.dump import VectorDump
from imagesim.embedder_server.runtimes import openvino as ovrt
from imagesim.embedder_server.runtimes.select import load_runtime
from tests.support.vectors import structured as structured_vectors

REAL_DUMP = Path(".bench/reducers/vectors.npz")
SECTIONS = ("raw", "served", "startup", "index", "fanout", "duplicates", "sync", "ray")
# Opt-in (`--only scale`): one shard up to 1M items, an hour or more (bench.scale).
OPT_IN = ("scale",)


def default_configs(quick: bool) -> list[Config]:
    bf16 = ovrt.native_bf16()
    if quick:
        return [Config("openvino", "float32"), REFERENCE]
    configs = [Config("openvino", "bfloat16")] if bf16 else []
    # int8: calibrated on the bundled sample photos (the default), quantized once per cache
    configs += [Config("openvino", "int8"), Config("openvino", "float32"), REFERENCE]
    return configs + ([Config("tensorflow", "bfloat16")] if bf16 else [])


def run(args: argparse.Namespace) -> BenchResults:
    quick = args.quick
    configs = [
        replace(c, weights=args.weights)
        for c in (
            [Config(*c.split("/")) for c in args.configs.split(",")]
            if args.configs
            else default_configs(quick)
        )
    ]
    reference = replace(REFERENCE, weights=args.weights)
    sections = args.only.split(",") if args.only else list(SECTIONS)
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    results = BenchResults(quick, Machine.detect(), [c.label for c in configs], args.weights)
    began = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] {message}", flush=True)

    count = 16 if quick else 96
    photos = Workload(work / f"photos-{count}", count)
    rounds = 1 if quick else 3

    if "raw" in sections or "served" in sections:
        log("loading runtimes in-process: " + ", ".join(c.label for c in {*configs, reference}))
        runtimes = {c: load_runtime(c.weights, c.runtime, c.precision) for c in configs}
        results.quantization = [quantization_record(r) for r in runtimes.values()]
        results.quantization = [q for q in results.quantization if q]
        runtimes.setdefault(reference, load_runtime(args.weights, "tensorflow", "float32"))
        if "raw" in sections:
            log("raw model throughput and latency, interleaved ...")
            results.raw = raw_models(runtimes, photos, rounds, 4 if quick else 20)
            log("agreement with TensorFlow float32 on real photos ...")
            results.agreement = agreement(runtimes, photos.pixels, reference)
        if "served" in sections:
            serve(results, configs[:1] if quick else configs, runtimes, photos, work, quick, log)
    if "startup" in sections and not quick:  # --quick: the served section's start is timed
        for config in configs:
            log(f"start-up {config.label} ...")
            results.startup.append(startup(config, work, cold=not quick))
    if "index" in sections:
        sets = {
            f"structured {2000 if quick else 25_000} x 2048": (
                structured_vectors(2000 if quick else 25_000, 2048, 0),
                structured_vectors(20 if quick else 100, 2048, 7),
            )
        }
        if REAL_DUMP.exists() and not quick:
            dump = VectorDump.load(REAL_DUMP)
            queries = dump.vectors[:: max(1, len(dump.vectors) // 100)][:100]
            sets[f"real photos {len(dump.keys)} x 2048"] = (dump.vectors, queries)
        for name, (data, queries) in sets.items():
            log(f"index recall and latency, {name} ...")
            results.index.append(index_quality(name, data, queries, projected=not quick))
    if "fanout" in sections:
        log("fan-out, 1 vs 4 shards ...")
        results.fan_out = fan_out(
            work,
            structured_vectors(2000 if quick else 25_000, 2048, 3),
            structured_vectors(20 if quick else 200, 2048, 4),
            projected=not quick,
        )
    if "duplicates" in sections:
        log("near-duplicate groups ...")
        results.duplicates = duplicates(quick, work / "duplicates")
    if "sync" in sections:
        log("a no-op sync ...")
        results.sync = sync(work / "sync", 2000 if quick else 25_000)
    if "scale" in sections:
        log("scale: one shard per point ...")
        results.scale = scale(args.scale_points, work / "scale", work / "scale.json", log)
    if "ray" in sections:
        config = configs[0]
        images = 16 if quick else 384
        log(f"bulk dump on a local Ray vs gRPC dump, {config.label}, {images} photos ...")
        ray_photos = photos if images == count else Workload(work / f"photos-{images}", images)
        results.ray.append(
            ray_vs_grpc(config, work, ray_photos, 1 if quick else 3, batch_size=8 if quick else 32)
        )
    return results


def serve(
    results: BenchResults,
    configs: list[Config],
    runtimes: dict,
    photos: Workload,
    work: Path,
    quick: bool,
    log: Callable[[str], None],
) -> None:
    """Per config: start its embedder (timed), served throughput rounds, then queries over 2
    shards that hold the structured vectors plus the photos' own vectors."""
    log("2 query shards ...")
    own = runtimes[configs[0]](photos.pixels)
    shards = start_shards(
        work,
        "query-",
        2,
        structured_vectors(2000 if quick else 25_000, 2048, 0),
        extra={photo_key(n): own[n] for n in range(len(own))},
    )
    try:
        for config in configs:
            log(f"served throughput and queries, {config.label} ...")
            server, startup_s = start_timed(
                work / f"embedder-{config.runtime}-{config.precision}.log", *config.server_args()
            )
            try:
                results.startup.append(
                    StartupResult(config.label, None, startup_s, rss_mb(server.process.pid))
                )
                log(f"served throughput, {config.label} ...")
                results.served.append(
                    served(
                        config,
                        runtimes[config],
                        server.address,
                        server.process.pid,
                        photos,
                        1 if quick else 3,
                    )
                )
                log(f"queries, {config.label} ...")
                results.query.append(
                    query_latency(
                        config,
                        runtimes[config],
                        server.address,
                        [s.address for s in shards],
                        photos,
                        8 if quick else 60,
                    )
                )
            finally:
                server.stop()
        results.index_rss_mb = max(rss_mb(s.process.pid) for s in shards)
    finally:
        stop_all(shards)


def main(argv: list[str] | None = None) -> BenchResults:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(".bench/results.json"))
    parser.add_argument("--work", type=Path, default=Path(".bench/run"))
    parser.add_argument(
        "--configs",
        default=None,
        help="runtime/precision list, e.g. openvino/bfloat16,tensorflow/float32",
    )
    parser.add_argument(
        "--weights",
        default=UNTRAINED,
        help="the model's weights in every runtime (the Embedder's --weights: imagenet or a "
        "file): 'none' (untrained) by default, so agreement figures say little of trained ones",
    )
    parser.add_argument(
        "--only", default=None, help=f"comma-separated: {','.join(SECTIONS + OPT_IN)}"
    )
    parser.add_argument(
        "--scale-points",
        default=DEFAULT_POINTS,
        help="--only scale: items x dims[/project dims], comma-separated",
    )
    args = parser.parse_args(argv)
    results = run(args)
    results.write(args.out)
    print("\n" + table(results))
    print(f"\nJSON: {args.out}")
    return results


if __name__ == "__main__":
    main()
