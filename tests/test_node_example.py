"""A second language: the Node.js example loads protos/ directly, embeds, searches every shard
in one batched call each, routes a Get with the collection's rule, reads error reasons."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from imagesim.client.collection import Collection
from imagesim.client.embedder_client import EmbedderClient
from imagesim.types import ItemToAdd

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "node"


def node(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    if shutil.which("node") is None:
        pytest.fail("Node.js is needed for this test (the README lists it)")
    assert (EXAMPLE / "node_modules" / "@grpc" / "grpc-js").is_dir(), "run `make test`"
    return subprocess.run(
        ["node", str(EXAMPLE / "embed_and_search.js"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_node_example_embeds_searches_every_shard_and_routes_a_get(
    embedder_server, start_shard, photos
):
    # Fixed shard ids (generated ones would put all six keys on one shard 1 run in 32).
    shards = [start_shard(2048, "--shard-id", f"n{i}", name=f"n{i}") for i in range(2)]
    addresses = ",".join(s.address for s in shards)
    names = ["astronaut.jpg", "coffee.jpg", "rocket.jpg", "chelsea.jpg", "horse.jpg", "coins.jpg"]
    with EmbedderClient(embedder_server.address) as embedder, Collection(addresses.split(",")) as c:
        c.add(
            [
                ItemToAdd(n, embedder.embed((photos / "real" / n).read_bytes()), {"name": n})
                for n in names
            ]
        )
        assert min(s.count for s in c.stats()) >= 1  # both shards hold items
        owner = c.shard_for("coffee.jpg")
        owner_id = owner.stats().shard_id
    images = [str(photos / "real" / "rocket.jpg"), str(photos / "real" / "horse.jpg")]
    result = node(
        "--embedder",
        embedder_server.address,
        "--shards",
        addresses,
        "--k",
        "3",
        "--get",
        "coffee.jpg",
        *images,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["dimension"] == 2048
    assert [r["neighbors"][0]["key"] for r in out["results"]] == ["rocket.jpg", "horse.jpg"]
    assert all(len(r["neighbors"]) == 3 for r in out["results"])
    assert out["results"][0]["neighbors"][0]["distance"] == pytest.approx(0.0, abs=1e-3)
    assert {n["shard"] for r in out["results"] for n in r["neighbors"]} <= set(addresses.split(","))
    assert out["item"] == {
        "key": "coffee.jpg",
        "shard_id": owner_id,
        "dimension": 2048,
        "metadata": {"name": "coffee.jpg"},
    }


def test_node_example_reports_the_error_reason(embedder_server, start_shard):
    shard = start_shard(2048)
    result = node("--embedder", embedder_server.address, "--shards", shard.address, __file__)
    assert result.returncode == 1
    assert result.stderr.startswith("error: INVALID_ARGUMENT (IMAGE_UNDECODABLE): cannot decode")


def test_node_example_with_tls_and_an_api_key(secure_embedder, start_shard, pki, photos):
    shard = start_shard(2048, *pki.server_args(), security=pki.security())
    image = photos / "real" / "rocket.jpg"
    with (
        EmbedderClient(secure_embedder.address, 60, pki.security("read")) as embedder,
        # admin: the first write records the collection layout (SetLayout)
        Collection([shard.address], security=pki.security("admin")) as collection,
    ):
        collection.add([ItemToAdd("rocket.jpg", embedder.embed(image.read_bytes()))])
    args = ["--embedder", secure_embedder.address, "--shards", shard.address, "--k", "1"]
    # Node warns when TLS is asked to check an IP address: check the certificate's name.
    tls = {"IMAGESIM_TLS_CA": str(pki.ca), "IMAGESIM_TLS_SERVER_NAME": "localhost"}
    result = node(*args, str(image), env={**tls, "IMAGESIM_API_KEY": pki.keys["read"]})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["results"][0]["neighbors"][0]["key"] == "rocket.jpg"
    no_key = node(*args, str(image), env=tls)
    assert no_key.returncode == 1
    assert no_key.stderr.startswith(
        "error: UNAUTHENTICATED (UNAUTHENTICATED_CALLER): an API key is needed"
    )
    plaintext = node(*args, str(image), env={"IMAGESIM_API_KEY": pki.keys["read"]})
    assert plaintext.returncode == 1 and plaintext.stderr.startswith("error: UNAVAILABLE")
