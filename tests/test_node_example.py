"""A second language: the Node.js example loads protos/ directly and calls both services."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from imagesim.client.embedder_client import EmbedderClient
from imagesim.client.index_client import IndexClient, ItemToAdd

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "node"


def test_node_example_embeds_and_searches(embedder_server, start_shard, photos):
    if shutil.which("node") is None:
        pytest.fail("Node.js is needed for this test (the README lists it)")
    assert (EXAMPLE / "node_modules" / "@grpc" / "grpc-js").is_dir(), "run `make test`"
    shard = start_shard(2048)
    names = ["astronaut.jpg", "coffee.jpg", "rocket.jpg", "chelsea.jpg"]
    with EmbedderClient(embedder_server.address) as embedder, IndexClient(shard.address) as index:
        index.add([ItemToAdd(n, embedder.embed((photos / "real" / n).read_bytes())) for n in names])
        python_vector = embedder.embed((photos / "real" / "rocket.jpg").read_bytes())
    result = subprocess.run(
        [
            "node",
            str(EXAMPLE / "embed_and_search.js"),
            str(photos / "real" / "rocket.jpg"),
            embedder_server.address,
            shard.address,
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["dimension"] == len(python_vector) == 2048
    assert out["neighbors"][0]["key"] == "rocket.jpg"
    assert out["neighbors"][0]["distance"] == pytest.approx(0.0, abs=1e-3)
    assert len(out["neighbors"]) == 3


def test_node_example_reports_grpc_errors(embedder_server, start_shard):
    shard = start_shard(2048)
    result = subprocess.run(
        [
            "node",
            str(EXAMPLE / "embed_and_search.js"),
            __file__,
            embedder_server.address,
            shard.address,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: INVALID_ARGUMENT: cannot decode image")
