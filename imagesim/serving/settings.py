"""Settings every server process shares. Each flag's default comes from the environment
(`{PREFIX}{FLAG_NAME}`, e.g. IMAGESIM_INDEX_PORT), then the built-in default; flags win."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from typing import Any

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


def server_parser(
    prog: str, description: str, env_prefix: str, default_port: int
) -> tuple[argparse.ArgumentParser, EnvFlags]:
    """A parser with the flags every server takes; returns it and a helper for more flags."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
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
    server.add("--workers", 16, "gRPC handler threads (default 16)", type=int)
    server.add(
        "--grace",
        10.0,
        "seconds in-flight calls may finish on SIGTERM/SIGINT (default 10)",
        type=float,
    )
    server.add("--log-level", "INFO", "log level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser, EnvFlags(parser.add_argument_group(prog.removeprefix("imagesim-")), env_prefix)


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
