"""The Index shard as a real process: status codes, persistence, graceful shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest

from imagesim.client.index_client import IndexClient, ItemToAdd
from imagesim.errors import FailedPrecondition, InvalidArgument, NotFound
from imagesim.v1 import index_pb2

DIMS = 64


def vectors(n: int, seed: int = 0, dims: int = DIMS) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dims)).astype(np.float32)


def items(data: np.ndarray, prefix: str = "k") -> list[ItemToAdd]:
    return [ItemToAdd(f"{prefix}{i}", v, {"n": str(i)}) for i, v in enumerate(data)]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda c: c.search(np.ones(DIMS - 1), 3), "dimension 63; this shard holds 64-d"),
        (lambda c: c.search(np.full(DIMS, np.nan), 3), "NaN"),
        (lambda c: c.search(np.ones(DIMS), 0), "k must be > 0"),
        (lambda c: c.search(np.ones(DIMS), -2), "k must be > 0"),
        (lambda c: c.add([ItemToAdd("", np.ones(DIMS))]), "empty key"),
        (lambda c: c.add([ItemToAdd("x", np.ones(DIMS + 5))]), "dimension 69"),
        (lambda c: c.add([ItemToAdd("x", np.full(DIMS, np.inf))]), "infinite"),
    ],
)
def test_bad_requests_get_invalid_argument_and_the_shard_keeps_serving(start_shard, call, message):
    with IndexClient(start_shard(DIMS).address) as client:
        client.add(items(vectors(20)))
        with pytest.raises(InvalidArgument, match=message):
            call(client)
        assert client.search(vectors(20)[4], 1)[0].key == "k4"
        assert client.stats().count == 20


def test_get_add_build_search_stats_and_not_found(start_shard):
    with IndexClient(start_shard(DIMS).address) as client:
        data = vectors(300)
        reply = client.add(items(data))
        assert (reply.added, reply.replaced, reply.count) == (300, 0, 300)
        assert client.search(data[10], 1)[0].key == "k10"  # before any build: exact
        built = client.build()
        assert (built.generation, built.count, built.trees) == (1, 300, 100)
        hits = client.search(data[10], 5, include_metadata=True)
        assert hits[0].key == "k10" and hits[0].distance == pytest.approx(0, abs=1e-6)
        assert hits[0].metadata == {"n": "10"}
        item = client.get("k10")
        np.testing.assert_array_equal(np.asarray(item.vector, dtype=np.float32), data[10])
        with pytest.raises(NotFound, match="'missing'"):
            client.get("missing")
        stats = client.stats()
        assert (stats.count, stats.dimension, stats.metric, stats.built) == (
            300,
            64,
            "angular",
            True,
        )
        assert stats.index_bytes > 300 * DIMS * 4


def test_bulk_add_stream(start_shard):
    with IndexClient(start_shard(DIMS).address) as client:
        data = vectors(100)
        chunks = [
            index_pb2.AddRequest(items=[i.to_proto() for i in items(data)[j : j + 25]])
            for j in range(0, 100, 25)
        ]
        reply = client.stub.AddStream(iter(chunks), timeout=30)
        assert (reply.added, reply.count) == (100, 100)


def test_restart_serves_the_saved_index(start_shard, tmp_path):
    data_dir = tmp_path / "persisted"
    first = start_shard(DIMS, data=data_dir, name="first")
    data = vectors(500)
    with IndexClient(first.address) as client:
        client.add(items(data))
        client.build()
        client.add([ItemToAdd("after-build", data[0] * 3)])
    assert first.stop() == 0
    second = start_shard(DIMS, data=data_dir, name="second")
    with IndexClient(second.address) as client:
        stats = client.stats()
        assert (stats.count, stats.built_count, stats.staged, stats.generation) == (501, 500, 1, 1)
        assert {h.key for h in client.search(data[0], 2)} == {"k0", "after-build"}


def test_shard_refuses_to_start_with_another_layout(start_shard, tmp_path):
    data_dir = tmp_path / "layout"
    start_shard(DIMS, data=data_dir, name="made").stop()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "imagesim.index_server.main",
            "--port",
            "0",
            "--data",
            str(data_dir),
            "--dims",
            "128",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "holds a 64-d angular shard" in result.stderr


def test_sigterm_lets_an_in_flight_build_finish(start_shard):
    server = start_shard(256, "--grace", "30")
    with IndexClient(server.address) as client:
        client.add(items(vectors(20_000, dims=256)))
        build = client.stub.Build.future(index_pb2.BuildRequest(trees=200), timeout=120)
        deadline = time.monotonic() + 30
        while not client.stats().building:  # the build is under way on the server
            assert time.monotonic() < deadline and not build.done()
            time.sleep(0.01)
        server.process.send_signal(signal.SIGTERM)
        reply = build.result()  # completes although the server is shutting down
        assert reply.count == 20_000
    assert server.process.wait(60) == 0
    with pytest.raises(grpc.RpcError):
        IndexClient(server.address, timeout=2).stub.Stats(index_pb2.StatsRequest(), timeout=2)


def test_collection_refuses_mismatched_shards(start_shard):
    from imagesim.client.collection import Collection

    a = start_shard(DIMS, name="a")
    b = start_shard(DIMS * 2, name="b")
    with (
        Collection([a.address, b.address]) as collection,
        pytest.raises(FailedPrecondition, match="disagree"),
    ):
        collection.check_layout()
    with Collection([a.address]) as collection, pytest.raises(FailedPrecondition, match="2048"):
        collection.check_layout(2048)
