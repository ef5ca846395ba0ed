"""Index shard processes for the benchmark, filled through the client library."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from imagesim.client.collection import Collection
from imagesim.types import ItemToAdd
from tests.support.launch import ServerProcess, start_index


def start_shards(
    work: Path,
    tag: str,
    count: int,
    data: np.ndarray,
    project_dims: int = 0,
    extra: dict[str, np.ndarray] | None = None,
) -> list[ServerProcess]:
    """`count` fresh shards holding `data` as keys v0, v1, ... (plus `extra` by key), built
    with 50 trees."""
    servers = []
    try:
        for n in range(count):
            data_dir = work / f"{tag}{n}"
            shutil.rmtree(data_dir, ignore_errors=True)
            servers.append(
                start_index(
                    work / f"{tag}{n}.log",
                    data_dir,
                    data.shape[1],
                    "--auto-build",
                    "0",
                    "--project-dims",
                    str(project_dims),
                )
            )
        items = [ItemToAdd(f"v{i}", data[i]) for i in range(len(data))]
        items += [ItemToAdd(key, vector) for key, vector in (extra or {}).items()]
        with Collection([s.address for s in servers], timeout=600) as collection:
            for start in range(0, len(items), 2000):
                collection.add(items[start : start + 2000])
            collection.build(trees=50)
    except BaseException:
        stop_all(servers)
        raise
    return servers


def stop_all(servers: list[ServerProcess]) -> None:
    for server in servers:
        server.stop()
