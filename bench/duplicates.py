"""`make bench` section: near-duplicate groups of a 25,000 x 2048 collection.

    python -m bench.duplicates [--quick] [--out .bench/duplicates.json]

Data: structured vectors like pooled CNN features (tests.support.vectors) with planted
near-duplicates: ~1,000 small groups (1-4 copies at noise 0.01-0.08; every other group a chain,
each copy made from the one before, so its ends can be farther apart than the threshold) and
20 bursts of 15 copies (more than the 10 neighbours each item looks at). Natural neighbours
lie >= 0.39 apart; the threshold is 0.1.

The finder (imagesim.client.duplicates through a Collection of 2 shard processes, Annoy 50
trees) runs in a child process, which reports its time and peak RSS (VmHWM: nothing else of the
benchmark counts), next to the RSS it had before the scan. Agreement with an exact
computation on a sample of 1,000 items: the exact group of each sampled item (breadth-first
over exact distances to all n) compared with the finder's group; the share of exact
within-threshold pairs the finder put together; planted groups recovered whole.
--quick: 1,500 x 256, 1 shard, sample 300 (CI smoke test: checks agreement, not speed).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tests.support.vectors import structured

THRESHOLD = 0.1
NEIGHBORS = 10


@dataclass
class DuplicatesResult:
    items: int
    dims: int
    shards: int
    max_distance: float
    neighbors: int
    seconds: float  # the finder: scan + batched searches + union-find
    items_per_second: float
    peak_rss_mb: float  # the finder's process, at its peak
    rss_before_mb: float  # the same process after imports and connecting, before the scan
    n_by_n_float32_mb: float  # what an all-pairs distance matrix would need
    groups: int
    duplicated_items: int
    sample: int
    sample_groups_exact: float  # sampled items whose group equals their exact group
    pair_recall: float  # exact within-threshold pairs (from sampled items) in one group
    planted_recovered: float  # planted groups found whole (in one group)
    build_seconds: float


def planted(count: int, dims: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[list[int]]]:
    """Vectors with planted near-duplicate groups; returns keys, vectors, planted groups."""
    rng = np.random.default_rng(seed)
    small_groups = count // 25
    bursts = 20 if count >= 10_000 else 3
    copies_per_group = rng.integers(1, 5, size=small_groups)
    copies = int(copies_per_group.sum()) + 15 * bursts
    base = structured(count - copies, dims, seed=seed)
    vectors = [base]
    groups: list[list[int]] = []
    next_id = len(base)
    sources = rng.choice(len(base), size=small_groups + bursts, replace=False)
    for g, source in enumerate(sources):
        burst = g >= small_groups
        n = 15 if burst else int(copies_per_group[g])
        sigma = 0.02 if burst else float(rng.uniform(0.01, 0.08))
        chain = not burst and g % 2 == 1
        member_ids = [int(source)]
        previous = base[source]
        made = []
        for _ in range(n):
            origin = previous if chain else base[source]
            copy = np.maximum(origin + rng.normal(0, sigma, size=dims), 1e-3).astype(np.float32)
            made.append(copy)
            member_ids.append(next_id)
            next_id += 1
            previous = copy
        vectors.append(np.stack(made))
        groups.append(member_ids)
    matrix = np.vstack(vectors)
    keys = [f"img/{i:06d}.jpg" for i in range(len(matrix))]
    return keys, matrix, groups


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def exact_group(start: int, units: np.ndarray, threshold: float) -> set[int]:
    """Breadth-first over exact angular distances to every item: the connected component of
    `start` in the all-pairs threshold graph."""
    limit = 1.0 - threshold * threshold / 2.0  # angular d <= t  <=>  cos >= 1 - t^2/2
    seen, frontier = {start}, [start]
    while frontier:
        cosines = units[frontier] @ units.T
        found = set(np.nonzero(cosines >= limit)[1].tolist()) - seen
        seen |= found
        frontier = sorted(found)
    return seen


def agreement(
    keys: list[str],
    vectors: np.ndarray,
    groups: list[list[int]],
    found: list[list[str]],
    threshold: float,
    sample: int,
) -> tuple[float, float, float]:
    units = unit(vectors.astype(np.float32))
    index = {k: i for i, k in enumerate(keys)}
    group_of: dict[int, frozenset[int]] = {}
    for members in found:
        ids = frozenset(index[k] for k in members)
        for i in ids:
            group_of[i] = ids
    rng = np.random.default_rng(7)
    # Half the sample from planted members, half from everywhere: both kinds are checked.
    planted_ids = [i for g in groups for i in g]
    picks = set(rng.choice(planted_ids, size=sample // 2, replace=False).tolist())
    while len(picks) < sample:
        picks.add(int(rng.integers(len(keys))))
    same = pairs = kept = 0
    limit = 1.0 - threshold * threshold / 2.0
    for i in sorted(picks):
        exact = exact_group(i, units, threshold)
        mine = group_of.get(i, frozenset({i}))
        same += exact == mine
        direct = set(np.nonzero(units[i] @ units.T >= limit)[0].tolist()) - {i}
        pairs += len(direct)
        kept += len(direct & mine)
    whole = sum(1 for g in groups if len({group_of.get(i, frozenset({i})) for i in g}) == 1)
    return same / len(picks), kept / pairs if pairs else 1.0, whole / len(groups)


def memory_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, MB. Not ru_maxrss: Linux carries that over
    from the parent across fork and exec, so a child would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort


def worker(shards: list[str], threshold: float, neighbors: int, out: Path) -> None:
    """Child process: connect, find the groups, write them with this process's figures."""
    from imagesim.client.collection import Collection
    from imagesim.client.duplicates import find_duplicates

    with Collection(shards, timeout=600) as collection:
        collection.connect()
        before = memory_mb("VmRSS")
        started = time.perf_counter()
        report = find_duplicates(collection, threshold, neighbors, page_size=1024, timeout=600)
        seconds = time.perf_counter() - started
    peak = memory_mb("VmHWM")
    out.write_text(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": peak,
                "rss_before_mb": before,
                "items": report.items,
                "groups": [list(g.keys) for g in report.groups],
            }
        )
    )


