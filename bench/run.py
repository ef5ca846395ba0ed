"""`make bench`: what the system delivers against what the model alone can do, as ratios
measured in one run on one machine. Prints a table and writes JSON.

    python -m bench.run [--quick] [--out .bench/results.json] [--precisions float32,bfloat16]

Sections: (1) embed throughput: raw compiled model at batch 32, a per-image `model.predict`
loop, gRPC with 1 and 8 concurrent clients, bulk `dump` streaming; bfloat16's top-10 agreement
with float32. (2) query latency image -> top-10 over 2 shards vs the bare model at batch 1.
(3) index recall@10 and latency: Annoy, Annoy + exact re-rank, numpy exact, on 25,000 structured
vectors (and on real-photo vectors if `python -m bench.reducers` made a dump). (4) fan-out
overhead, 1 vs 4 shards. (5) resident memory of each server.
--quick runs every code path on tiny inputs (CI smoke test); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from imagesim.client.collection import Collection
from imagesim.client.dump import VectorDump, dump_folder
from imagesim.client.embedder_client import EmbedderClient
from imagesim.client.index_client import ItemToAdd
from imagesim.params import SearchParams
from imagesim.testing.launch import ServerProcess, start_embedder, start_index
from imagesim.testing.samples import write_photo_crops

REAL_DUMP = Path(".bench/reducers/vectors.npz")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def rss_mb(server: ServerProcess) -> float:
    import psutil

    return psutil.Process(server.process.pid).memory_info().rss / 1e6


def structured(n: int, dims: int, seed: int) -> np.ndarray:
    """Clustered, non-negative vectors like pooled CNN features (500 clusters)."""
    centres = np.random.default_rng(42).gamma(0.5, 1.0, size=(500, dims))
    rng = np.random.default_rng(seed)
    data = centres[rng.integers(500, size=n)] + rng.normal(0.0, 0.35, size=(n, dims))
    return np.maximum(data, 0.0).astype(np.float32)


class Bench:
    def __init__(self, quick: bool, work: Path, precisions: list[str]) -> None:
        self.quick = quick
        self.work = work
        self.precisions = precisions
        self.results: dict = {"quick": quick, "machine": machine()}
        self.images = 8 if quick else 96
        photos = work / "photos"
        self.paths = sorted(photos.glob("*.jpg"))[: self.images]
        if len(self.paths) < self.images:
            self.paths = write_photo_crops(photos, self.images, seed=1)
        self.jpegs = [p.read_bytes() for p in self.paths]
        self.vectors: dict[str, np.ndarray] = {}

    def log(self, message: str) -> None:
        print(message, flush=True)

    # ---- (1) embedding ------------------------------------------------------------------
    def embed_rounds(self, precision: str) -> dict:
        """Raw model and server measured in alternation, so drift on a noisy machine hits
        both sides of each ratio alike; ratios are medians of per-round ratios."""
        from imagesim.embedder_server.model import InceptionFeatures
        from imagesim.embedder_server.preprocess import ImageLimits, preprocess

        model = InceptionFeatures("none", precision)
        batch = np.stack([preprocess(d, (299, 299), ImageLimits()) for d in self.jpegs])
        bs = min(32, len(batch))
        model.warm_up((1, bs))
        server = start_embedder(
            self.work / f"embedder-{precision}.log", "--weights", "none", "--precision", precision
        )
        runs: dict[str, list[float]] = {"raw": [], "one": [], "eight": [], "dump": []}
        try:
            with EmbedderClient(server.address, timeout=300) as client:
                client.embed(self.jpegs[0])
                for _ in range(1 if self.quick else 3):
                    started = time.perf_counter()
                    for start in range(0, len(batch) - bs + 1, bs):
                        model(batch[start : start + bs])
                    runs["raw"].append((len(batch) // bs) * bs / (time.perf_counter() - started))
                    runs["one"].append(self._concurrent(client, 1))
                    runs["eight"].append(self._concurrent(client, 8))
                    started = time.perf_counter()
                    with tempfile.TemporaryDirectory() as tmp:
                        _, report = dump_folder(
                            self.paths[0].parent, client, Path(tmp) / "v.npz", progress=False
                        )
                    runs["dump"].append(report.done / (time.perf_counter() - started))
            rss = rss_mb(server)
        finally:
            server.stop()
        predict_n = 4 if self.quick else 32
        model._model.predict(batch[:1], verbose=0)
        started = time.perf_counter()
        for x in batch[:predict_n]:
            model._model.predict(x[None], verbose=0)
        predict = predict_n / (time.perf_counter() - started)
        self.vectors[precision] = model(batch)

        def ratio(name: str) -> float:
            return statistics.median(a / b for a, b in zip(runs[name], runs["raw"], strict=True))

        return {
            "raw_bs32_img_s": statistics.median(runs["raw"]),
            "predict_loop_img_s": predict,
            "grpc_1_client_img_s": statistics.median(runs["one"]),
            "grpc_8_clients_img_s": statistics.median(runs["eight"]),
            "bulk_dump_img_s": statistics.median(runs["dump"]),
            "ratio_1_client_vs_raw": ratio("one"),
            "ratio_8_clients_vs_raw": ratio("eight"),
            "ratio_dump_vs_raw": ratio("dump"),
            "ratio_8_clients_vs_predict_loop": statistics.median(runs["eight"]) / predict,
            "embedder_rss_mb": rss,
            "runs": runs,
        }

    def _concurrent(self, client: EmbedderClient, clients: int) -> float:
        todo = list(self.jpegs)
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    data = todo.pop()
                client.embed(data)

        threads = [threading.Thread(target=worker) for _ in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return len(self.jpegs) / (time.perf_counter() - started)

    def embedding(self) -> None:
        section = self.results.setdefault("embed", {})
        for precision in self.precisions:
            self.log(f"embed throughput, {precision} ...")
            section[precision] = self.embed_rounds(precision)
        if "float32" in self.vectors and "bfloat16" in self.vectors:
            section["bfloat16_top10_agreement"] = top_k_agreement(
                self.vectors["float32"], self.vectors["bfloat16"], 10
            )
            a, b = self.vectors["float32"], self.vectors["bfloat16"]
            cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            section["bfloat16_min_cosine"] = float(cos.min())

    # ---- (2)-(4) index and queries ------------------------------------------------------
    def shards(
        self, count: int, data: np.ndarray, tag: str, project: int = 0
    ) -> list[ServerProcess]:
        servers = []
        for n in range(count):
            data_dir = self.work / f"{tag}{n}"
            shutil.rmtree(data_dir, ignore_errors=True)  # a fresh shard every run
            servers.append(
                start_index(
                    self.work / f"{tag}{n}.log",
                    data_dir,
                    data.shape[1],
                    "--auto-build",
                    "0",
                    "--project-dims",
                    str(project),
                )
            )
        with Collection([s.address for s in servers], timeout=600) as collection:
            for start in range(0, len(data), 2000):
                collection.add(
                    [
                        ItemToAdd(f"v{i}", data[i])
                        for i in range(start, min(start + 2000, len(data)))
                    ]
                )
            collection.build(trees=50)
        return servers

    def query_latency(self) -> None:
        """Image -> top-10 over 2 shards through both services, each query right after the
        bare model runs the same image at batch 1 in-process (drift hits both alike)."""
        from imagesim.embedder_server.model import InceptionFeatures
        from imagesim.embedder_server.preprocess import ImageLimits, preprocess

        self.log("query latency, image -> top-10 over 2 shards ...")
        model = InceptionFeatures("none", "float32")
        model.warm_up((1,))
        shards = self.shards(2, structured(2000 if self.quick else 25_000, 2048, 0), "q")
        embedder = start_embedder(
            self.work / "embedder-query.log", "--weights", "none", "--precision", "float32"
        )
        bare, times = [], []
        try:
            with (
                EmbedderClient(embedder.address) as client,
                Collection([s.address for s in shards]) as collection,
            ):
                for data in self.jpegs[:2]:
                    collection.search(client.embed(data), SearchParams(k=10))
                for data in self.jpegs[: 8 if self.quick else 60]:
                    x = preprocess(data, (299, 299), ImageLimits())[None]
                    started = time.perf_counter()
                    model(x)
                    bare.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    collection.search(client.embed(data), SearchParams(k=10))
                    times.append(time.perf_counter() - started)
            self.results["index_rss_mb"] = max(rss_mb(s) for s in shards)
        finally:
            embedder.stop()
            for s in shards:
                s.stop()
        bare_ms, p50 = percentile(bare, 50) * 1000, percentile(times, 50) * 1000
        self.results["query"] = {
            "p50_ms": p50,
            "p99_ms": percentile(times, 99) * 1000,
            "bare_bs1_p50_ms": bare_ms,
            "target_ms": 1.15 * bare_ms + 2.0,
            "ratio_vs_bare": p50 / bare_ms,
        }

    def index_quality(self) -> None:
        from imagesim.index_server.shard import Shard, ShardConfig

        sets = {"structured 25k x 2048": structured(2000 if self.quick else 25_000, 2048, 0)}
        if REAL_DUMP.exists() and not self.quick:
            sets[f"real photos {len(VectorDump.load(REAL_DUMP).keys)} x 2048"] = VectorDump.load(
                REAL_DUMP
            ).vectors
        section = self.results.setdefault("index", {})
        for name, data in sets.items():
            self.log(f"index recall and latency, {name} ...")
            queries = (
                structured(100, 2048, 7)
                if name.startswith("structured")
                else data[np.random.default_rng(0).choice(len(data), 100, replace=False)]
            )
            truth = exact(data, queries, 10)
            rows: dict = {}
            configs = {
                0: (("annoy", {}), ("annoy+rerank", {"rerank_factor": 10})),
                256: (("annoy pca-256 + exact rerank", {}),),
            }
            for project_dims, searches in configs.items():
                with tempfile.TemporaryDirectory() as tmp:
                    shard = Shard(
                        ShardConfig(
                            Path(tmp), 2048, trees=50, auto_build=0, project_dims=project_dims
                        )
                    )
                    for start in range(0, len(data), 2500):
                        shard.add(
                            [
                                (f"{i}", data[i], {})
                                for i in range(start, min(start + 2500, len(data)))
                            ]
                        )
                    started = time.perf_counter()
                    shard.build()
                    build_s = time.perf_counter() - started
                    for label, options in searches:
                        found, times = [], []
                        for q in queries:
                            t = time.perf_counter()
                            hits = shard.search([q], SearchParams(k=10, **options))[0]
                            times.append(time.perf_counter() - t)
                            found.append([int(h.key) for h in hits])
                        rows[label] = {
                            "recall_at_10": recall(found, truth),
                            "p50_ms": percentile(times, 50) * 1000,
                            "build_s_50_trees": build_s,
                        }
                    shard.close()
            unit = data / np.linalg.norm(data, axis=1, keepdims=True)
            times = []
            for q in queries:
                t = time.perf_counter()
                sims = unit @ (q / np.linalg.norm(q))
                part = np.argpartition(-sims, 10)[:10]
                part[np.argsort(-sims[part])]
                times.append(time.perf_counter() - t)
            rows["numpy exact"] = {"recall_at_10": 1.0, "p50_ms": percentile(times, 50) * 1000}
            section[name] = rows

    def fan_out(self) -> None:
        self.log("fan-out overhead, 1 vs 4 shards ...")
        data = structured(2000 if self.quick else 25_000, 2048, 3)
        queries = structured(20 if self.quick else 200, 2048, 4)
        result = {}
        for count, project in ((1, 0), (4, 0), (1, 256), (4, 256)):
            tag = f"{count}_shard{'_pca256' if project else ''}"
            servers = self.shards(count, data, f"f{tag}-", project)
            try:
                with Collection([s.address for s in servers]) as collection:
                    for q in queries[:5]:
                        collection.search(q, SearchParams(k=10))
                    times = []
                    for q in queries:
                        t = time.perf_counter()
                        collection.search(q, SearchParams(k=10))
                        times.append(time.perf_counter() - t)
                result[f"{tag}_p50_ms"] = percentile(times, 50) * 1000
            finally:
                for s in servers:
                    s.stop()
        result["overhead_ms"] = result["4_shard_p50_ms"] - result["1_shard_p50_ms"]
        result["overhead_pca256_ms"] = (
            result["4_shard_pca256_p50_ms"] - result["1_shard_pca256_p50_ms"]
        )
        self.results["fan_out"] = result


def exact(data: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    sims = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    return [list(np.argsort(-row)[:k]) for row in sims]


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    k = len(truth[0])
    return statistics.mean(len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True))


def top_k_agreement(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Share of each vector's top-k neighbours (among the others) in `a` also found in `b`."""
    k = min(k, len(a) - 1)

    def neighbours(v: np.ndarray) -> list[set[int]]:
        unit = v / np.linalg.norm(v, axis=1, keepdims=True)
        sims = unit @ unit.T
        np.fill_diagonal(sims, -np.inf)
        return [set(np.argsort(-row)[:k]) for row in sims]

    return statistics.mean(
        len(x & y) / k for x, y in zip(neighbours(a), neighbours(b), strict=True)
    )


