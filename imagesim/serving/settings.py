"""Settings every server process shares, declared once (imagesim.settings_base): each flag's
default comes from the environment (`{PREFIX}{FLAG_NAME}`, e.g. IMAGESIM_INDEX_PORT), then the
declared default; flags win."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from imagesim.channel import DEFAULT_MAX_MESSAGE_BYTES
from imagesim.security import TlsFiles, check_exposure
from imagesim.settings_base import add_arguments, from_args, setting
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
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, kw_only=True)
class SecuritySettings:
    """TLS, API keys and --insecure, as every server takes them (gRPC and web alike)."""

    tls_cert: Path | None = setting(
        None, "TLS certificate chain (PEM); with --tls-key", group="security"
    )
    tls_key: Path | None = setting(None, "TLS private key (PEM) of --tls-cert", group="security")
    tls_client_ca: Path | None = setting(
        None,
        "mutual TLS: only clients with a certificate signed by this CA (PEM) may connect",
        group="security",
    )
    api_keys: Path | None = setting(
        None,
        "file of `ROLE KEY` lines (roles read, write, admin; `sha256:HEX` for a hashed key; "
        "# comments); callers then send `authorization: Bearer KEY`",
        group="security",
    )  # None: no key needed
    insecure: bool = setting(
        False,
        "allow binding a non-loopback address without TLS and caller authentication",
        group="security",
    )

    @property
    def tls(self) -> TlsFiles | None:
        """None: plaintext."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        return TlsFiles(self.tls_cert, self.tls_key, self.tls_client_ca)

    def tls_problem(self) -> str | None:
        if (self.tls_cert is None) != (self.tls_key is None):
            return "TLS needs both --tls-cert and --tls-key"
        if self.tls_cert is None and self.tls_client_ca is not None:
            return "--tls-client-ca needs --tls-cert and --tls-key"
        return None

    def security_problems(self, host: str) -> list[str]:
        """Why these security settings cannot serve on `host` (empty: they can)."""
        problem = self.tls_problem()
        if problem:
            return [problem]
        tls = self.tls
        exposure = check_exposure(
            host,
            tls=tls is not None,
            authenticated=self.api_keys is not None or (tls is not None and tls.mutual),
            insecure=self.insecure,
        )
        return [exposure] if exposure else []


@dataclass(frozen=True, kw_only=True)
class ServerSettings(SecuritySettings):
    """Network, security and lifecycle settings of one gRPC server process (flags of the
    section "server" unless said otherwise)."""

    host: str = setting("127.0.0.1", "address to bind (0.0.0.0 for all interfaces)")
    port: int = setting(0, "port to bind, 0 for any free port")
    max_message_bytes: int = setting(
        DEFAULT_MAX_MESSAGE_BYTES,
        "largest gRPC message sent or received, MiB",
        flag="--max-message-mb",
        scale=MiB,
    )
    workers: int = setting(DEFAULT_WORKERS, "gRPC handler threads")
    max_streams: int = setting(
        DEFAULT_MAX_STREAMS,
        "streaming calls open at once, health watches apart; more get RESOURCE_EXHAUSTED; "
        "with --max-health-watches, fewer than --workers",
    )
    stream_idle_timeout: float = setting(
        DEFAULT_STREAM_IDLE_TIMEOUT,
        "end a stream whose client sends nothing for this many seconds (0 = never)",
    )
    max_health_watches: int = setting(
        DEFAULT_MAX_HEALTH_WATCHES,
        "health Watch streams open at once; they need no key, so they have their own limit and "
        "never take --max-streams slots; more get RESOURCE_EXHAUSTED (Check has no such limit)",
    )
    health_watch_lifetime: float = setting(
        DEFAULT_HEALTH_WATCH_LIFETIME,
        "end a health Watch stream after this many seconds with OK; clients watch again "
        "(0 = never)",
    )
    max_concurrent_rpcs: int = setting(
        0,
        "calls running or waiting for a thread at once; more fail fast with "
        "RESOURCE_EXHAUSTED (0 = 4 x --workers)",
    )
    port_file: Path | None = setting(
        None,
        'after binding, write {"host", "port", "pid", "metrics_port", "ready"} as JSON here '
        "(atomically): how programs learn a port chosen with --port 0. It is written before "
        "the model or shard is loaded with ready false, and again with ready true once health "
        "is SERVING (false again on shutdown)",
    )
    metrics_port: int | None = setting(
        None,
        "serve Prometheus metrics at http://HOST:PORT/metrics (same host and TLS as the "
        "server; 0 = any free port)",
        default_text="off",
    )
    max_connection_age: float = setting(
        DEFAULT_MAX_CONNECTION_AGE,
        "close each client connection after this many seconds (+-10%), so clients balanced "
        "over replicas reconnect and find new ones (0 = never)",
    )
    max_connection_age_grace: float = setting(
        0.0,
        "seconds calls in flight on an aged connection may still take (0 = as long as "
        "they need: long streams are never cut; new calls use a new connection)",
    )
    grace_seconds: float = setting(
        10.0, "seconds in-flight calls may finish on SIGTERM/SIGINT", flag="--grace"
    )
    log_level: str = setting("INFO", "log level", choices=LOG_LEVELS)
    no_reflection: bool = setting(False, "do not serve gRPC server reflection", group="security")

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
    def reflection(self) -> bool:
        return not self.no_reflection

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def stream_limits(self) -> StreamLimits:
        return StreamLimits(
            max_streams=self.max_streams,
            idle_timeout=self.stream_idle_timeout,
            max_message_bytes=self.max_message_bytes,
            max_health_watches=self.max_health_watches,
            health_watch_lifetime=self.health_watch_lifetime,
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
        return problems + self.security_problems(self.host)


def server_parser(
    prog: str, description: str, env_prefix: str, default_port: int
) -> argparse.ArgumentParser:
    """A parser with the flags every server takes (ServerSettings, in sections server and
    security); a server adds its own with add_arguments."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_version_flag(parser)
    parser.add_argument_group("server")  # before security in --help
    add_arguments(parser, ServerSettings, env_prefix, "server", {"port": default_port})
    return parser


def refuse(message: str, prog: str | None = None) -> NoReturn:
    """Settings a server must not start with: one line on stderr, exit code 2."""
    print(f"{prog or Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
    sys.exit(2)


def server_settings(args: argparse.Namespace) -> ServerSettings:
    """The parsed flags' ServerSettings; a TLS file without its pair refuses to start."""
    settings = from_args(ServerSettings, args)
    problem = settings.tls_problem()
    if problem:
        refuse(problem)
    return settings


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
