"""`imagesim`: index a folder of images and query it, over the Embedder and Index services.

Runs on the client install alone (grpcio, protobuf, numpy, pillow, tqdm): reduction commands
import their extra's modules lazily and name the extra when it is missing.

This module holds `main`, the top-level parser and the flag sets several commands share (the
servers' addresses, the deadline, the vector space); each command group is a module that
registers its subcommands (`register(commands, parents)`): index (index, export, build, stats,
remove, reshard), search (query, similar), dump, reducer, pictures (duplicates), curate (sync,
apply, undo, outliers). security adds the connection-security flags to every command that
talks to a server; the bulk engines themselves live in imagesim.bulk.
"""

from __future__ import annotations

import argparse
import os
import sys

from imagesim.channel import CLIENT_ENV_PREFIX, Services
from imagesim.client.bulk import DNS_STREAMS
from imagesim.client.cli import curate, dump, index, pictures, reducer, search
from imagesim.client.cli.args import Parents, UsageError, enum_type, values
from imagesim.client.cli.security import add_security_flags, security_from_args
from imagesim.client.rpc import DEFAULT_TIMEOUT, set_default_security
from imagesim.enums import Space
from imagesim.errors import ImagesimError
from imagesim.settings_base import add_arguments
from imagesim.version import add_version_flag

# The command groups, in the order `imagesim --help` lists their commands.
COMMAND_MODULES = (index, search, dump, reducer, pictures, curate)


def parent_parsers() -> Parents:
    """The flag sets several commands share (argparse parents)."""
    common = argparse.ArgumentParser(add_help=False)
    add_arguments(common, Services, CLIENT_ENV_PREFIX, "options", names=["shards"])
    common.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"one deadline for the whole command's calls, seconds (default {DEFAULT_TIMEOUT:g}; "
        "bulk commands: per call)",
    )
    embedding = argparse.ArgumentParser(add_help=False)
    add_arguments(embedding, Services, CLIENT_ENV_PREFIX, "options", names=["embedder"])
    embedding.add_argument(
        "--space",
        type=enum_type(Space, "the space"),
        choices=values(Space),  # shown as {full,reduced}
        default=Space.FULL,
        help="vector space: full (2048-d) or reduced (needs a reducer)",
    )
    bulk = argparse.ArgumentParser(add_help=False)
    bulk.add_argument(
        "--streams",
        type=int,
        default=None,
        metavar="N",
        help="embed streams open at once (default: one per replica named by --embedder, "
        f"{DNS_STREAMS} for a dns:/// name); a stream that breaks is replaced and its "
        "unanswered images are sent again",
    )
    return Parents(common, embedding, bulk)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagesim", description="Image similarity search: index a folder, query an image."
    )
    add_version_flag(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    parents = parent_parsers()
    for module in COMMAND_MODULES:
        module.register(commands, parents)
    add_security_flags(parser)
    return parser


# Exit code when the reader of stdout went away (`imagesim duplicates --json | head`): what a
# shell reports for a program killed by SIGPIPE (128 + 13), as `cat` or `yes` would give.
EXIT_BROKEN_PIPE = 141


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    set_default_security(security_from_args(args))
    try:
        code = args.run(args)
        sys.stdout.flush()  # output piped to a closed reader fails here, not at exit
    except BrokenPipeError:
        # Nothing more can be written: no traceback, and no second error when Python
        # flushes stdout at exit (it would write to the closed pipe again).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_BROKEN_PIPE)
    except UsageError as exc:
        print(f"imagesim {args.command}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except ImagesimError as exc:
        print(f"imagesim: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("imagesim: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code)
