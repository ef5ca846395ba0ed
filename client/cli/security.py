"""The CLI's connection-security flags, added to every command that talks to a server.

Flags override the environment (IMAGESIM_TLS_CA, IMAGESIM_TLS_CERT, IMAGESIM_TLS_KEY,
IMAGESIM_API_KEY, IMAGESIM_TLS_SERVER_NAME). Prefer IMAGESIM_API_KEY to --api-key: other users
of the machine can read a process's command line."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from imagesim.channel import ChannelSecurity

_SERVER_OPTIONS = ("--shards", "--embedder", "--from")


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += [sub, *_subparsers(sub)]
    return found


def add_security_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the flags to each (sub)command that talks to servers (--shards, --embedder or
    --from)."""
    for sub in _subparsers(parser):
        if not any(option in sub._option_string_actions for option in _SERVER_OPTIONS):
            continue
        group = sub.add_argument_group("connection security")
        group.add_argument(
            "--tls-ca",
            type=Path,
            help="CA certificate (PEM) that signed the servers' certificates: turns TLS on "
            "[IMAGESIM_TLS_CA]",
        )
        group.add_argument(
            "--tls-cert", type=Path, help="client certificate for mutual TLS [IMAGESIM_TLS_CERT]"
        )
        group.add_argument(
            "--tls-key", type=Path, help="private key of --tls-cert [IMAGESIM_TLS_KEY]"
        )
        group.add_argument(
            "--tls-server-name",
            help="name to check in the servers' certificates instead of the host "
            "[IMAGESIM_TLS_SERVER_NAME]",
        )
        group.add_argument(
            "--api-key",
            help="sent as `authorization: Bearer KEY` (prefer the variable: a command line "
            "is visible to other users) [IMAGESIM_API_KEY]",
        )


def security_from_args(args: argparse.Namespace) -> ChannelSecurity:
    """The environment's settings, with the flags given on the command line on top."""
    security = ChannelSecurity.from_env()
    given = {
        name: getattr(args, name)
        for name in ("tls_ca", "tls_cert", "tls_key", "tls_server_name", "api_key")
        if getattr(args, name, None) is not None
    }
    return dataclasses.replace(security, **given)
