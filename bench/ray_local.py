"""Bulk embedding on a local Ray (`imagesim dump --engine ray`) against the gRPC `dump` to one
Embedder, on the same photos, runtime and precision, both writing Parquet; rounds interleaved.

The gRPC figure is steady state (the server is already up, the client runs in-process). Each
Ray run is the CLI as a user runs it, in a process of its own (Python start, a local Ray, the
model loaded in its actor, the embedding): reported whole, and as start-up (a run on one photo)
plus the rate after it, (photos - 1) / (whole - start-up). The last is an upper figure: Ray
Data's read and decode tasks run while the actor loads the model, so part of the decoding of a
few hundred photos is hidden in the start-up. The vectors of both engines are compared (they
must be the same model's).
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import Config, Workload, median_ratio, start_timed
from imagesim.bulk.parquet_dump import read_rows
from imagesim.client.dump import dump_folder_parquet
from imagesim.client.embedder_client import EmbedderClient
from imagesim.recall import row_cosines
from tests.support.cli import run_cli


@dataclass
class RayResult:
    config: str
    images: int
    actors: int
    batch_size: int
    grpc_dump_img_s: float
    ray_img_s: float  # whole run: process and local Ray start, model load, embedding
    ray_start_s: float  # a run on one photo
    ray_after_start_img_s: float  # an upper figure (see the module docstring)
    ratio_whole_vs_grpc: float
    min_cosine_ray_vs_grpc: float
    rounds: dict[str, list[float]]


def _fresh(path: Path) -> Path:
    """`path` with no dump (or parts of one) left from an earlier round."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    shutil.rmtree(path.with_name(f".{path.name}.parts"), ignore_errors=True)
    return path


def _ray_seconds(folder: Path, out: Path, config: Config, actors: int, batch_size: int) -> float:
    started = time.perf_counter()
    run_cli(
        "dump",
        str(folder),
        "--engine",
        "ray",
        "--out",
        str(_fresh(out)),
        "--weights",
        config.weights,
        "--runtime",
        config.runtime,
        "--precision",
        config.precision,
        "--actors",
        str(actors),
        "--batch-size",
        str(batch_size),
        "--quiet",
        "--report",
        str(out.with_suffix(".failed.tsv")),
    )
    return time.perf_counter() - started


def ray_vs_grpc(
    config: Config,
    work: Path,
    photos: Workload,
    rounds: int,
    actors: int = 1,
    batch_size: int = 32,
) -> RayResult:
    one = work / "ray-one-photo"
    one.mkdir(parents=True, exist_ok=True)
    (one / photos.paths[0].name).write_bytes(photos.jpegs[0])
    runs: dict[str, list[float]] = {"grpc": [], "ray": [], "ray_start_s": []}
    grpc_out, ray_out = work / "grpc-dump.parquet", work / "ray-dump.parquet"
    server, _ = start_timed(
        work / f"ray-bench-embedder-{config.runtime}.log", *config.server_args()
    )
    try:
        with EmbedderClient(server.address, timeout=600) as client:
            client.embed(photos.jpegs[0])
            for _ in range(rounds):
                started = time.perf_counter()
                _, report = dump_folder_parquet(
                    photos.folder, client, _fresh(grpc_out), progress=False
                )
                runs["grpc"].append(report.done / (time.perf_counter() - started))
                seconds = _ray_seconds(photos.folder, ray_out, config, actors, batch_size)
                runs["ray"].append(len(photos.paths) / seconds)
                runs["ray_start_s"].append(
                    _ray_seconds(one, work / "ray-one.parquet", config, actors, batch_size)
                )
    finally:
        server.stop()
    grpc_vectors = {k: v for k, v, _ in read_rows(grpc_out)}
    ray_rows = list(read_rows(ray_out))
    keys = [k for k, _, _ in ray_rows]
    cosines = row_cosines(
        np.stack([v for _, v, _ in ray_rows]), np.stack([grpc_vectors[k] for k in keys])
    )
    whole_s = statistics.median(len(photos.paths) / rate for rate in runs["ray"])
    start_s = statistics.median(runs["ray_start_s"])
    return RayResult(
        config=config.label,
        images=len(photos.paths),
        actors=actors,
        batch_size=batch_size,
        grpc_dump_img_s=statistics.median(runs["grpc"]),
        ray_img_s=statistics.median(runs["ray"]),
        ray_start_s=start_s,
        ray_after_start_img_s=(len(photos.paths) - 1) / max(whole_s - start_s, 1e-3),
        ratio_whole_vs_grpc=median_ratio(runs["ray"], runs["grpc"]),
        min_cosine_ray_vs_grpc=float(cosines.min()),
        rounds=runs,
    )
