"""What a caller without a key can do to a gRPC server (issue 16, items 1 and 2), through real
shard processes in both modes, plaintext and TLS with API keys.

On the code before: 4 keyless health Watch streams took all --max-streams slots, so a `read`
key's Scan got RESOURCE_EXHAUSTED for as long as they stayed; a garbage health Check got
INTERNAL and wrote 6 log lines (20 calls: 120 lines).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from imagesim.channel import ChannelSecurity, open_channel
from imagesim.client.index_client import IndexClient
from imagesim.client.rpc import rpc_error
from imagesim.errors import Reason
from imagesim.serving.server import GrpcServer
from imagesim.serving.settings import DEFAULT_MAX_HEALTH_WATCHES, ServerSettings
from imagesim.types import ItemToAdd
from imagesim.v1 import index_pb2

DIMS = 8
MAX_STREAMS = 4  # the default
QUICK = 30  # seconds: the deadline of calls that must not wait
WATCH = "/grpc.health.v1.Health/Watch"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
GARBAGE = b"\xff\xff\xff\xff"  # not a protobuf message of any type


class Mode:
    """A shard's security and what its callers send: no key (`anonymous`) or a key (`caller`)."""

    def __init__(self, name: str, server_args: list[str], anonymous, caller) -> None:
        self.name = name
        self.server_args = server_args
        self.anonymous: ChannelSecurity = anonymous
        self.caller: ChannelSecurity = caller


@pytest.fixture(params=["plaintext", "tls+keys"])
def mode(request, pki) -> Mode:
    if request.param == "plaintext":
        return Mode("plaintext", [], ChannelSecurity(), ChannelSecurity())
    return Mode("tls+keys", pki.server_args(), pki.security(), pki.security("admin"))


@pytest.fixture
def shard_in(start_shard):
    def start(mode: Mode, *args: str):
        shard = start_shard(DIMS, *mode.server_args, *args, security=mode.anonymous)
        with IndexClient(shard.address, timeout=QUICK, security=mode.caller) as client:
            client.add([ItemToAdd("a", np.ones(DIMS, dtype=np.float32))])
        return shard

    return start


