"""The server object both processes use: lifecycle, health, reflection, signals, limits,
security (TLS, API keys), stream limits, the port file.

Lifecycle: bind -> NOT_SERVING (health) while the process loads its model or index ->
SERVING -> on SIGTERM/SIGINT: health NOT_SERVING, stop accepting calls, let in-flight calls
finish for `grace_seconds`, then run the process's own clean-up (drain batcher, close store).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client.registry import Collector

from imagesim.channel import message_limits
from imagesim.errors import ImagesimError
from imagesim.heap import limit_malloc_arenas
from imagesim.security import KeyFile, KeyFileError
from imagesim.serving.auth import ApiKeyInterceptor
from imagesim.serving.handlers import Behavior, wrap_handler
from imagesim.serving.metrics import (
    GrpcMetrics,
    MetricsHttpServer,
    StreamGauges,
    new_registry,
    start_metrics_server,
)
from imagesim.serving.parsing import RequestParsing
from imagesim.serving.portfile import write_port_file
from imagesim.serving.settings import ServerSettings, refuse
from imagesim.serving.streams import StreamGuard
from imagesim.serving.tls import server_credentials

log = logging.getLogger(__name__)

Registrar = Callable[[grpc.Server], None]


HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_CHECK_THREADS = 2


class HealthCheckThreads(grpc.ServerInterceptor):
    """Health Check runs on threads of its own: a probe is answered at once while every
    handler thread is busy with slow calls (it waited in their queue: 15 s behind 70 slow
    calls in one run), and a flood of keyless Checks never takes a handler thread. Calls
    beyond --max-concurrent-rpcs are still refused, Checks too."""

    def __init__(self, threads: int = HEALTH_CHECK_THREADS) -> None:
        self.pool = futures.ThreadPoolExecutor(threads, thread_name_prefix="grpc-health")

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method != HEALTH_CHECK:
            return handler
        return wrap_handler(handler, self._on_pool)

    def _on_pool(self, behavior: Behavior, _requests: bool, _responses: bool) -> Behavior:
        def check(request: Any, context: grpc.ServicerContext) -> Any:
            return behavior(request, context)

        check.experimental_thread_pool = self.pool  # type: ignore[attr-defined]  # grpc reads it
        return check

    def close(self) -> None:
        self.pool.shutdown(wait=False)


class GrpcServer:
    """Owns one grpc.Server with health checking and reflection for the given services.

    `services` maps full service names (e.g. "imagesim.v1.Embedder") to a function that adds
    the servicer to a grpc.Server. `collectors` are the service's own Prometheus metrics,
    exported with the gRPC ones when settings.metrics_port is set.
    """

    def __init__(
        self,
        settings: ServerSettings,
        services: dict[str, Registrar],
        collectors: Sequence[Collector] = (),
    ) -> None:
        self.settings = settings
        self.service_names = list(services)
        self._stopped = threading.Event()
        self._cleanups: list[Callable[[], None]] = []
        problems = settings.problems()
        if problems:
            refuse(problems[0])
        self.streams = StreamGuard(settings.stream_limits)
        self.keys: KeyFile | None = None
        if settings.api_keys is not None:
            try:
                self.keys = KeyFile(settings.api_keys)
            except KeyFileError as exc:
                refuse(str(exc))
        self._health_checks = HealthCheckThreads()
        # First: it only picks the thread pool of the call the others wrap.
        interceptors: list[grpc.ServerInterceptor] = [self._health_checks]
        self.registry = None
        self._metrics_server: MetricsHttpServer | None = None
        if settings.metrics_port is not None:
            self.registry = new_registry()
            interceptors.append(GrpcMetrics(self.registry))  # before the rest: counts refusals
            limits = settings.stream_limits
            self.registry.register(
                StreamGauges(lambda: self.streams.active, limits.max_streams, limits.idle_timeout)
            )
            for collector in collectors:
                self.registry.register(collector)
        if self.keys is not None:
            interceptors.append(ApiKeyInterceptor(self.keys))
        # After authentication: a refused caller's request is never parsed and never takes a
        # stream slot; a malformed request takes no slot either.
        interceptors.append(RequestParsing())
        interceptors.append(self.streams)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=settings.workers, thread_name_prefix="grpc-handler"
            ),
            interceptors=interceptors,
            options=[
                *message_limits(settings.max_message_bytes),
                ("grpc.so_reuseport", 0),
                *settings.connection_options(),
            ],
            maximum_concurrent_rpcs=settings.concurrent_rpcs,
        )
        for register in services.values():
            register(self._server)
        self._health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        if settings.reflection:
            reflection.enable_server_reflection(
                [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
            )
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.port = 0
        self.metrics_port: int | None = None

    def _set_health(self, status: int) -> None:
        for name in ("", *self.service_names):
            self._health.set(name, status)

    def on_stop(self, cleanup: Callable[[], None]) -> None:
        """Run `cleanup` after the server has stopped and in-flight calls have finished."""
        self._cleanups.append(cleanup)

    def start(self) -> int:
        """Bind and start (health NOT_SERVING). Returns the bound port."""
        settings = self.settings
        address = settings.address
        try:
            if settings.tls is None:
                self.port = self._server.add_insecure_port(address)
            else:
                self.port = self._server.add_secure_port(address, server_credentials(settings.tls))
        except RuntimeError as exc:
            refuse(f"cannot bind {address}: {exc}")
        if not self.port:
            refuse(f"cannot bind {address}: port in use or address not available")
        self._server.start()
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        log.info(
            "listening on %s:%d (%s%s; NOT_SERVING until ready)",
            host,
            self.port,
            "plaintext" if settings.tls is None else "mutual TLS" if settings.tls.mutual else "TLS",
            ", API keys" if settings.api_keys else "",
        )
        if self.registry is not None:
            try:
                port = settings.metrics_port or 0
                self._metrics_server = start_metrics_server(
                    settings.host, port, self.registry, settings.tls, self.keys
                )
            except OSError as exc:
                refuse(f"cannot serve metrics on {host}:{settings.metrics_port}: {exc}")
            self.metrics_port = self._metrics_server.server_port
            log.info(
                "metrics at %s://%s:%d/metrics",
                "http" if settings.tls is None else "https",
                host,
                self.metrics_port,
            )
        self._announce(ready=False, strict=True)
        return self.port

    def _announce(self, ready: bool, strict: bool = False) -> None:
        """Write the port file (if asked for) saying whether health is SERVING. Only the first
        write may fail the start; a later failure is logged (the old file stays whole)."""
        if self.settings.port_file is None or not self.port:
            return
        path, host = self.settings.port_file, self.settings.host
        try:
            write_port_file(path, host, self.port, self.metrics_port, ready)
        except OSError as exc:
            if strict:
                raise
            log.warning("cannot update the port file %s: %s", path, exc)

    def set_serving(self) -> None:
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self._announce(ready=True)
        log.info("SERVING %s", ", ".join(self.service_names))

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the server gracefully (call from the main thread)."""

        def request_stop(signum: int, _frame: object) -> None:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            self._stopped.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    def request_stop(self) -> None:
        self._stopped.set()

    def wait(self) -> None:
        """Block until a stop is requested, then stop gracefully."""
        while not self._stopped.wait(0.5):
            pass
        self.stop()

    def stop(self) -> None:
        grace = self.settings.grace_seconds
        self._health.enter_graceful_shutdown()
        self.streams.callback_streams.end_all()  # health Watch: NOT_SERVING sent, then OK
        self._announce(ready=False)
        log.info("draining in-flight calls (grace %.1f s)", grace)
        self._server.stop(grace).wait()
        self._health_checks.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        for cleanup in reversed(self._cleanups):
            try:
                cleanup()
            except Exception:
                log.exception("error during shutdown clean-up")
        log.info("stopped")


def run_server(
    settings: ServerSettings,
    service_name: str,
    register: Registrar,
    load: Callable[[], list[Callable[[], None]]],
    collectors: Sequence[Collector] = (),
) -> None:
    """A server process's whole life: bind (NOT_SERVING), `load` the model or shard, SERVING,
    then on SIGTERM/SIGINT drain in-flight calls and run the clean-ups `load` returned.

    An ImagesimError from `load` (weights unavailable, wrong layout, ...) is logged and the
    process exits with code 2: the message says what to fix."""
    limit_malloc_arenas()
    server = GrpcServer(settings, {service_name: register}, collectors)
    server.install_signal_handlers()
    server.start()
    try:
        cleanups = load()
    except ImagesimError as exc:
        log.error("%s", exc.message)
        server.stop()
        sys.exit(2)
    for cleanup in cleanups:
        server.on_stop(cleanup)
    server.set_serving()
    server.wait()
