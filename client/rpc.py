"""Calling a server: deadlines on every call, gRPC errors turned into imagesim errors.

The server's rich status (google.rpc.ErrorInfo) gives each error its machine-readable reason
and metadata; the client never parses message text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import grpc
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from imagesim.channel import ChannelSecurity, open_channel
from imagesim.errors import (
    ERROR_DOMAIN,
    DeadlineExceeded,
    FailedPrecondition,
    ImagesimError,
    InvalidArgument,
    Unavailable,
    error_for_code,
)
from imagesim.v1 import embedder_pb2, index_pb2

T = TypeVar("T")
C = TypeVar("C", bound="ServiceClient")

DEFAULT_TIMEOUT = 30.0  # seconds, for every unary call unless the caller says otherwise

CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}

# The services an imagesim server may serve, by full name (as health and reflection name them).
IMAGESIM_SERVICES = tuple(
    service.full_name
    for module in (embedder_pb2, index_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
)
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVICE_PROBE_TIMEOUT = 2.0  # seconds: asking a server which services it serves


def error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    """The imagesim ErrorInfo among a status's details, if any."""
    for detail in status.details:
        if detail.TypeName() == error_details_pb2.ErrorInfo.DESCRIPTOR.full_name:
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == ERROR_DOMAIN:
                return info
    return None


def status_error(status: status_pb2.Status, address: str | None = None) -> ImagesimError:
    """The domain error of a google.rpc.Status (e.g. a per-item error inside a stream)."""
    info = error_info(status)
    return error_for_code(
        CODE_NAMES.get(status.code, "UNKNOWN"),
        status.message,
        reason=info.reason if info else None,
        metadata=dict(info.metadata) if info else None,
        address=address,
    )


def served_services(
    channel: grpc.Channel, timeout: float = SERVICE_PROBE_TIMEOUT
) -> list[str] | None:
    """The imagesim services the server behind `channel` serves, asked of its standard health
    service (open to every caller, with or without a key; every imagesim server registers each
    of its services there). None when the server cannot say (no health service, unreachable).

    The client install has no grpc_health package: grpc.health.v1.HealthCheckRequest is
    `string service = 1`, the same bytes as a google.protobuf.StringValue, and only the
    status of the answer matters (NOT_FOUND: a service the server does not know)."""
    check: grpc.UnaryUnaryMultiCallable = channel.unary_unary(
        HEALTH_CHECK, request_serializer=wrappers_pb2.StringValue.SerializeToString
    )
    calls = {
        name: check.future(wrappers_pb2.StringValue(value=name), timeout=timeout)
        for name in IMAGESIM_SERVICES
    }
    served = []
    for name, future in calls.items():
        try:
            future.result()
            served.append(name)
        except grpc.RpcError as exc:
            if not isinstance(exc, grpc.Call) or exc.code() != grpc.StatusCode.NOT_FOUND:
                return None
    return served


def wrong_service(details: str, address: str, client: ServiceClient) -> str:
    """What an UNIMPLEMENTED answer means: which services `address` serves instead (an
    embedder's address given as a shard, say), or that it lacks this one method."""
    served = served_services(client.channel)
    if served is None:
        return f"{details} ({address} does not serve this method of {client.service})"
    if client.service in served:
        return (
            f"{address} serves {client.service} but not this method ({details}): "
            "is the server an older version than this client?"
        )
    serves = f"it serves {', '.join(served)}" if served else "it serves no imagesim service"
    return f"{address} does not serve {client.service} ({serves})"


def rpc_error(
    exc: grpc.RpcError, address: str, what: str, client: ServiceClient | None = None
) -> ImagesimError:
    """A domain error with the status code, reason, the server's message and the address.
    Given the `client` that made the call, an UNIMPLEMENTED answer also says which service
    the address serves instead (one short health round trip)."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else str(exc)) or code.name
    if code == grpc.StatusCode.UNAVAILABLE:
        details = f"cannot reach {what} at {address}: {details}"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"{what} at {address} did not answer in time"
    elif code == grpc.StatusCode.UNIMPLEMENTED and client is not None:
        details = wrong_service(details, address, client)
    status = rpc_status.from_call(exc) if isinstance(exc, grpc.Call) else None
    info = error_info(status) if status is not None else None
    return error_for_code(
        code.name,
        details.splitlines()[0],
        reason=info.reason if info else None,
        metadata=dict(info.metadata) if info else None,
        address=address,
    )


class Deadline:
    """One monotonic deadline shared by several calls (a query's embed, layout check and
    search all fit in one --timeout): each call gets what is left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left; DeadlineExceeded once none are."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"the deadline of {self.seconds:g} s passed")
        return left


def call(address: str, what: str, fn: Callable[[], T], client: ServiceClient | None = None) -> T:
    """Run one gRPC call, raising ImagesimError (never grpc.RpcError) on failure."""
    try:
        return fn()
    except grpc.RpcError as exc:
        raise rpc_error(exc, address, what, client) from None


_default_security: ChannelSecurity | None = None


def set_default_security(security: ChannelSecurity | None) -> None:
    """The security of clients created without one (None: back to the environment's)."""
    global _default_security
    _default_security = security


def default_security() -> ChannelSecurity:
    return _default_security or ChannelSecurity.from_env()


class ServiceClient:
    """One channel to one server: every call has a deadline (the client's default unless the
    call gives one), and failures raise ImagesimError naming the server.

    `security` (TLS, API key): None takes the process default (set_default_security, which
    the CLI sets from its flags), else ChannelSecurity.from_env() (IMAGESIM_API_KEY, ...)."""

    what = "the server"
    service: ClassVar[str]  # the full name of the service, e.g. imagesim.v1.Index
    stub_type: ClassVar[type[Any]]  # the generated stub class of the service

    def __init__(
        self,
        address: str,
        timeout: float = DEFAULT_TIMEOUT,
        security: ChannelSecurity | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.security = security or default_security()
        self._closed = False
        try:
            self._channel = open_channel(address, security=self.security)
        except ValueError as exc:
            raise InvalidArgument(str(exc), address=address) from None
        self.stub = self.stub_type(self._channel)

    @property
    def channel(self) -> grpc.Channel:
        return self._channel

    def close(self) -> None:
        self._closed = True
        self._channel.close()

    def wait_connected(self, timeout: float | None = None) -> None:
        """Block until the channel is connected. After a server restarts, a channel waits out
        its reconnect backoff (up to 2 s) and calls fail fast until then; this waits instead.
        Raises Unavailable if the server is not reached in `timeout` s (the client's default
        when None)."""
        if self._closed:
            raise FailedPrecondition("this client is closed", address=self.address)
        limit = self.timeout if timeout is None else timeout
        ready = grpc.channel_ready_future(self._channel)
        try:
            ready.result(timeout=limit)
        except grpc.FutureTimeoutError:
            raise Unavailable(
                f"{self.what} did not connect within {limit:g} s", address=self.address
            ) from None
        finally:
            ready.cancel()

    def __enter__(self: C) -> C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self, method: grpc.UnaryUnaryMultiCallable, request: object, timeout: float | None = None
    ) -> Any:
        return call(
            self.address,
            self.what,
            lambda: method(request, timeout=timeout or self.timeout),
            self,
        )
