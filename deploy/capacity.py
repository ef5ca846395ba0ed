#!/usr/bin/env python3
"""The capacity model: what 1M, 10M and 100M images cost, on paper, from measured figures.

    python deploy/capacity.py                   # the tables in docs/scaling.md (Capacity model)
    python deploy/capacity.py --host-gib 128 --shard-pod-gib 28

Every input below names its source: docs/performance.md (the project's measurements, each with
its machine, date and method; its section "What the capacity model uses" lists these inputs), or
deploy/measured/*.json (written by deploy/measure_shard.py or by the benchmark's scale section,
python -m bench.scale: a real shard process, 100 trees, built from fully staged items; each file
names its machine). tests/test_capacity.py checks that docs/scaling.md holds exactly this
script's output, so those numbers are never typed by hand.

Model, per collection size and index layout:
- embedding cost = images / (images per second per core) / 3600 core-hours;
- a shard pod's memory must hold the measured build peak (intercept + slope x items, a
  least-squares line through the measurements) at 90% of its limit, which fixes the items per
  shard; shards = images / items per shard; hosts = shards / pods per host;
- steady RAM = the Annoy (or projected generation) files, which searches keep in page cache;
- query p50 = the measured end-to-end query over 2 shards, with the search time of the plan's
  layout and shard size (measured through gRPC, growing with log2 of the shard's size as
  measured) and the client's cost per extra shard call, paid once per shard by the one client
  process that fans out;
- rebuild = measured build time scaled by n log n (Annoy's tree building).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
MEASURED = HERE / "measured"
MiB = 1024**2
GiB = 1024**3
SIZES = (1_000_000, 10_000_000, 100_000_000)
POD_USABLE = 0.9  # a shard's build peak may use 90% of its pod's memory limit


@dataclass(frozen=True)
class Runtime:
    """An embedding runtime's end-to-end throughput (decode + model) per CPU core."""

    name: str
    images_per_second_per_core: float
    source: str


# Embedding, all on the Intel Xeon with AMX of docs/performance.md (2 vCPU, shared, noisy).
# Served = raw model + the serving path (decode, resize, gRPC, Python) on the same cores. The
# path's CPU per image comes from one measured round: OpenVINO bf16 raw 148 img/s, served
# `dump` 113 img/s on 2 cores (docs/performance.md, note 1): 2/113 - 2/148 s per image.
SERVING_SECONDS = 2 / 113 - 2 / 148
DECODE_SECONDS = 0.00205  # docs/performance.md note 1: decode 0.85 + resize ~1.0 + mode ~0.2 ms


def served_per_core(raw_images_per_second_2_cores: float) -> float:
    return 1 / (2 / raw_images_per_second_2_cores + SERVING_SECONDS)


RUNTIMES = (
    Runtime(
        "OpenVINO bf16 (AMX / AVX512-BF16)",
        113 / 2,
        "docs/performance.md: served `imagesim dump`, OpenVINO bf16, 113 img/s on 2 cores "
        "(quietest round)",
    ),
    Runtime(
        "OpenVINO float32 (other x86-64)",
        served_per_core(26.1),
        "derived: docs/performance.md raw OpenVINO f32 batch 32 26.1 img/s on 2 cores + the "
        f"serving path's {SERVING_SECONDS * 1000:.1f} ms of CPU per image measured for bf16",
    ),
    Runtime(
        "TensorFlow float32",
        served_per_core(18.5),
        "derived: docs/performance.md raw TensorFlow f32 batch 32 18.5 img/s on 2 cores + the "
        "same serving path",
    ),
)
# GPU: an ESTIMATE, not a measurement: InceptionV3 costs 11.4 GFLOP per image (counted, see
# docs/performance.md); a
# T4-class GPU peaks at 65 TFLOP/s in fp16; assume 25% of peak is reached. Decode stays on CPU.
GPU_FLOP_PER_IMAGE = 11.4e9
GPU_PEAK_FLOPS = 65e12
GPU_UTILISATION = 0.25

# Query path, p50, calibrated on the measured end-to-end query: image -> top-10 over 2 shards
# of 12.5k x 2048, OpenVINO bf16: 20.5 ms (docs/performance.md; model ~10.5 ms, decode and
# resize ~2 ms, Embed round trip ~1.5 ms, 2-shard search ~3-4 ms, client work). Other shapes
# change the search part (deploy/measured, same shard size as the reference: 2.72 ms) and pay
# one more client call per extra shard.
QUERY_2_SHARDS_MS = 20.5
QUERY_REFERENCE = (2, 12_500)  # shards, items per shard of that measurement
CALL_OVERHEAD_MS = 0.29  # docs/performance.md: gRPC unary round trip on loopback, empty message
# What the cheaper layouts cost in neighbours (untrained weights: re-measure with yours).
PCA_256_RECALL = 0.807  # docs/performance.md Reduced space: exact recall@10 of PCA 256 vs full
PROJECTED_RECALL = 0.959  # docs/performance.md: 3,000 untrained real-photo vectors, 2026-11-25


