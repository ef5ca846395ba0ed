"""Settings every server process shares. Each flag's default comes from the environment
(`{PREFIX}{FLAG_NAME}`, e.g. IMAGESIM_INDEX_PORT), then the built-in default; flags win."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from imagesim.channel import DEFAULT_MAX_MESSAGE_BYTES
from imagesim.security import TlsFiles, check_exposure
from imagesim.types import (
    DEFAULT_HEALTH_WATCH_LIFETIME,
    DEFAULT_MAX_HEALTH_WATCHES,
    DEFAULT_MAX_STREAMS,
    DEFAULT_STREAM_IDLE_TIMEOUT,
    MiB,
    StreamLimits,
)
from imagesim.version import add_version_flag

DEFAULT_WORKERS = 16
# A client connection is closed (GOAWAY) after about this long, so clients balanced over
# replicas reconnect and re-resolve: a new or restarted replica gets its share within minutes.
DEFAULT_MAX_CONNECTION_AGE = 300.0  # seconds; gRPC adds +-10% jitter


@dataclass(frozen=True)
class ServerSettings:
    """Network, security and lifecycle settings of one gRPC server process."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: the OS picks a free port (logged and written to port_file)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # both send and receive
    workers: int = DEFAULT_WORKERS  # gRPC handler threads
    grace_seconds: float = 10.0  # how long in-flight calls may finish on shutdown
    max_streams: int = DEFAULT_MAX_STREAMS  # streaming calls at once (< workers)
    stream_idle_timeout: float = DEFAULT_STREAM_IDLE_TIMEOUT  # 0 = streams may idle forever
    max_health_watches: int = DEFAULT_MAX_HEALTH_WATCHES  # health Watch streams at once
    health_watch_lifetime: float = DEFAULT_HEALTH_WATCH_LIFETIME  # s a Watch lasts; 0 = forever
    # Calls running or queued for a thread at once; beyond it calls fail fast with
    # RESOURCE_EXHAUSTED instead of queueing until their deadline. 0 = 4 x workers.
    max_concurrent_rpcs: int = 0
    tls: TlsFiles | None = None  # None: plaintext
    api_keys: Path | None = None  # `ROLE KEY` file; None: no key needed
    insecure: bool = False  # allow a non-loopback bind without TLS and authentication
    reflection: bool = True
    # JSON {"host", "port", "pid", "metrics_port", "ready"} after binding; ready once SERVING
    port_file: Path | None = None
    metrics_port: int | None = None  # Prometheus /metrics; None = off, 0 = any free port
    # Close each client connection after this many seconds (0 = never); calls in flight then
    # have `max_connection_age_grace` seconds to finish (0 = as long as they take: a bulk
    # stream or a Scan is never cut by it, new calls go over a new connection meanwhile).
    max_connection_age: float = DEFAULT_MAX_CONNECTION_AGE
    max_connection_age_grace: float = 0.0

    def connection_options(self) -> list[tuple[str, int]]:
        """gRPC server options for the connection age (none when it is 0)."""
        if self.max_connection_age <= 0:
            return []
        options = [("grpc.max_connection_age_ms", int(self.max_connection_age * 1000))]
        if self.max_connection_age_grace > 0:
            options.append(
                ("grpc.max_connection_age_grace_ms", int(self.max_connection_age_grace * 1000))
            )
        return options

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def stream_limits(self) -> StreamLimits:
        return StreamLimits(
            self.max_streams,
            self.stream_idle_timeout,
            self.max_message_bytes,
            self.max_health_watches,
            self.health_watch_lifetime,
        )

    @property
    def concurrent_rpcs(self) -> int:
        return self.max_concurrent_rpcs or 4 * self.workers

    def problems(self) -> list[str]:
        """What makes these settings unsafe or unworkable (the server refuses to start)."""
        problems = []
        if not 0 < self.max_streams < self.workers:
            problems.append(
                f"--max-streams {self.max_streams} must be between 1 and --workers - 1 "
                f"({self.workers - 1}): unary calls and health checks need threads of their own"
            )
        elif not 0 <= self.max_health_watches < self.workers - self.max_streams:
            problems.append(
                f"--max-streams {self.max_streams} + --max-health-watches "
                f"{self.max_health_watches} must be below --workers ({self.workers}): each open "
                "stream holds a handler thread, and unary calls and health checks need threads "
                "of their own"
            )
        if self.concurrent_rpcs < self.workers:
            problems.append("--max-concurrent-rpcs must be at least --workers")
        exposure = check_exposure(
            self.host,
            tls=self.tls is not None,
            authenticated=self.api_keys is not None or (self.tls is not None and self.tls.mutual),
            insecure=self.insecure,
        )
        if exposure:
            problems.append(exposure)
        return problems