def machine() -> dict:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in flags.splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "avx512": " avx512f" in flags,
        "native_bf16": " avx512_bf16" in flags or " amx_bf16" in flags,
        "python": platform.python_version(),
    }


def table(results: dict) -> str:
    lines = [f"machine: {results['machine']}", ""]
    for precision, row in results.get("embed", {}).items():
        if not isinstance(row, dict):
            continue
        lines.append(
            f"embed {precision:<9} raw bs32 {row['raw_bs32_img_s']:6.1f} img/s | predict loop "
            f"{row['predict_loop_img_s']:5.1f} | gRPC 1 client {row['grpc_1_client_img_s']:5.1f} "
            f"({row['ratio_1_client_vs_raw']:.2f}x) | 8 clients {row['grpc_8_clients_img_s']:5.1f}"
            f" ({row['ratio_8_clients_vs_raw']:.2f}x raw, "
            f"{row['ratio_8_clients_vs_predict_loop']:.2f}x predict) | dump "
            f"{row['bulk_dump_img_s']:5.1f} ({row['ratio_dump_vs_raw']:.2f}x) | RSS "
            f"{row['embedder_rss_mb']:.0f} MB"
        )
    embed = results.get("embed", {})
    if "bfloat16_top10_agreement" in embed:
        lines.append(
            f"bfloat16 vs float32: top-10 agreement {embed['bfloat16_top10_agreement']:.4f}"
            f", min cosine {embed['bfloat16_min_cosine']:.6f}"
        )
    if "query" in results:
        q = results["query"]
        lines.append(
            f"query image -> top-10, 2 shards: p50 {q['p50_ms']:.1f} ms, p99 "
            f"{q['p99_ms']:.1f} ms; bare model bs1 p50 {q['bare_bs1_p50_ms']:.1f} ms "
            f"(target <= {q['target_ms']:.1f} ms)"
        )
    for name, rows in results.get("index", {}).items():
        lines.append(f"index {name} (50 trees):")
        for label, r in rows.items():
            build = f", build {r['build_s_50_trees']:.1f} s" if "build_s_50_trees" in r else ""
            lines.append(
                f"  {label:<30} recall@10 {r['recall_at_10']:.3f}  p50 {r['p50_ms']:.2f} ms{build}"
            )
    if "fan_out" in results:
        f = results["fan_out"]
        lines.append(
            f"fan-out: 1 shard p50 {f['1_shard_p50_ms']:.2f} ms, 4 shards "
            f"{f['4_shard_p50_ms']:.2f} ms, overhead {f['overhead_ms']:.2f} ms; with "
            f"--project-dims 256: {f['1_shard_pca256_p50_ms']:.2f} / "
            f"{f['4_shard_pca256_p50_ms']:.2f} ms, overhead {f['overhead_pca256_ms']:.2f} ms"
        )
    if "index_rss_mb" in results:
        lines.append(f"index shard RSS (12.5k x 2048 built): {results['index_rss_mb']:.0f} MB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(".bench/results.json"))
    parser.add_argument("--work", type=Path, default=Path(".bench/run"))
    parser.add_argument(
        "--precisions",
        default=None,
        help="comma-separated (default float32,bfloat16; --quick: float32)",
    )
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated sections: embed,query,index,fanout (default all)",
    )
    args = parser.parse_args(argv)
    precisions = (args.precisions or ("float32" if args.quick else "float32,bfloat16")).split(",")
    args.work.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.quick, args.work, precisions)
    sections = {
        "embed": bench.embedding,
        "query": bench.query_latency,
        "index": bench.index_quality,
        "fanout": bench.fan_out,
    }
    for name in args.only.split(",") if args.only else sections:
        sections[name]()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(bench.results, indent=2) + "\n")
    print("\n" + table(bench.results))
    print(f"\nJSON: {args.out}")
    return bench.results


if __name__ == "__main__":
    main()
