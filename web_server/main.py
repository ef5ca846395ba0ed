"""`imagesim-web`: the web page and HTTP/JSON API process (uvicorn).

Lifecycle: bind (port 0: any free port) -> announce the port (log line and --port-file) ->
serve -> on SIGTERM/SIGINT stop accepting connections, let requests in flight finish within
--grace seconds, stop a duplicate search under way, close the service channels, exit 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys

from imagesim.serving.portfile import write_port_file
from imagesim.serving.settings import configure_logging
from imagesim.web.settings import WebSettings, parse_args

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


def serve(settings: WebSettings) -> None:
    import uvicorn

    from imagesim.web.app import create_app

    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    bound = WebSettings(**{**settings.__dict__, "port": port})
    config = uvicorn.Config(
        create_app(bound),
        log_config=None,  # our logging configuration
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=settings.grace_seconds,  # type: ignore[arg-type]
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=5,
        proxy_headers=False,
        server_header=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    log.info("listening on %s (page %s/, API docs %s/docs)", bound.url, bound.url, bound.url)
    if settings.port_file is not None:
        write_port_file(settings.port_file, settings.host, port)
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