class EnvFlags:
    """Adds flags to an argparse group, each defaulting to its environment variable."""

    def __init__(self, group: argparse._ArgumentGroup, env_prefix: str) -> None:
        self.group = group
        self.env_prefix = env_prefix

    def add(self, flag: str, default: Any, help: str, **kwargs: Any) -> None:
        env = self.env_prefix + flag.lstrip("-").replace("-", "_").upper()
        value = os.environ.get(env)
        if kwargs.pop("required", False) and value is None:
            kwargs["required"] = True
        # argparse converts a string default with `type`, exactly like a command-line value.
        self.group.add_argument(
            flag, default=default if value is None else value, help=f"{help} [{env}]", **kwargs
        )

    def switch(self, flag: str, help: str) -> None:
        """An on/off flag, on by default when its variable is 1, true, yes or on."""
        env = self.env_prefix + flag.lstrip("-").replace("-", "_").upper()
        default = os.environ.get(env, "").strip().lower() in ("1", "true", "yes", "on")
        self.group.add_argument(flag, action="store_true", default=default, help=f"{help} [{env}]")


def server_parser(
    prog: str, description: str, env_prefix: str, default_port: int
) -> tuple[argparse.ArgumentParser, EnvFlags]:
    """A parser with the flags every server takes; returns it and a helper for more flags."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_version_flag(parser)
    server = EnvFlags(parser.add_argument_group("server"), env_prefix)
    server.add(
        "--host", "127.0.0.1", "address to bind (default 127.0.0.1; 0.0.0.0 for all interfaces)"
    )
    server.add(
        "--port",
        default_port,
        f"port to bind, 0 for any free port (default {default_port})",
        type=int,
    )
    server.add(
        "--max-message-mb",
        64.0,
        "largest gRPC message sent or received, MiB (default 64)",
        type=float,
    )
    server.add(
        "--workers", DEFAULT_WORKERS, f"gRPC handler threads (default {DEFAULT_WORKERS})", type=int
    )
    server.add(
        "--max-streams",
        DEFAULT_MAX_STREAMS,
        f"streaming calls open at once, health watches apart (default {DEFAULT_MAX_STREAMS}); "
        "more get RESOURCE_EXHAUSTED; with --max-health-watches, fewer than --workers",
        type=int,
    )
    server.add(
        "--stream-idle-timeout",
        DEFAULT_STREAM_IDLE_TIMEOUT,
        "end a stream whose client sends nothing for this many seconds (default "
        f"{DEFAULT_STREAM_IDLE_TIMEOUT:g}; 0 = never)",
        type=float,
    )
    server.add(
        "--max-health-watches",
        DEFAULT_MAX_HEALTH_WATCHES,
        "health Watch streams open at once (default "
        f"{DEFAULT_MAX_HEALTH_WATCHES}); they need no key, so they have their own limit and "
        "never take --max-streams slots; more get RESOURCE_EXHAUSTED (Check has no such limit)",
        type=int,
    )
    server.add(
        "--health-watch-lifetime",
        DEFAULT_HEALTH_WATCH_LIFETIME,
        "end a health Watch stream after this many seconds with OK; clients watch again "
        f"(default {DEFAULT_HEALTH_WATCH_LIFETIME:g}; 0 = never)",
        type=float,
    )
    server.add(
        "--max-concurrent-rpcs",
        0,
        "calls running or waiting for a thread at once; more fail fast with "
        "RESOURCE_EXHAUSTED (default 0 = 4 x --workers)",
        type=int,
    )
    server.add(
        "--port-file",
        None,
        'after binding, write {"host", "port", "pid", "metrics_port", "ready"} as JSON here '
        "(atomically): how programs learn a port chosen with --port 0. It is written before "
        "the model or shard is loaded with ready false, and again with ready true once health "
        "is SERVING (false again on shutdown)",
        type=Path,
    )
    server.add(
        "--metrics-port",
        None,
        "serve Prometheus metrics at http://HOST:PORT/metrics (same host and TLS as the "
        "server; 0 = any free port; default off)",
        type=int,
    )
    server.add(
        "--max-connection-age",
        DEFAULT_MAX_CONNECTION_AGE,
        "close each client connection after this many seconds (+-10%%), so clients balanced "
        "over replicas reconnect and find new ones (default "
        f"{DEFAULT_MAX_CONNECTION_AGE:g}; 0 = never)",
        type=float,
    )
    server.add(
        "--max-connection-age-grace",
        0.0,
        "seconds calls in flight on an aged connection may still take (default 0 = as long as "
        "they need: long streams are never cut; new calls use a new connection)",
        type=float,
    )
    server.add(
        "--grace",
        10.0,
        "seconds in-flight calls may finish on SIGTERM/SIGINT (default 10)",
        type=float,
    )
    server.add("--log-level", "INFO", "log level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    add_security_flags(parser, env_prefix)
    return parser, EnvFlags(parser.add_argument_group(prog.removeprefix("imagesim-")), env_prefix)


def add_security_flags(
    parser: argparse.ArgumentParser, env_prefix: str, reflection: bool = True
) -> None:
    """TLS, API keys and --insecure, as every server takes them (`reflection`: also
    --no-reflection, for gRPC servers)."""
    security = EnvFlags(parser.add_argument_group("security"), env_prefix)
    security.add("--tls-cert", None, "TLS certificate chain (PEM); with --tls-key", type=Path)
    security.add("--tls-key", None, "TLS private key (PEM) of --tls-cert", type=Path)
    security.add(
        "--tls-client-ca",
        None,
        "mutual TLS: only clients with a certificate signed by this CA (PEM) may connect",
        type=Path,
    )
    security.add(
        "--api-keys",
        None,
        "file of `ROLE KEY` lines (roles read, write, admin; `sha256:HEX` for a hashed key; "
        "# comments); callers then send `authorization: Bearer KEY`",
        type=Path,
    )
    security.switch(
        "--insecure",
        "allow binding a non-loopback address without TLS and caller authentication",
    )
    if reflection:
        security.switch("--no-reflection", "do not serve gRPC server reflection")


def refuse(message: str, prog: str | None = None) -> NoReturn:
    """Settings a server must not start with: one line on stderr, exit code 2."""
    print(f"{prog or Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
    sys.exit(2)


def tls_files(args: argparse.Namespace, prog: str | None = None) -> TlsFiles | None:
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            refuse("--tls-client-ca needs --tls-cert and --tls-key", prog)
        return None
    if args.tls_cert is None or args.tls_key is None:
        refuse("TLS needs both --tls-cert and --tls-key", prog)
    return TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca)


def server_settings(args: argparse.Namespace) -> ServerSettings:
    return ServerSettings(
        host=args.host,
        port=args.port,
        max_message_bytes=int(args.max_message_mb * MiB),
        workers=args.workers,
        grace_seconds=args.grace,
        max_streams=args.max_streams,
        stream_idle_timeout=args.stream_idle_timeout,
        max_health_watches=args.max_health_watches,
        health_watch_lifetime=args.health_watch_lifetime,
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        tls=tls_files(args),
        api_keys=args.api_keys,
        insecure=args.insecure,
        reflection=not args.no_reflection,
        port_file=args.port_file,
        metrics_port=args.metrics_port,
        max_connection_age=args.max_connection_age,
        max_connection_age_grace=args.max_connection_age_grace,
    )


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
