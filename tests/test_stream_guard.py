"""The stream guard on a real in-process gRPC server with a plain test service: a client that
stops reading a response stream loses it, a client that reads slowly keeps it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from imagesim.serving.settings import StreamLimits
from imagesim.serving.streams import StreamGuard

CHUNK = b"x" * (1 << 20)
IDLE = 3.0  # seconds; the slow reader reads every IDLE / 30, a margin for a noisy machine


def flood(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for _ in range(10_000):  # 10 GB if nobody stops it
        yield CHUNK


@pytest.fixture
def served() -> Iterator[tuple[StreamGuard, grpc.Channel]]:
    guard = StreamGuard(StreamLimits(max_streams=1, idle_timeout=IDLE))
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[guard])
    handler = grpc.method_handlers_generic_handler(
        "test.Streams", {"Flood": grpc.unary_stream_rpc_method_handler(flood)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield guard, channel
    channel.close()
    server.stop(0)


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_client_that_stops_reading_loses_its_stream_and_slot(served):
    guard, channel = served
    flood_call = channel.unary_stream("/test.Streams/Flood")
    stalled = flood_call(b"", timeout=300)
    assert next(stalled) == CHUNK  # then read nothing more: flow control stops the server
    wait_until(lambda: guard.active == 0)
    with pytest.raises(grpc.RpcError) as ended:
        for _ in stalled:
            pass
    assert ended.value.code() == grpc.StatusCode.CANCELLED
    reader = flood_call(b"", timeout=300)  # the slot is free again
    assert next(reader) == CHUNK
    reader.cancel()


def test_a_slow_reader_keeps_its_stream(served):
    guard, channel = served
    reader = channel.unary_stream("/test.Streams/Flood")(b"", timeout=300)
    for _ in range(30):
        assert next(reader) == CHUNK
        time.sleep(IDLE / 30)
    assert guard.active == 1
    reader.cancel()
    wait_until(lambda: guard.active == 0)
