"""`imagesim-web`: the web page and HTTP/JSON API process (uvicorn).

Lifecycle: read the key file and TLS files (refuse to start if they do not load) -> bind
(port 0: any free port) -> metrics port -> announce the ports (log line and --port-file) ->
serve -> on SIGTERM/SIGINT stop accepting connections, let requests in flight finish within
--grace seconds, stop a duplicate search under way, close the service channels, exit 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import ssl
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from imagesim.security import KeyFile, KeyFileError, ReloadingServerContext
from imagesim.serving.portfile import write_port_file
from imagesim.serving.settings import configure_logging, refuse
from imagesim.web.settings import PROG, WebSettings, parse_args

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("imagesim.web")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: the OS picks one)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        raise SystemExit(
            f"imagesim-web: cannot bind {host}:{port}: {exc.strerror or exc}"
        ) from None
    sock.set_inheritable(True)
    return sock


def load_keys(settings: WebSettings) -> KeyFile | None:
    if settings.api_keys is None:
        return None
    try:
        return KeyFile(settings.api_keys)
    except KeyFileError as exc:
        refuse(str(exc), PROG)


def tls_context(settings: WebSettings) -> ReloadingServerContext | None:
    """The TLS context (mutual with --tls-client-ca), following renewed files."""
    if settings.tls is None:
        return None
    try:
        return settings.tls.reloading_server_context()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        refuse(f"cannot use the TLS files: {exc}", PROG)


def start_metrics(
    settings: WebSettings, registry: CollectorRegistry, keys: KeyFile | None
) -> int | None:
    """The Prometheus /metrics server (same host, TLS and keys); its port."""
    from imagesim.serving.metrics import start_metrics_server

    try:
        server = start_metrics_server(
            settings.host, settings.metrics_port or 0, registry, settings.tls, keys
        )
    except (OSError, ssl.SSLError) as exc:
        refuse(f"cannot serve metrics on {settings.host}:{settings.metrics_port}: {exc}", PROG)
    return server.server_port


def serve(settings: WebSettings) -> None:
    import uvicorn

    from imagesim.web.access_log import AccessLog
    from imagesim.web.app import create_app

    keys = load_keys(settings)
    context = tls_context(settings)
    registry = None
    if settings.metrics_port is not None:
        from imagesim.serving.metrics import new_registry

        registry = new_registry()
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    bound = replace(settings, port=port)
    metrics_port = start_metrics(settings, registry, keys) if registry is not None else None
    config = uvicorn.Config(
        AccessLog(create_app(bound, keys, registry), keys_checked=keys is not None),
        log_config=None,  # our logging configuration
        access_log=False,  # AccessLog's instead: no query string of a refused request
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=settings.grace_seconds,  # type: ignore[arg-type]
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=5,
        proxy_headers=False,
        server_header=False,
        ws="none",  # no WebSocket routes: an Upgrade is a plain request (keys checked)
        lifespan="on",
    )
    if context is not None:
        config.load()
        config.ssl = context  # uvicorn's own would never re-read the files
    server = uvicorn.Server(config)
    log.info(
        "listening on %s (%s%s; page %s/, API docs %s/docs)",
        bound.url,
        "plain HTTP" if context is None else "mutual TLS" if context.files.mutual else "TLS",
        ", API keys" if keys else "",
        bound.url,
        bound.url,
    )
    if metrics_port is not None:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        scheme = "https" if context else "http"
        log.info("metrics at %s://%s:%d/metrics", scheme, host, metrics_port)
    if settings.port_file is not None:
        write_port_file(settings.port_file, settings.host, port, metrics_port)
    # uvicorn handles SIGTERM/SIGINT gracefully, then raises the signal again under the
    # handlers that were in place before: make that a clean exit.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server.run(sockets=[sock])
    log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    settings = parse_args(argv)
    configure_logging(settings.log_level)
    try:
        serve(settings)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
