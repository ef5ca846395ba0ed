"""Settings every server process shares; each process reads them from flags, then its env prefix."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass

from imagesim.channel import DEFAULT_MAX_MESSAGE_BYTES, MiB


@dataclass(frozen=True)
class ServerSettings:
    """Network and lifecycle settings of one gRPC server process."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: the OS picks a free port (logged at start)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # both send and receive
    workers: int = 16  # gRPC handler threads
    grace_seconds: float = 10.0  # how long in-flight calls may finish on shutdown

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def env_default(prefix: str, name: str, default: object) -> object:
    """`{prefix}{NAME}` from the environment, else `default` (flags override both)."""
    return os.environ.get(f"{prefix}{name.upper()}", default)


def add_server_arguments(
    parser: argparse.ArgumentParser, env_prefix: str, default_port: int
) -> None:
    """The flags every server takes; defaults come from `{env_prefix}HOST` etc."""

    def env(name: str, default: object) -> object:
        return env_default(env_prefix, name, default)

    group = parser.add_argument_group("server")
    group.add_argument(
        "--host",
        default=env("host", "127.0.0.1"),
        help="address to bind (default 127.0.0.1; 0.0.0.0 for all interfaces)",
    )
    group.add_argument(
        "--port",
        type=int,
        default=int(env("port", default_port)),  # type: ignore[arg-type]
        help=f"port to bind, 0 for any free port (default {default_port})",
    )
    group.add_argument(
        "--max-message-mb",
        type=float,
        default=float(env("max_message_mb", 64)),  # type: ignore[arg-type]
        help="largest gRPC message sent or received, MiB (default 64)",
    )
    group.add_argument(
        "--workers",
        type=int,
        default=int(env("workers", 16)),  # type: ignore[arg-type]
        help="gRPC handler threads (default 16)",
    )
    group.add_argument(
        "--grace",
        type=float,
        default=float(env("grace", 10.0)),  # type: ignore[arg-type]
        help="seconds in-flight calls may finish on SIGTERM/SIGINT (default 10)",
    )
    group.add_argument(
        "--log-level",
        default=env("log_level", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )


def server_settings(args: argparse.Namespace) -> ServerSettings:
    return ServerSettings(
        host=args.host,
        port=args.port,
        max_message_bytes=int(args.max_message_mb * MiB),
        workers=args.workers,
        grace_seconds=args.grace,
    )


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
