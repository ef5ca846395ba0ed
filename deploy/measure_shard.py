"""Measure what one `imagesim-index` shard process costs in memory, disk and build time.

The capacity model (deploy/capacity.py) and the Kubernetes resource requests
(deploy/k8s/base/index-statefulset.yaml) are sized from these figures. For each size it
starts a real shard process (2048-d unless --dims, angular, the server's default 100 trees, no
automatic build), adds structured vectors (tests.support.vectors: clustered, ReLU-like)
through gRPC, builds once, and reads from /proc:

- peak RSS of the process over adding and building (VmHWM): what a pod's memory limit must
  allow while a shard builds (the staged vectors live in a scratch file's page cache; the
  build streams blocks of items, and the pages of the index file Annoy writes count);
- RSS after a restart and 200 searches (the Annoy file is memory-mapped; only touched pages
  count) and the Annoy file's size (the whole file is what must stay in page cache for steady
  search latency);
- the data directory's size on disk (SQLite items + the generation).

Usage: python deploy/measure_shard.py [--sizes 12500,25000,50000] [--dims 2048]
       [--project-dims 256] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo: tests.support
from imagesim.client.index_client import IndexClient
from imagesim.types import ItemToAdd
from tests.support.launch import ServerProcess, start_index
from tests.support.vectors import structured

CHUNK = 1024
MiB = 1024 * 1024


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM and friends of a process, bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.startswith("Vm") or name.startswith("Rss"):
            number, _, unit = rest.strip().partition(" ")
            values[name] = int(number) * (1024 if unit == "kB" else 1)
    return values


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor()


def measure(count: int, dims: int, options: list[str], work: Path) -> dict[str, float]:
    data_dir = work / f"shard-{dims}-{count}"
    vectors = structured(count, dims, seed=1)
    log = work / f"{data_dir.name}.log"
    shard = start_index(log, data_dir, dims, "--auto-build", "0", *options)
    try:
        with IndexClient(shard.address, timeout=600) as client:
            started = time.perf_counter()
            for start in range(0, count, CHUNK):
                stop = min(start + CHUNK, count)
                client.add(ItemToAdd(f"img/{i:08d}.jpg", vectors[i]) for i in range(start, stop))
            add_seconds = time.perf_counter() - started
            staged = proc_status(shard.process.pid)["VmRSS"]
            started = time.perf_counter()
            client.build()
            build_seconds = time.perf_counter() - started
            peak = proc_status(shard.process.pid)["VmHWM"]
    finally:
        shard.stop()
    generation = next(data_dir.glob("generations/gen-*"))
    annoy_file = (generation / "index.ann").stat().st_size
    restarted = ServerProcess(
        "imagesim.index_server.main",
        ["--data", str(data_dir), "--dims", str(dims), *options],
        work / f"{data_dir.name}-restart.log",
    )
    try:
        restarted.wait_ready(120)
        fresh = proc_status(restarted.process.pid)["VmRSS"]
        queries = structured(200, dims, seed=2)
        with IndexClient(restarted.address, timeout=60) as client:
            times = []
            for query in queries:
                t = time.perf_counter()
                client.search(query)
                times.append(time.perf_counter() - t)
        searched = proc_status(restarted.process.pid)["VmRSS"]
    finally:
        restarted.stop()
    return {
        "items": count,
        "add_seconds": round(add_seconds, 1),
        "build_seconds": round(build_seconds, 2),
        "rss_all_staged_mib": round(staged / MiB, 1),
        "peak_rss_mib": round(peak / MiB, 1),
        "rss_restarted_mib": round(fresh / MiB, 1),
        "rss_after_200_searches_mib": round(searched / MiB, 1),
        "search_p50_ms": round(float(np.median(times)) * 1000, 2),
        "annoy_file_mib": round(annoy_file / MiB, 1),
        "generation_mib": round(tree_bytes(generation) / MiB, 1),
        "data_dir_mib": round(tree_bytes(data_dir) / MiB, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="12500,25000,50000")
    parser.add_argument("--dims", type=int, default=2048)
    parser.add_argument(
        "--project-dims", type=int, default=0, help="the shard's --project-dims (default off)"
    )
    parser.add_argument("--out", type=Path, help="also write the results here (JSON)")
    args = parser.parse_args()
    options = ["--project-dims", str(args.project_dims)] if args.project_dims else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="imagesim-measure-") as tmp:
        for count in (int(s) for s in args.sizes.split(",")):
            row = measure(count, args.dims, options, Path(tmp))
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {
        "what": f"one imagesim-index process, {args.dims}-d angular, 100 trees (server default)"
        + (f", --project-dims {args.project_dims}" if args.project_dims else ""),
        "command": "python deploy/measure_shard.py " + " ".join(sys.argv[1:]),
        "cpu": cpu_name(),
        "date": time.strftime("%Y-%m-%d"),
        "results": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
