"""The Index shard as a real process: status codes with reasons, limits, persistence, scan,
layouts, graceful shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
from grpc_status import rpc_status

from imagesim import protocol
from imagesim.client.index_client import IndexClient
from imagesim.client.rpc import error_info
from imagesim.enums import Metric
from imagesim.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, Reason
from imagesim.params import SearchParams
from imagesim.types import ItemToAdd, Layout
from imagesim.v1 import index_pb2

DIMS = 64


def vectors(n: int, seed: int = 0, dims: int = DIMS) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dims)).astype(np.float32)


def items(data: np.ndarray, prefix: str = "k") -> list[ItemToAdd]:
    return [
        ItemToAdd(f"{prefix}{i}", v, {"n": str(i), "parity": str(i % 2)})
        for i, v in enumerate(data)
    ]


def top(client: IndexClient, vector: np.ndarray, k: int = 1, **params) -> list:
    return client.search(vector, SearchParams(k=k, **params))[0]


@pytest.mark.parametrize(
    "call, reason",
    [
        (lambda c: top(c, np.ones(DIMS - 1), 3), Reason.DIMENSION_MISMATCH),
        (lambda c: top(c, np.full(DIMS, np.nan), 3), Reason.VECTOR_NOT_FINITE),
        (lambda c: top(c, np.ones(DIMS), 0), Reason.VALUE_OUT_OF_RANGE),
        (lambda c: top(c, np.ones(DIMS), 5000), Reason.VALUE_OUT_OF_RANGE),
        (lambda c: c.add([ItemToAdd("", np.ones(DIMS))]), Reason.KEY_EMPTY),
        (lambda c: c.add([ItemToAdd("x", np.ones(DIMS + 5))]), Reason.DIMENSION_MISMATCH),
        (lambda c: c.add([ItemToAdd("x", np.full(DIMS, np.inf))]), Reason.VECTOR_NOT_FINITE),
        (lambda c: c.build(trees=10_000_000), Reason.VALUE_OUT_OF_RANGE),
        (lambda c: list(c.scan(page_size=100_000)), Reason.VALUE_OUT_OF_RANGE),
    ],
)
def test_bad_requests_get_invalid_argument_with_a_reason_and_the_shard_keeps_serving(
    start_shard, call, reason
):
    with IndexClient(start_shard(DIMS).address) as client:
        client.add(items(vectors(20)))
        with pytest.raises(InvalidArgument) as caught:
            call(client)
        assert caught.value.reason == reason.value
        assert top(client, vectors(20)[4])[0].key == "k4"
        assert client.stats().count == 20


def test_huge_keys_are_refused_before_they_poison_searches(start_shard):
    """Two 33 MiB keys used to be accepted; every search returning them then failed."""
    with IndexClient(start_shard(DIMS).address, timeout=60) as client:
        huge = [ItemToAdd("k" * (33 * 1024 * 1024), v) for v in vectors(1)]
        with pytest.raises(InvalidArgument) as caught:
            client.add(huge)
        assert caught.value.reason == Reason.KEY_TOO_LONG.value
        assert caught.value.metadata == {"limit": "1024"}
        client.add(items(vectors(5)))
        assert top(client, vectors(5)[0], 5)[0].key == "k0"


def test_rich_status_details_reach_any_grpc_client(start_shard):
    """The ErrorInfo travels in grpc-status-details-bin: readable without imagesim's client."""
    server = start_shard(DIMS)
    with grpc.insecure_channel(server.address) as channel:
        stub = index_pb2.DESCRIPTOR.services_by_name["Index"]
        get = channel.unary_unary(
            f"/{stub.full_name}/Get",
            request_serializer=index_pb2.GetRequest.SerializeToString,
            response_deserializer=index_pb2.GetResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as caught:
            get(index_pb2.GetRequest(key="absent"), timeout=10)
    status = rpc_status.from_call(caught.value)
    assert status is not None and status.code == grpc.StatusCode.NOT_FOUND.value[0]
    info = error_info(status)
    assert info is not None and (info.reason, info.domain) == ("KEY_NOT_FOUND", "imagesim.v1")


def test_get_add_build_search_stats_and_not_found(start_shard):
    with IndexClient(start_shard(DIMS).address) as client:
        data = vectors(300)
        reply = client.add(items(data))
        assert (reply.added, reply.replaced, reply.count) == (300, 0, 300)
        assert top(client, data[10])[0].key == "k10"  # before any build: exact
        built = client.build()
        assert (built.generation, built.count, built.trees) == (1, 300, 100)
        hits = top(client, data[10], 5, include_metadata=True)
        assert hits[0].key == "k10" and hits[0].distance == pytest.approx(0, abs=1e-6)
        assert hits[0].metadata == {"n": "10", "parity": "0"}
        item = client.get("k10")
        np.testing.assert_array_equal(item.vector, data[10])
        with pytest.raises(NotFound, match="'missing'") as caught:
            client.get("missing")
        assert caught.value.reason == Reason.KEY_NOT_FOUND.value
        stats = client.stats()
        assert (stats.count, stats.dimension, stats.metric, stats.built) == (
            300,
            64,
            Metric.ANGULAR,
            True,
        )
        assert stats.index_bytes > 300 * DIMS * 4
        assert stats.last_build_time and stats.last_build_time > 0 and stats.last_build_seconds > 0
        assert stats.limits.max_key_bytes == 1024 and stats.limits.max_trees == 1000
        assert stats.streams.max_message_bytes == 64 * 1024 * 1024


def test_batched_search_threshold_and_metadata_filter(start_shard):
    with IndexClient(start_shard(DIMS).address) as client:
        data = vectors(400)
        client.add(items(data))
        client.build()
        results = client.search(data[[3, 8, 15]], SearchParams(k=4))
        assert [r[0].key for r in results] == ["k3", "k8", "k15"]
        near = top(client, data[3], 50, max_distance=1.0)
        assert near and all(h.distance <= 1.0 for h in near) and len(near) < 50
        odd = top(client, data[4], 20, where={"parity": "1"}, include_metadata=True)
        assert len(odd) == 20 and all(h.metadata["parity"] == "1" for h in odd)
        assert "k4" not in {h.key for h in odd}
        one = top(client, data[3], 5, where={"n": "17"})  # very selective: exact over 1 item
        assert [h.key for h in one] == ["k17"]
        assert top(client, data[3], 5, where={"n": "none"}) == []


def test_scan_pages_through_every_item_in_key_order(start_shard):
    with IndexClient(start_shard(DIMS).address) as client:
        data = vectors(130)
        client.add(items(data))
        pages = list(client.scan(page_size=50, include_vectors=True))
        assert [len(p) for p in pages] == [50, 50, 30]
        keys = [item.key for page in pages for item in page]
        assert keys == sorted(f"k{i}" for i in range(130))
        by_key = {item.key: item for page in pages for item in page}
        np.testing.assert_array_equal(by_key["k7"].vector, data[7])
        assert by_key["k7"].metadata == {"n": "7", "parity": "1"}
        rest = [item.key for page in client.scan(start_after="k50") for item in page]
        assert rest == [k for k in keys if k > "k50"]
        bare = next(client.scan(page_size=5, include_metadata=False))
        assert all(item.vector.size == 0 and item.metadata == {} for item in bare)


def test_layout_is_compare_and_set_and_misplaced_keys_are_refused(start_shard):
    server = start_shard(DIMS, "--shard-id", "alpha")
    with IndexClient(server.address) as client:
        assert client.stats().shard_id == "alpha"
        recorded = client.set_layout(Layout(1, ("alpha", "beta")), expected_version=0)
        assert recorded == Layout(1, ("alpha", "beta"))
        with pytest.raises(Aborted) as caught:
            client.set_layout(Layout(1, ("alpha",)), expected_version=0)
        assert caught.value.reason == Reason.LAYOUT_CHANGED.value
        with pytest.raises(InvalidArgument) as caught:
            client.set_layout(Layout(2, ("beta", "gamma")), expected_version=1)
        assert caught.value.reason == Reason.LAYOUT_MISMATCH.value
        from imagesim.routing import home

        foreign = next(f"k{i}" for i in range(100) if home(f"k{i}", ["alpha", "beta"]) == "beta")
        with pytest.raises(FailedPrecondition) as caught:
            client.add([ItemToAdd(foreign, vectors(1)[0])])
        assert caught.value.reason == Reason.WRONG_SHARD.value
        assert caught.value.metadata["home"] == "beta"


def test_bulk_add_stream(start_shard):
    with IndexClient(start_shard(DIMS).address) as client:
        data = vectors(100)
        chunks = [
            index_pb2.AddStreamRequest(
                items=[protocol.item_message(i) for i in items(data)[j : j + 25]]
            )
            for j in range(0, 100, 25)
        ]
        reply = client.stub.AddStream(iter(chunks), timeout=30)
        assert (reply.added, reply.count, reply.requests) == (100, 100, 4)


def test_restart_serves_the_saved_index(start_shard, tmp_path):
    data_dir = tmp_path / "persisted"
    first = start_shard(DIMS, data=data_dir, name="first")
    data = vectors(500)
    with IndexClient(first.address) as client:
        client.add(items(data))
        client.build()
        client.add([ItemToAdd("after-build", data[0] * 3)])
        shard_id = client.stats().shard_id
    assert first.stop() == 0
    second = start_shard(DIMS, data=data_dir, name="second")
    with IndexClient(second.address) as client:
        stats = client.stats()
        assert (stats.count, stats.built_count, stats.staged, stats.generation) == (501, 500, 1, 1)
        assert stats.shard_id == shard_id  # ids are stable across restarts
        assert {h.key for h in top(client, data[0], 2)} == {"k0", "after-build"}


def run_index(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imagesim.index_server.main", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_shard_refuses_to_start_with_another_layout(start_shard, tmp_path):
    data_dir = tmp_path / "layout"
    start_shard(DIMS, data=data_dir, name="made").stop()
    result = run_index("--data", str(data_dir), "--dims", "128")
    assert result.returncode == 2
    assert "holds a 64-d angular shard" in result.stderr


def test_a_second_server_on_the_same_data_directory_exits_2(start_shard, tmp_path):
    data_dir = tmp_path / "owned"
    owner = start_shard(DIMS, data=data_dir, name="owner")
    result = run_index("--data", str(data_dir), "--dims", str(DIMS))
    assert result.returncode == 2
    assert f"{data_dir} is in use by another imagesim-index process" in result.stderr
    assert str(data_dir / "LOCK") in result.stderr
    with IndexClient(owner.address) as client:
        assert client.stats().count == 0  # the owner is untouched


def test_flags_that_would_make_every_build_fail_exit_2(tmp_path):
    result = run_index(
        "--data", str(tmp_path / "m"), "--dims", "8", "--metric", "manhattan", "--project-dims", "4"
    )
    assert result.returncode == 2 and "angular or euclidean metric" in result.stderr


def test_sigterm_lets_an_in_flight_build_finish(start_shard):
    server = start_shard(256, "--grace", "30")
    with IndexClient(server.address) as client:
        client.add(items(vectors(4_000, dims=256)))
        build = client.stub.Build.future(index_pb2.BuildRequest(trees=1000), timeout=120)
        deadline = time.monotonic() + 30
        while not client.stats().building:  # the build is under way on the server
            assert time.monotonic() < deadline and not build.done()
            time.sleep(0.01)
        server.process.send_signal(signal.SIGTERM)
        reply = build.result()  # completes although the server is shutting down
        assert reply.count == 4_000
    assert server.process.wait(60) == 0
    with pytest.raises(grpc.RpcError):
        IndexClient(server.address, timeout=2).stub.Stats(index_pb2.StatsRequest(), timeout=2)


def test_stats_count_the_models_and_runtimes_that_made_the_vectors(start_shard):
    with IndexClient(start_shard(DIMS).address) as client:
        made_by = [("a" * 16, "openvino/bfloat16")] * 3 + [("a" * 16, "tensorflow/float32")]
        client.add(
            [
                ItemToAdd(f"k{i}", v, {"imagesim.model": m, "imagesim.embedded_by": e})
                for i, (v, (m, e)) in enumerate(zip(vectors(4), made_by, strict=True))
            ]
        )
        client.add([ItemToAdd("plain", vectors(1, seed=3)[0])])
        stats = client.stats()
        assert dict(stats.models) == {"a" * 16: 4}
        assert dict(stats.embedded_by) == {"openvino/bfloat16": 3, "tensorflow/float32": 1}
        client.remove(["k0"])
        assert dict(client.stats().embedded_by)["openvino/bfloat16"] == 2
