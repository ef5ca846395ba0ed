"""`make bench` section `scale` (opt-in: `python -m bench.run --only scale`): one shard
process per point, e.g. 100k, 300k and 1M items x 2048-d with --project-dims 256 and 1M x 256-d.

    python -m bench.scale [--points 100000x2048/256,1000000x256] [--out .bench/scale.json]

Per point, through gRPC against a real `imagesim-index` (100 trees, no automatic build):
ingest rate through Add (batches of 1,000; the time of the calls, not of making the
vectors), peak RSS after ingest, build time and the build's own peak RSS (VmHWM reset just
before it via /proc/PID/clear_refs), then a restart: idle RSS, disk, search p50/p99 at k=10
over 200 queries, recall@10 against an exact numpy top-10 (computed while ingesting, chunk by
chunk: the data never exists whole) and the ratio of the found neighbours' mean distance to the
exact ones' (how far a miss is from what it missed), and the near-duplicate finder's
throughput over the first items it scans. Data: structured vectors (tests.support.vectors),
generated 1,000 at a time. Each point's row is printed and appended to the JSON file as soon as
it is done.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.common import Machine, percentile
from bench.duplicates import NEIGHBORS, THRESHOLD
from imagesim import protocol
from imagesim.client.index_client import IndexClient
from imagesim.pca import l2_normalise
from imagesim.types import ItemToAdd
from imagesim.v1 import index_pb2
from tests.support.launch import ServerProcess, start_index
from tests.support.vectors import structured

BATCH = 1000
QUERIES = 200
K = 10
DUPLICATES_ITEMS = 5_000  # items the duplicate finder scans before it is stopped
DEFAULT_POINTS = "100000x2048/256,300000x2048/256,1000000x2048/256,1000000x256"
MB = 1024 * 1024


@dataclass
class ScaleRow:
    items: int
    dims: int
    project_dims: int
    ingest_items_s: float
    ingest_peak_rss_mb: float
    build_s: float
    build_peak_rss_mb: float
    build_peak_kb_per_item: float
    index_file_mb: float  # index.ann
    idle_rss_mb: float  # restarted, before any search
    rss_after_searches_mb: float
    disk_mb: float  # the data directory, allocated blocks
    search_p50_ms: float
    search_p99_ms: float
    recall_at_10: float
    # mean distance of the 10 found / of the exact 10: 1.0 when every miss is a near-tie
    distance_ratio_at_10: float
    duplicates_items_s: float


def parse_points(text: str) -> list[tuple[int, int, int]]:
    """ "100000x2048/256,1000000x256" -> [(items, dims, project_dims)]."""
    points = []
    for part in text.split(","):
        size, _, project = part.partition("/")
        items, _, dims = size.partition("x")
        points.append((int(items), int(dims), int(project or 0)))
    return points


def status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def disk_mb(path: Path) -> float:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file()) / MB


class ExactTopK:
    """The exact angular top-k of each query over data seen chunk by chunk."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.units = l2_normalise(queries)
        self.k = k
        self.sims = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        self.ids = np.zeros((len(queries), 0), dtype=np.int64)

    def add(self, first: int, chunk: np.ndarray) -> None:
        sims = np.concatenate([self.sims, self.units @ l2_normalise(chunk).T], axis=1)
        ids = np.concatenate(
            [
                self.ids,
                np.broadcast_to(
                    np.arange(first, first + len(chunk)), (*sims.shape[:1], len(chunk))
                ),
            ],
            axis=1,
        )
        keep = np.argsort(-sims, axis=1, kind="stable")[:, : self.k]
        self.sims = np.take_along_axis(sims, keep, axis=1)
        self.ids = np.take_along_axis(ids, keep, axis=1)


def key(i: int) -> str:
    return f"img/{i:09d}.jpg"


