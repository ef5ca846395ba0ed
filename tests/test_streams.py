"""Streams cannot starve a server (issue 8, item 2): a cap on open streams and an idle timeout,
through real server processes. On the code before the cap, 16 idle streams took all 16 handler
threads and Search, Stats, Info and even the health check timed out."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imagesim import protocol
from imagesim.channel import ChannelSecurity, open_channel
from imagesim.client.embedder_client import EmbedderClient
from imagesim.client.index_client import IndexClient
from imagesim.client.rpc import rpc_error
from imagesim.errors import ImagesimError, Reason
from imagesim.types import ItemToAdd
from imagesim.v1 import embedder_pb2_grpc, index_pb2
from tests.conftest import STREAM_IDLE_SECONDS

DIMS = 8
DEFAULT_MAX_STREAMS = 4
QUICK = 10  # seconds: the deadline of the calls that must not be starved


def silent(stop: threading.Event) -> Iterator:
    """A client that opens a stream and sends nothing until told to stop."""
    stop.wait()
    yield from ()


class Outcome:
    """How each of many streaming calls ended (the error), filled in as they end."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.lock = threading.Lock()
        self.errors: list[ImagesimError | None] = []
        self.ended = threading.Condition(self.lock)
        self.started = time.monotonic()
        self.durations: list[float] = []

    def record(self, exc: grpc.RpcError | None) -> None:
        with self.lock:
            error = rpc_error(exc, self.address, "server") if exc is not None else None
            self.errors.append(error)
            self.durations.append(time.monotonic() - self.started)
            self.ended.notify_all()

    def wait_for(self, count: int, timeout: float) -> list[ImagesimError | None]:
        with self.lock:
            assert self.ended.wait_for(lambda: len(self.errors) >= count, timeout), (
                f"only {len(self.errors)} of {count} streams ended within {timeout} s"
            )
            return list(self.errors)


def open_add_streams(index: IndexClient, n: int, stop: threading.Event) -> Outcome:
    outcome = Outcome(index.address)
    for _ in range(n):
        future = index.stub.AddStream.future(silent(stop), timeout=300)
        future.add_done_callback(lambda f: outcome.record(f.exception()))
    return outcome


def open_embed_streams(address: str, security, n: int, stop: threading.Event) -> Outcome:
    outcome = Outcome(address)
    channel = open_channel(address, security=security)
    embed_stream = embedder_pb2_grpc.EmbedderStub(channel).EmbedStream

    def drain() -> None:
        try:
            for _ in embed_stream(silent(stop), timeout=300):
                pass
        except grpc.RpcError as exc:
            outcome.record(exc)
        else:
            outcome.record(None)

    for _ in range(n):
        threading.Thread(target=drain, daemon=True).start()
    return outcome


def check_reason(errors: list, code: str, reason: Reason) -> list:
    assert all(e is not None and e.code == code for e in errors), errors
    assert {e.reason for e in errors} == {reason.value}, errors
    return errors


def health(address: str, security: ChannelSecurity) -> int:
    with open_channel(address, security=security) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=QUICK).status