def open_watch(channel: grpc.Channel, timeout: float = 300) -> Iterator:
    watch = channel.unary_stream(
        WATCH,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    return watch(health_pb2.HealthCheckRequest(), timeout=timeout)


def first(call: Iterator) -> int | grpc.RpcError:
    """The first status a Watch sends, or how it was refused."""
    try:
        return next(call).status
    except grpc.RpcError as exc:
        return exc


def silent(stop: threading.Event) -> Iterator:
    stop.wait()
    yield from ()


def test_keyless_watches_have_their_own_limit_and_leave_every_stream_slot(shard_in, mode):
    shard = shard_in(mode)
    stop = threading.Event()
    anonymous = open_channel(shard.address, security=mode.anonymous)
    try:
        watches = [open_watch(anonymous) for _ in range(10)]
        outcomes = [first(call) for call in watches]
        held = [o for o in outcomes if not isinstance(o, grpc.RpcError)]
        refused = [
            rpc_error(o, shard.address, "") for o in outcomes if isinstance(o, grpc.RpcError)
        ]
        assert held == [SERVING] * DEFAULT_MAX_HEALTH_WATCHES
        assert {(e.code, e.reason) for e in refused} == {
            ("RESOURCE_EXHAUSTED", Reason.TOO_MANY_STREAMS.value)
        }
        assert {e.metadata["limit"] for e in refused} == {str(DEFAULT_MAX_HEALTH_WATCHES)}
        assert "health watches" in refused[0].message

        with IndexClient(shard.address, timeout=QUICK, security=mode.caller) as client:
            # Every --max-streams slot is still there for callers with a key: three held
            # AddStreams and a Scan run beside the watches.
            adds = [
                client.stub.AddStream.future(silent(stop), timeout=300)
                for _ in range(MAX_STREAMS - 1)
            ]
            assert [item.key for page in client.scan() for item in page] == ["a"]
            assert not any(add.done() for add in adds), [a.exception() for a in adds if a.done()]
            # ...and handler threads for unary calls and health checks.
            assert client.search(np.ones(DIMS))[0][0].key == "a"
            assert client.stats().count == 1
            check = anonymous.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            assert check(health_pb2.HealthCheckRequest(), timeout=QUICK).status == SERVING
    finally:
        stop.set()
        anonymous.close()


def test_a_watch_ends_after_its_lifetime(shard_in, mode):
    shard = shard_in(mode, "--health-watch-lifetime", "2")
    with open_channel(shard.address, security=mode.anonymous) as channel:
        watch = open_watch(channel)
        assert next(watch).status == SERVING
        assert list(watch) == []  # ended by the server with OK (its deadline is 300 s)
        assert watch.code() == grpc.StatusCode.OK
        assert first(open_watch(channel)) == SERVING  # its place is free again


def test_a_held_watch_does_not_hold_up_shutdown(shard_in, mode):
    shard = shard_in(mode, "--grace", "120")
    with open_channel(shard.address, security=mode.anonymous) as channel:
        watch = open_watch(channel)
        assert next(watch).status == SERVING
        shard.process.terminate()
        # NOT_SERVING, then the stream ends: the server does not wait its 120 s grace for it.
        assert [r.status for r in watch] == [NOT_SERVING]
        assert watch.code() == grpc.StatusCode.OK
        assert shard.process.wait(timeout=60) == 0


def test_malformed_requests_get_invalid_argument_and_one_log_line(shard_in, mode):
    shard = shard_in(mode)
    with (
        open_channel(shard.address, security=mode.anonymous) as anonymous,
        open_channel(shard.address, security=mode.caller) as keyed,
    ):
        calls = {
            "health Check, no key": anonymous.unary_unary("/grpc.health.v1.Health/Check"),
            "health Watch, no key": lambda data, timeout: list(
                anonymous.unary_stream(WATCH)(data, timeout=timeout)
            ),
            "Search": keyed.unary_unary("/imagesim.v1.Index/Search"),
            "Scan": lambda data, timeout: list(
                keyed.unary_stream("/imagesim.v1.Index/Scan")(data, timeout=timeout)
            ),
            "AddStream": lambda data, timeout: keyed.stream_unary("/imagesim.v1.Index/AddStream")(
                iter([index_pb2.AddStreamRequest().SerializeToString(), data]), timeout=timeout
            ),
            "reflection": lambda data, timeout: list(
                keyed.stream_stream(
                    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
                )(iter([data]), timeout=timeout)
            ),
        }
        for what, call in calls.items():
            for _ in range(20 if what.startswith("health Check") else 2):
                with pytest.raises(grpc.RpcError) as refused:
                    call(GARBAGE, timeout=QUICK)
                error = rpc_error(refused.value, shard.address, "")
                assert (what, error.code, error.reason) == (
                    what,
                    "INVALID_ARGUMENT",
                    Reason.MALFORMED_REQUEST.value,
                ), error
                assert "malformed request" in error.message
        if mode.name == "tls+keys":  # a refused caller's request is not even parsed
            with pytest.raises(grpc.RpcError) as unauthenticated:
                anonymous.unary_unary("/imagesim.v1.Index/Search")(GARBAGE, timeout=QUICK)
            assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Nothing else broke: well-formed calls still work on the same channels.
        request = reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString()
        info = keyed.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        )(iter([request]), timeout=QUICK)
        assert b"imagesim.v1.Index" in next(info)
    log = shard.log_text()
    assert "Exception deserializing" not in log and "Traceback" not in log
    assert log.count("malformed request") == 1  # 30 calls, one line (a minute apart at most)


def test_port_file_says_when_the_server_serves(tmp_path):
    port_file = tmp_path / "server.port.json"
    server = GrpcServer(ServerSettings(port_file=port_file, grace_seconds=0), {})
    port = server.start()
    try:
        announced = json.loads(port_file.read_text())
        assert (announced["port"], announced["ready"]) == (port, False)  # bound, still loading
        server.set_serving()
        assert json.loads(port_file.read_text())["ready"] is True
    finally:
        server.stop()
    assert json.loads(port_file.read_text()) == {**announced, "ready": False}


def test_stream_and_watch_limits_must_leave_threads_for_unary_calls():
    settings = ServerSettings(workers=8, max_streams=4, max_health_watches=4)
    [problem] = settings.problems()
    assert "--max-streams 4 + --max-health-watches 4 must be below --workers (8)" in problem
    assert ServerSettings(workers=8, max_streams=4, max_health_watches=3).problems() == []


def test_health_check_answers_while_every_handler_thread_is_busy():
    workers = 4
    release, running = threading.Event(), threading.Semaphore(0)

    def busy(request: bytes, context: grpc.ServicerContext) -> bytes:
        running.release()
        release.wait(120)
        return b""

    def register(server: grpc.Server) -> None:
        methods = {"Wait": grpc.unary_unary_rpc_method_handler(busy)}
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Busy", methods),)
        )

    settings = ServerSettings(workers=workers, max_streams=1, max_health_watches=1, grace_seconds=0)
    server = GrpcServer(settings, {"test.Busy": register})
    port = server.start()
    server.set_serving()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        waiting = [
            channel.unary_unary("/test.Busy/Wait").future(b"", timeout=120) for _ in range(8)
        ]
        for _ in range(workers):  # every handler thread is taken, 4 more calls queue
            assert running.acquire(timeout=60)
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        assert check(health_pb2.HealthCheckRequest(), timeout=QUICK).status == SERVING
        assert not any(call.done() for call in waiting)
    finally:
        release.set()
        channel.close()
        server.stop()