@dataclass(frozen=True)
class Layout:
    """One way to index the vectors, with its measured per-shard costs."""

    name: str
    stored_dims: int  # dims of the vectors the shards store
    measured_file: str
    file_key: str  # "annoy_file_mib" or "generation_mib": what searches keep in page cache

    def measured(self) -> dict:
        value: dict = json.loads((MEASURED / self.measured_file).read_text())
        return value

    def rows(self) -> list[dict[str, float]]:
        return [_measured_row(row) for row in self.measured()["results"]]


def _measured_row(row: dict[str, float]) -> dict[str, float]:
    """A row of deploy/measure_shard.py, or of the benchmark's scale section (bench.scale:
    MB there are MiB) in measure_shard's terms. Its peak is the larger of ingest and build."""
    if "build_peak_rss_mb" not in row:
        return row
    vectors_mib = row["items"] * row["dims"] * 4 / MiB if row["project_dims"] else 0.0
    return {
        "items": row["items"],
        "peak_rss_mib": max(row["ingest_peak_rss_mb"], row["build_peak_rss_mb"]),
        "search_p50_ms": row["search_p50_ms"],
        "annoy_file_mib": row["index_file_mb"],
        "generation_mib": row["index_file_mb"] + vectors_mib,
        "data_dir_mib": row["disk_mb"],
        "build_seconds": row["build_s"],
    }


LAYOUTS = (
    Layout("2048-d, Annoy", 2048, "shard-2048d.json", "annoy_file_mib"),
    Layout("2048-d, --project-dims 256", 2048, "scale-2048d-project-256.json", "generation_mib"),
    Layout("256-d reduced space (PCA)", 256, "scale-256d.json", "annoy_file_mib"),
)


def line_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return my - slope * mx, slope