def run(quick: bool, work: Path, count: int = 25_000) -> DuplicatesResult:
    from imagesim.client.collection import Collection
    from imagesim.types import ItemToAdd
    from tests.support.launch import start_index

    count, dims, shard_count, sample = (1500, 256, 1, 300) if quick else (count, 2048, 2, 1000)
    keys, vectors, groups = planted(count, dims)
    work.mkdir(parents=True, exist_ok=True)
    servers = []
    try:
        for n in range(shard_count):
            shutil.rmtree(work / f"shard{n}", ignore_errors=True)
            servers.append(
                start_index(work / f"shard{n}.log", work / f"shard{n}", dims, "--auto-build", "0")
            )
        addresses = [s.address for s in servers]
        with Collection(addresses, timeout=600) as collection:
            for start in range(0, len(keys), 2000):
                collection.add(
                    ItemToAdd(keys[i], vectors[i])
                    for i in range(start, min(start + 2000, len(keys)))
                )
            started = time.perf_counter()
            collection.build(trees=50)
            build_seconds = time.perf_counter() - started
        out = work / "groups.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.duplicates",
                "--worker",
                ",".join(addresses),
                "--out",
                str(out),
            ],
            check=True,
        )
    finally:
        for server in servers:
            server.stop()
    found = json.loads(out.read_text())
    exact, recall, whole = agreement(keys, vectors, groups, found["groups"], THRESHOLD, sample)
    return DuplicatesResult(
        items=found["items"],
        dims=dims,
        shards=shard_count,
        max_distance=THRESHOLD,
        neighbors=NEIGHBORS,
        seconds=found["seconds"],
        items_per_second=found["items"] / found["seconds"],
        peak_rss_mb=found["peak_rss_mb"],
        rss_before_mb=found["rss_before_mb"],
        n_by_n_float32_mb=count * count * 4 / 2**20,
        groups=len(found["groups"]),
        duplicated_items=sum(len(g) for g in found["groups"]),
        sample=sample,
        sample_groups_exact=exact,
        pair_recall=recall,
        planted_recovered=whole,
        build_seconds=build_seconds,
    )


def describe(r: DuplicatesResult) -> str:
    return (
        f"duplicates {r.items:,} x {r.dims} over {r.shards} shards (threshold {r.max_distance}, "
        f"{r.neighbors} neighbours): {r.seconds:.1f} s ({r.items_per_second:,.0f} items/s), "
        f"finder peak RSS {r.peak_rss_mb:.0f} MB ({r.rss_before_mb:.0f} MB before the scan; "
        f"an n x n float32 matrix would be {r.n_by_n_float32_mb:,.0f} MB); {r.groups} groups, "
        f"{r.duplicated_items} items; sample of {r.sample}: groups exact "
        f"{r.sample_groups_exact:.3f}, pair recall {r.pair_recall:.3f}; planted groups whole "
        f"{r.planted_recovered:.3f}"
    )


def main(argv: list[str] | None = None) -> DuplicatesResult | None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(".bench/duplicates.json"))
    parser.add_argument("--work", type=Path, default=Path(".bench/duplicates"))
    parser.add_argument(
        "--count", type=int, default=25_000, help="items (default 25,000; to see how it scales)"
    )
    parser.add_argument("--worker", metavar="SHARDS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker.split(","), THRESHOLD, NEIGHBORS, args.out)
        return None
    from bench.common import Machine

    result = run(args.quick, args.work, args.count)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = Machine.detect()
    record = {"quick": args.quick, "machine": asdict(machine), **asdict(result)}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"machine: {machine.describe()}")
    print(describe(result))
    return result


if __name__ == "__main__":
    main()
