"""The CLI's connection-security flags, added to every command that talks to a server: the
declarations of ChannelSecurity (imagesim.channel), so each flag, its variable (IMAGESIM_TLS_CA,
IMAGESIM_TLS_CLIENT_CERT, IMAGESIM_TLS_CLIENT_KEY, IMAGESIM_TLS_SERVER_NAME, IMAGESIM_API_KEY)
and its help are said once. Flags override the environment. Prefer IMAGESIM_API_KEY to
--api-key: other users of the machine can read a process's command line."""

from __future__ import annotations

import argparse

from imagesim.channel import CLIENT_ENV_PREFIX, ChannelSecurity
from imagesim.settings_base import add_arguments, from_args

_SERVER_OPTIONS = ("--shards", "--embedder", "--from")
GROUP = "connection security"


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
        if any(option in sub._option_string_actions for option in _SERVER_OPTIONS):
            add_arguments(sub, ChannelSecurity, CLIENT_ENV_PREFIX, GROUP)


def security_from_args(args: argparse.Namespace) -> ChannelSecurity:
    """The flags given on the command line, over the environment's settings."""
    if not hasattr(args, "tls_ca"):  # a command that talks to no server
        return ChannelSecurity.from_env()
    return from_args(ChannelSecurity, args)