def test_idle_streams_cannot_starve_unary_calls_and_are_ended(secure_embedder, start_shard, pki):
    shard = start_shard(DIMS, "--stream-idle-timeout", str(STREAM_IDLE_SECONDS))
    stop = threading.Event()
    embedder_security = pki.security("read")
    try:
        with (
            IndexClient(shard.address, timeout=QUICK, security=ChannelSecurity()) as index,
            EmbedderClient(secure_embedder.address, QUICK, embedder_security) as embedder,
        ):
            index.add([ItemToAdd("a", np.ones(DIMS, dtype=np.float32))])
            adds = open_add_streams(index, 16, stop)
            embeds = open_embed_streams(secure_embedder.address, embedder_security, 16, stop)

            # All but max_streams of each are refused at once, naming the limit.
            for outcome in (adds, embeds):
                refused = outcome.wait_for(16 - DEFAULT_MAX_STREAMS, timeout=120)
                check_reason(refused, "RESOURCE_EXHAUSTED", Reason.TOO_MANY_STREAMS)
                assert {e.metadata["limit"] for e in refused} == {str(DEFAULT_MAX_STREAMS)}

            # The streams that got a slot are still open, idle; everything else answers.
            assert index.search(np.ones(DIMS))[0][0].key == "a"
            assert index.stats().count == 1
            assert embedder.info().model == "InceptionV3"
            # Info and Stats report the limits the server applies
            for limits in (index.stats().streams, embedder.info().streams):
                assert limits.max_streams == DEFAULT_MAX_STREAMS
                assert limits.idle_timeout == STREAM_IDLE_SECONDS
                assert limits.max_message_bytes == 64 * 1024 * 1024
            serving = health_pb2.HealthCheckResponse.SERVING
            assert health(shard.address, ChannelSecurity()) == serving
            assert health(secure_embedder.address, pki.security()) == serving

            # The idle ones are ended by the server (their own deadline is 300 s).
            for outcome in (adds, embeds):
                idle = outcome.wait_for(16, timeout=120)[16 - DEFAULT_MAX_STREAMS :]
                check_reason(idle, "CANCELLED", Reason.STREAM_IDLE)
                assert {e.metadata["idle_timeout_seconds"] for e in idle} == {
                    str(STREAM_IDLE_SECONDS)
                }
                assert min(outcome.durations[-DEFAULT_MAX_STREAMS:]) >= STREAM_IDLE_SECONDS - 0.5

            # Their slots are free again: real streams work.
            chunk = index_pb2.AddStreamRequest(
                items=[protocol.item_message(ItemToAdd("b", np.ones(DIMS)))]
            )
            reply = index.stub.AddStream(iter([chunk] * 3), timeout=QUICK * 3)
            assert (reply.added, reply.replaced) == (1, 2)
            assert index.stats().count == 2
            results = list(embedder.embed_stream([("x", b"not an image")], timeout=QUICK * 3))
            assert results[0].error is not None and results[0].error.code == "INVALID_ARGUMENT"
    finally:
        stop.set()


def test_a_cancelled_stream_gives_its_slot_back(start_shard):
    shard = start_shard(DIMS, "--max-streams", "2", "--stream-idle-timeout", "0")
    stop = threading.Event()
    try:
        with IndexClient(shard.address, timeout=QUICK, security=ChannelSecurity()) as index:
            # Three streams opened together: the server's handler threads may take them in any
            # order, so whichever arrives third is the one refused.
            calls = [index.stub.AddStream.future(silent(stop), timeout=300) for _ in range(3)]
            done = threading.Event()
            for call in calls:
                call.add_done_callback(lambda _: done.set())
            assert done.wait(120), "none of three streams was refused with --max-streams 2"
            refused = [call for call in calls if call.done()]
            assert len(refused) == 1
            error = refused[0].exception()
            assert isinstance(error, grpc.RpcError)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert rpc_error(error, "", "").metadata == {"limit": "2"}
            for call in calls:
                call.cancel()
            chunk = index_pb2.AddStreamRequest(
                items=[protocol.item_message(ItemToAdd("c", np.ones(DIMS)))]
            )
            deadline = time.monotonic() + 60
            while True:  # the server learns of the cancellations asynchronously
                try:
                    assert index.stub.AddStream(iter([chunk]), timeout=QUICK).count == 1
                    break
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    assert time.monotonic() < deadline, "cancelled streams kept their slots"
                    time.sleep(0.1)
    finally:
        stop.set()


def test_stream_cap_must_leave_threads_for_unary_calls(tmp_path):
    server = [sys.executable, "-m", "imagesim.index_server.main", "--port", "0", "--dims", "8"]
    result = subprocess.run(
        [*server, "--data", str(tmp_path / "d"), "--workers", "4", "--max-streams", "4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--max-streams 4 must be between 1 and --workers - 1 (3)" in result.stderr