def ingest(
    client: IndexClient, items: int, dims: int, truth: ExactTopK, log: Callable[[str], None]
) -> float:
    """Add every item; returns the seconds spent in Add calls."""
    spent = 0.0
    for first in range(0, items, BATCH):
        chunk = structured(min(BATCH, items - first), dims, seed=1000 + first // BATCH)
        truth.add(first, chunk)
        request = index_pb2.AddRequest(
            items=[
                protocol.item_message(ItemToAdd(key(first + i), row)) for i, row in enumerate(chunk)
            ]
        )
        started = time.perf_counter()
        client.stub.Add(request, timeout=600)
        spent += time.perf_counter() - started
        if (first // BATCH) % 100 == 99:
            log(f"  {first + BATCH:,} items, {(first + BATCH) / spent:,.0f} items/s")
    return spent


def duplicates_rate(address: str) -> float:
    """Items per second of the near-duplicate finder over its first DUPLICATES_ITEMS."""
    from imagesim.client.collection import Collection
    from imagesim.client.duplicates import find_duplicates
    from imagesim.errors import Cancelled

    scanned = [0]
    with Collection([address], timeout=600) as collection:
        collection.connect()
        started = time.perf_counter()
        with contextlib.suppress(Cancelled):
            find_duplicates(
                collection,
                THRESHOLD,
                NEIGHBORS,
                page_size=1024,
                timeout=600,
                progress=lambda n: scanned.__setitem__(0, n),
                should_stop=lambda: scanned[0] >= DUPLICATES_ITEMS,
            )
        return scanned[0] / (time.perf_counter() - started)


def measure(
    items: int, dims: int, project_dims: int, work: Path, log: Callable[[str], None]
) -> ScaleRow:
    data_dir = work / f"shard-{items}x{dims}-{project_dims}"
    shutil.rmtree(data_dir, ignore_errors=True)
    options = ["--project-dims", str(project_dims)] if project_dims else []
    queries = structured(QUERIES, dims, seed=7)
    truth = ExactTopK(queries, K)
    shard = start_index(
        work / f"{data_dir.name}.log", data_dir, dims, "--auto-build", "0", *options
    )
    try:
        pid = shard.process.pid
        with IndexClient(shard.address, timeout=3600) as client:
            spent = ingest(client, items, dims, truth, log)
            ingest_peak = status_mb(pid, "VmHWM")
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            log(f"  ingest {items / spent:,.0f} items/s, peak RSS {ingest_peak:,.0f} MB; building")
            started = time.perf_counter()
            client.build(timeout=4 * 3600)
            build_s = time.perf_counter() - started
            build_peak = status_mb(pid, "VmHWM")
    finally:
        shard.stop()
    generation = next(data_dir.glob("generations/gen-*"))
    log(f"  build {build_s:,.1f} s, peak RSS {build_peak:,.0f} MB; restarting")
    restarted = ServerProcess(
        "imagesim.index_server.main",
        ["--data", str(data_dir), "--dims", str(dims), *options],
        work / f"{data_dir.name}-restart.log",
    )
    try:
        restarted.wait_ready(1800)
        pid = restarted.process.pid
        idle = status_mb(pid, "VmRSS")
        times, found, ratios = [], [], []
        exact_mean = np.sqrt(np.clip(2.0 - 2.0 * truth.sims, 0.0, None)).mean(axis=1).tolist()
        with IndexClient(restarted.address, timeout=600) as client:
            for query in queries:
                started = time.perf_counter()
                hits = client.search(query)[0]
                times.append(time.perf_counter() - started)
                found.append([int(h.key[4:13]) for h in hits])
                exact = exact_mean[len(times) - 1]
                if hits and exact > 0:  # a query with no hit, or only twins, has no ratio
                    ratios.append(float(np.mean([h.distance for h in hits])) / exact)
        after = status_mb(pid, "VmRSS")
        recall = float(
            np.mean(
                [len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth.ids, strict=True)]
            )
        )
        log(f"  recall@10 {recall:.4f}; duplicate finder ...")
        duplicates = duplicates_rate(restarted.address)
    finally:
        restarted.stop()
    row = ScaleRow(
        items=items,
        dims=dims,
        project_dims=project_dims,
        ingest_items_s=round(items / spent, 1),
        ingest_peak_rss_mb=round(ingest_peak, 1),
        build_s=round(build_s, 1),
        build_peak_rss_mb=round(build_peak, 1),
        build_peak_kb_per_item=round(build_peak * 1024 / items, 2),
        index_file_mb=round((generation / "index.ann").stat().st_size / MB, 1),
        idle_rss_mb=round(idle, 1),
        rss_after_searches_mb=round(after, 1),
        disk_mb=round(disk_mb(data_dir), 1),
        search_p50_ms=round(percentile(times, 50) * 1000, 2),
        search_p99_ms=round(percentile(times, 99) * 1000, 2),
        recall_at_10=round(recall, 4),
        distance_ratio_at_10=round(float(np.mean(ratios)) if ratios else float("nan"), 4),
        duplicates_items_s=round(duplicates, 1),
    )
    shutil.rmtree(data_dir, ignore_errors=True)
    return row


def record(points: str, rows: list[ScaleRow]) -> dict:
    """The rows as deploy/capacity.py reads them (deploy/measured/), naming the machine."""
    machine = Machine.detect()
    return {
        "what": "one imagesim-index process per point, angular, 100 trees (server default), "
        "no automatic build (bench.scale)",
        "command": f"python -m bench.scale --points {points} --out FILE.json",
        "cpu": machine.describe(),
        "date": time.strftime("%Y-%m-%d"),
        "results": [asdict(r) for r in rows],
    }


def run(points: str, work: Path, out: Path | None, log: Callable[[str], None]) -> list[ScaleRow]:
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for items, dims, project_dims in parse_points(points):
        log(
            f"scale: {items:,} x {dims}"
            + (f", --project-dims {project_dims}" if project_dims else "")
        )
        row = measure(items, dims, project_dims, work, log)
        log("  " + json.dumps(asdict(row)))
        rows.append(row)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(record(points, rows), indent=1) + "\n")
    return rows


def describe(r: ScaleRow) -> str:
    what = f"{r.items:>9,} x {r.dims}" + (f" pca-{r.project_dims}" if r.project_dims else "")
    return (
        f"scale {what:<22} ingest {r.ingest_items_s:7,.0f}/s | build {r.build_s:7.1f} s, peak "
        f"{r.build_peak_rss_mb:7,.0f} MB ({r.build_peak_kb_per_item:.2f} KB/item) | idle "
        f"{r.idle_rss_mb:5,.0f} MB | disk {r.disk_mb:7,.0f} MB | p50 {r.search_p50_ms:.2f} ms "
        f"p99 {r.search_p99_ms:.2f} ms | recall@10 {r.recall_at_10:.4f} (distance ratio "
        f"{r.distance_ratio_at_10:.4f}) | duplicates "
        f"{r.duplicates_items_s:,.0f} items/s"
    )


def main(argv: list[str] | None = None) -> list[ScaleRow]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default=DEFAULT_POINTS)
    parser.add_argument("--work", type=Path, default=Path(".bench/run/scale"))
    parser.add_argument("--out", type=Path, default=Path(".bench/scale.json"))
    args = parser.parse_args(argv)
    began = time.perf_counter()
    rows = run(
        args.points,
        args.work,
        args.out,
        lambda m: print(f"[{time.perf_counter() - began:7.1f} s] {m}", flush=True),
    )
    for row in rows:
        print(describe(row))
    return rows


if __name__ == "__main__":
    main()
