"""Parquet dumps through the CLI with real servers: a gRPC dump to Parquet holds what the .npz
dump holds, and `index --from-dump` streams it into real shards, each row on its shard."""

from __future__ import annotations

import json

import numpy as np

from imagesim.bulk.parquet_dump import read_header, read_rows
from imagesim.client.dump import VectorDump
from imagesim.routing import home
from tests.support.cli import run_cli as imagesim


def test_parquet_dump_equals_npz_and_indexes_into_shards(
    embedder_server, photos, start_shard, tmp_path
):
    embedder = embedder_server.address
    parquet, npz = tmp_path / "v.parquet", tmp_path / "v.npz"
    for out in (parquet, npz):
        imagesim(
            "dump",
            str(photos),
            "--out",
            str(out),
            "--embedder",
            embedder,
            "--quiet",
            "--report",
            str(tmp_path / "failed.tsv"),
        )
    reference = VectorDump.load(npz)
    header = read_header(parquet)
    assert header.model_fingerprint == reference.model_fingerprint
    assert (header.space, header.dims) == ("full", 2048)
    rows = {k: (v, m) for k, v, m in read_rows(parquet)}
    assert set(rows) == set(reference.keys)
    for key, vector, meta in zip(
        reference.keys, reference.vectors, reference.metadata or [], strict=True
    ):
        np.testing.assert_allclose(rows[key][0], vector, rtol=1e-4, atol=1e-5)
        assert rows[key][1] == meta

    shards = [start_shard(name=f"s{n}") for n in range(2)]
    addresses = ",".join(s.address for s in shards)
    result = imagesim(
        "index", "--from-dump", str(parquet), "--shards", addresses, "--meta", "album=parquet"
    )
    assert f"indexed {len(rows)} of {len(rows)} images" in result.stdout
    stats = json.loads(imagesim("stats", "--shards", addresses, "--json").stdout)
    counts = {s["shard"]: s["count"] for s in stats["shards"]}
    assert sum(counts.values()) == len(rows) and min(counts.values()) > 0
    # every row went to the shard the collection's layout routes its key to
    layout = [s["shard_id"] for s in stats["shards"]]
    expected = dict.fromkeys(layout, 0)
    for key in rows:
        expected[home(key, layout)] += 1
    assert {s["shard_id"]: s["count"] for s in stats["shards"]} == expected
    # the items are searchable, with their metadata
    query = str(photos / "real" / "astronaut.jpg")
    answer = json.loads(
        imagesim(
            "query", query, "--embedder", embedder, "--shards", addresses, "--json", "--metadata"
        ).stdout
    )
    top = answer[0]["neighbors"][0]
    assert top["key"] == query
    assert top["metadata"]["album"] == "parquet" and int(top["metadata"]["width"]) > 0