@dataclass(frozen=True)
class ShardCosts:
    build_peak_intercept: float  # bytes
    build_peak_per_item: float  # bytes
    page_cache_per_item: float  # bytes: the files searches read
    disk_per_item: float  # bytes: data directory (SQLite + generation)
    search_ms_at: tuple[float, float]  # (items, p50 ms) of the largest measurement
    search_ms_per_doubling: float
    build_seconds_at: tuple[float, float]  # (items, seconds) of the largest measurement

    @classmethod
    def of(cls, layout: Layout) -> ShardCosts:
        rows = layout.rows()
        items = [r["items"] for r in rows]
        intercept, slope = line_fit(items, [r["peak_rss_mib"] * MiB for r in rows])
        largest = max(rows, key=lambda r: r["items"])
        # A build touches every page of the Annoy file it writes: the peak grows at least by
        # that per item, even where small measurements (a fixed cost, e.g. the projection's
        # PCA, setting their peak) fit a flatter line.
        slope = max(slope, largest["annoy_file_mib"] * MiB / largest["items"])
        smallest = min(rows, key=lambda r: r["items"])
        doublings = math.log2(largest["items"] / smallest["items"])
        growth = (largest["search_p50_ms"] - smallest["search_p50_ms"]) / doublings
        return cls(
            build_peak_intercept=intercept,
            build_peak_per_item=slope,
            page_cache_per_item=largest[layout.file_key] * MiB / largest["items"],
            disk_per_item=largest["data_dir_mib"] * MiB / largest["items"],
            search_ms_at=(largest["items"], largest["search_p50_ms"]),
            search_ms_per_doubling=max(0.0, growth),
            build_seconds_at=(largest["items"], largest["build_seconds"]),
        )

    def items_per_pod(self, pod_bytes: float) -> int:
        """Most items whose build peak fits in POD_USABLE of the pod (rounded down to 5,000)."""
        items = (POD_USABLE * pod_bytes - self.build_peak_intercept) / self.build_peak_per_item
        return max(0, int(items) // 5000 * 5000)

    def build_peak(self, items: int) -> float:
        return self.build_peak_intercept + self.build_peak_per_item * items

    def disk(self, items: int) -> float:
        """The data volume during a build: items + the live and the new generation."""
        return items * (self.disk_per_item + self.page_cache_per_item)

    def search_ms(self, items: int) -> float:
        """p50 through gRPC: measured at the largest size, growing with log2 of the size."""
        at_items, at_ms = self.search_ms_at
        return at_ms + self.search_ms_per_doubling * math.log2(items / at_items)

    def rebuild_seconds(self, items: int) -> float:
        at_items, at_seconds = self.build_seconds_at
        return at_seconds * (items * math.log(items)) / (at_items * math.log(at_items))


@dataclass(frozen=True)
class Hosts:
    host_gib: float = 64
    reserved_gib: float = 8  # OS, kubelet, page cache for SQLite
    shard_pod_gib: float = 14

    @property
    def pods_per_host(self) -> int:
        return int((self.host_gib - self.reserved_gib) // self.shard_pod_gib)

    @property
    def usable_bytes(self) -> float:
        return (self.host_gib - self.reserved_gib) * GiB


def human_bytes(value: float) -> str:
    for unit, size in (("TiB", 1024**4), ("GiB", GiB), ("MiB", MiB)):
        if value >= size:
            return (
                f"{value / size:,.1f} {unit}"
                if value < 100 * size
                else f"{value / size:,.0f} {unit}"
            )
    return f"{value:,.0f} B"


def human_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def embedding_table() -> list[str]:
    gpu_rate = GPU_PEAK_FLOPS * GPU_UTILISATION / GPU_FLOP_PER_IMAGE
    header = [
        "images",
        *[f"{r.name} ({r.images_per_second_per_core:.1f} img/s/core)" for r in RUNTIMES],
    ]
    header.append(f"GPU ESTIMATE ({gpu_rate:,.0f} img/s/GPU) + decode cores")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for n in SIZES:
        cells = [f"{n:,}"]
        cells += [f"{n / r.images_per_second_per_core / 3600:,.0f} core-h" for r in RUNTIMES]
        cells.append(f"{n / gpu_rate / 3600:,.1f} GPU-h + {n * DECODE_SECONDS / 3600:,.1f} core-h")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


@dataclass(frozen=True)
class Plan:
    """One collection size on one layout: shards, hosts, latency and rebuild time."""

    images: int
    layout: Layout
    costs: ShardCosts
    items_per_shard: int  # capacity of one shard pod
    shards: int
    hosts: int
    hosts_steady: int  # if only the index files had to fit (no build peak)
    query_ms: float
    fan_out_ms: float  # the part of query_ms spent issuing one call per shard
    rebuild_seconds: float

    @classmethod
    def of(cls, images: int, layout: Layout, hosts: Hosts) -> Plan:
        costs = ShardCosts.of(layout)
        per_shard = costs.items_per_pod(hosts.shard_pod_gib * GiB)
        shards = math.ceil(images / per_shard)
        shard_items = math.ceil(images / shards)
        fan_out = CALL_OVERHEAD_MS * shards
        return cls(
            images=images,
            layout=layout,
            costs=costs,
            items_per_shard=per_shard,
            shards=shards,
            hosts=math.ceil(shards / hosts.pods_per_host),
            hosts_steady=math.ceil(images * costs.page_cache_per_item / hosts.usable_bytes),
            query_ms=QUERY_2_SHARDS_MS
            - ShardCosts.of(LAYOUTS[0]).search_ms(QUERY_REFERENCE[1])
            + costs.search_ms(shard_items)
            + CALL_OVERHEAD_MS * (shards - QUERY_REFERENCE[0]),
            fan_out_ms=fan_out,
            rebuild_seconds=costs.rebuild_seconds(shard_items),
        )


def serving_table(hosts: Hosts) -> list[str]:
    header = [
        "images",
        "layout",
        "vectors",
        "index files (page cache)",
        "items / shard",
        "shards",
        f"hosts ({hosts.host_gib:g} GiB)",
        "hosts if only index files counted",
        "query p50",
        "rebuild / shard",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for n in SIZES:
        for layout in LAYOUTS:
            plan = Plan.of(n, layout, hosts)
            cells = [
                f"{n:,}",
                layout.name,
                human_bytes(n * layout.stored_dims * 4),
                human_bytes(n * plan.costs.page_cache_per_item),
                f"{plan.items_per_shard:,}",
                f"{plan.shards:,}",
                f"{plan.hosts:,}",
                f"{plan.hosts_steady:,}",
                f"{plan.query_ms:.0f} ms",
                human_seconds(plan.rebuild_seconds),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def changes(hosts: Hosts) -> list[str]:
    """What changes from one size to the next, from the plans (no number typed by hand)."""
    full, projected, reduced = LAYOUTS
    lines = []
    for n in SIZES:
        f, p, r = (Plan.of(n, layout, hosts) for layout in (full, projected, reduced))
        text = (
            f"- **{n:,} images**: 2048-d Annoy takes {f.shards} shards on {f.hosts} "
            f"host{'s' if f.hosts > 1 else ''}, query p50 {f.query_ms:.0f} ms, of which "
            f"{f.fan_out_ms:.0f} ms is the client calling every shard."
        )
        if f.hosts > 1:
            text += (
                f" `--project-dims 256` keeps the 2048-d vectors with an exact re-rank on "
                f"{p.shards} shards ({p.hosts} hosts: a smaller build peak per item; recall@10 "
                f"{PROJECTED_RECALL} on untrained real-photo vectors); the reduced 256-d space "
                f"needs {r.shards} shards on {r.hosts} hosts ({r.query_ms:.0f} ms) but keeps "
                f"only {PCA_256_RECALL} of the full space's top-10 (untrained weights): measure "
                "both with your weights (`imagesim reducer eval`, `make bench`) first."
            )
        if f.fan_out_ms > f.query_ms / 2:
            text += (
                " The fan-out now dominates: fewer, larger shards (bigger hosts and pods: "
                "`--host-gib`, `--shard-pod-gib`) or the reduced space cut it; shard calls "
                "from several client processes would too."
            )
        if f.hosts > 2 * f.hosts_steady:
            text += (
                f" Hosts are sized by the build peak ({f.hosts} hosts; {f.hosts_steady} would "
                "hold the index files): a build's peak counts the pages of the index file "
                "Annoy writes."
            )
        lines.append(text)
    return lines


def sources(hosts: Hosts) -> list[str]:
    lines = [
        f"Hosts count shard pods only (Embedders and web pods come on top): shard pods of "
        f"{hosts.shard_pod_gib:g} GiB, {hosts.pods_per_host} per "
        f"{hosts.host_gib:g} GiB host ({hosts.reserved_gib:g} GiB left to the system); a "
        f"shard's build peak may use {POD_USABLE:.0%} of its pod. Per item, from "
        "deploy/measured/ (deploy/measure_shard.py or the benchmark's scale section, 100 "
        "trees, 2 shared cores):",
        "",
    ]
    for layout in LAYOUTS:
        c = ShardCosts.of(layout)
        measured = layout.measured()
        lines.append(
            f"- {layout.name} ({layout.measured_file}, {measured['cpu']}, "
            f"{measured['date']}): build peak {c.build_peak_intercept / MiB:,.0f} MiB + "
            f"{c.build_peak_per_item:,.0f} B/item; index files {c.page_cache_per_item:,.0f} "
            f"B/item; data volume {c.disk_per_item:,.0f} B/item; search p50 through gRPC "
            f"{c.search_ms_at[1]:.2f} ms at {c.search_ms_at[0]:,.0f} items "
            f"(+{c.search_ms_per_doubling:.2f} ms per doubling); build "
            f"{c.build_seconds_at[1]:.0f} s at {c.build_seconds_at[0]:,.0f} items."
        )
    lines += [
        f"- Query p50: the measured {QUERY_2_SHARDS_MS} ms of an image -> top-10 over 2 shards "
        "of 12,500 items (docs/performance.md, OpenVINO bf16 on 2 shared cores), with that "
        "shard size's search replaced by the layout's at the plan's shard size, plus "
        f"{CALL_OVERHEAD_MS} ms per shard beyond 2 (docs/performance.md: loopback round trip; "
        "one client process issues every call). Network latency between hosts is not included.",
    ]
    lines += [f"- {r.name}: {r.source}." for r in RUNTIMES]
    lines.append(
        f"- GPU: an estimate, not a measurement: {GPU_FLOP_PER_IMAGE / 1e9:.1f} GFLOP per "
        f"image (counted: docs/performance.md) on a {GPU_PEAK_FLOPS / 1e12:.0f} TFLOP/s "
        "(fp16, T4-class) GPU at "
        f"{GPU_UTILISATION:.0%} of peak; JPEG decode and resize ({DECODE_SECONDS * 1000:.2f} ms "
        "per image, docs/performance.md) stay on CPU cores."
    )
    return lines


def report(hosts: Hosts) -> str:
    lines = ["Embedding, CPU core-hours (one pass over the collection):", ""]
    lines += embedding_table()
    lines += ["", "Storing and serving:", ""]
    lines += serving_table(hosts)
    lines += ["", "What changes with size:", ""]
    lines += changes(hosts)
    lines += [""]
    lines += sources(hosts)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host-gib", type=float, default=Hosts.host_gib)
    parser.add_argument("--reserved-gib", type=float, default=Hosts.reserved_gib)
    parser.add_argument("--shard-pod-gib", type=float, default=Hosts.shard_pod_gib)
    args = parser.parse_args(argv)
    hosts = Hosts(args.host_gib, args.reserved_gib, args.shard_pod_gib)
    if hosts.pods_per_host < 1:
        parser.error("a shard pod must fit on a host")
    print(report(hosts), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
