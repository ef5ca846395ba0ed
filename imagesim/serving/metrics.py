"""Prometheus metrics every server exports: gRPC calls under the standard names
(grpc_server_started_total, grpc_server_handled_total, grpc_server_handling_seconds,
grpc_server_msg_received_total, grpc_server_msg_sent_total, as go-grpc-prometheus names them,
so existing dashboards work), process metrics, and what each service adds (collectors).

Served at http://HOST:PORT/metrics (--metrics-port) on the server's host, over TLS with the
server's certificate when it has one, and behind a `read` API key when it uses keys.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from imagesim.security import KeyFile, Role, TlsFiles, bearer_token
from imagesim.serving.handlers import Behavior, rpc_type, wrap_handler

log = logging.getLogger(__name__)

# Seconds; from a health check (~0.3 ms) to a slow build or a large batch (minutes).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                   10, 30, 60, 300)  # fmt: skip
_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class GrpcMetrics(grpc.ServerInterceptor):
    """Counts and times every call. The outermost interceptor: calls refused by the API-key
    check or the stream cap are counted with their codes too."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", _LABELS, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, regardless of success or failure.",
            (*_LABELS, "grpc_code"),
            registry=registry,
        )
        self.seconds = Histogram(
            "grpc_server_handling_seconds",
            "Response latency (seconds) of gRPC calls handled by the server.",
            _LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.received = Counter(
            "grpc_server_msg_received_total",
            "Messages received from clients.",
            _LABELS,
            registry=registry,
        )
        self.sent = Counter(
            "grpc_server_msg_sent_total", "Messages sent to clients.", _LABELS, registry=registry
        )

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        labels = (rpc_type(handler), service, method)
        return wrap_handler(handler, lambda b, rq, rs: self._wrap(b, rq, rs, labels))

    def _finish(self, labels: tuple[str, ...], start: float, context: Any, failed: bool) -> None:
        code = context.code()
        if isinstance(code, grpc.StatusCode):
            name = code.name
        elif not failed:
            name = "OK"
        else:  # an exception without a status: the client went away, or a bug (UNKNOWN)
            name = "UNKNOWN" if context.is_active() else "CANCELLED"
        self.handled.labels(*labels, name).inc()
        self.seconds.labels(*labels).observe(time.perf_counter() - start)

    def _counted(self, requests: Iterable[Any], labels: tuple[str, ...]) -> Iterator[Any]:
        received = self.received.labels(*labels)
        for request in requests:
            received.inc()
            yield request

    def _wrap(
        self, behavior: Behavior, requests: bool, responses: bool, labels: tuple[str, ...]
    ) -> Behavior:
        started, sent = self.started.labels(*labels), self.sent.labels(*labels)

        def arguments(request: Any) -> Any:
            if requests:
                return self._counted(request, labels)
            self.received.labels(*labels).inc()
            return request

        def unary_response(request: Any, context: grpc.ServicerContext) -> Any:
            started.inc()
            start, failed = time.perf_counter(), True
            try:
                response = behavior(arguments(request), context)
                failed = False
                sent.inc()
                return response
            finally:
                self._finish(labels, start, context, failed)

        def streaming_response(request: Any, context: grpc.ServicerContext) -> Any:
            started.inc()
            start, failed = time.perf_counter(), True
            try:
                for response in behavior(arguments(request), context):
                    sent.inc()
                    yield response
                failed = False
            finally:
                self._finish(labels, start, context, failed)

        return streaming_response if responses else unary_response


class StreamGauges(Collector):
    """Streams open now and the configured limits."""

    def __init__(self, open_streams: Callable[[], int], max_streams: int, idle: float) -> None:
        self.open_streams = open_streams
        self.max_streams = max_streams
        self.idle = idle

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "imagesim_server_streams_open", "Streaming calls open now.", self.open_streams()
        )
        yield GaugeMetricFamily(
            "imagesim_server_streams_max", "Streaming calls allowed at once.", self.max_streams
        )
        yield GaugeMetricFamily(
            "imagesim_server_stream_idle_timeout_seconds",
            "A stream whose client sends nothing this long is ended (0 = never).",
            self.idle,
        )


def new_registry() -> CollectorRegistry:
    """A registry with the process, platform and GC collectors (one per server, not the
    library's global one)."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


def _require_read_key(app: Callable, keys: KeyFile) -> Callable:
    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        role = keys.role_of(bearer_token(environ.get("HTTP_AUTHORIZATION")))
        if role is None or not role.allows(Role.READ):
            start_response(
                "401 Unauthorized",
                [("WWW-Authenticate", 'Bearer realm="metrics"'), ("Content-Type", "text/plain")],
            )
            return [b"a read API key is needed: send 'Authorization: Bearer KEY'\n"]
        return app(environ, start_response)

    return guarded


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsHttpServer(ThreadingMixIn, WSGIServer):
    """/metrics over HTTP or HTTPS, one thread per connection, at most `max_connections` at
    once (more are closed at once). The TLS handshake runs in the connection's thread with a
    timeout, so a client that connects and sends nothing cannot block the accept loop."""

    daemon_threads = True
    handshake_timeout = 10.0
    max_connections = 16
    tls: ssl.SSLContext | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(self.max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.handshake_timeout)
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                log.debug("metrics: TLS handshake with %s failed: %s", client_address, exc)
                return
        super().finish_request(request, client_address)


def start_metrics_server(
    host: str,
    port: int,
    registry: CollectorRegistry,
    tls: TlsFiles | None = None,
    keys: KeyFile | None = None,
) -> MetricsHttpServer:
    """Serve `registry` at /metrics in a daemon thread; the bound port is server.server_port."""
    app = make_wsgi_app(registry)
    if keys is not None:
        app = _require_read_key(app, keys)

    class Server(MetricsHttpServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = make_server(host.strip("[]"), port, app, Server, handler_class=_QuietHandler)
    if tls is not None:
        server.tls = tls.reloading_server_context()  # renewed files: new connections
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
