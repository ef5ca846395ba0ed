"""What the CLI's command modules share: argument types (each turns a bad value into a usage
error, exit 2, that says what was expected), the shared flag sets (`Parents`) and
`add_command`, which ties a subcommand to the function that runs it."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from imagesim.enums import parse_enum
from imagesim.settings_base import add_old_flag

E = TypeVar("E", bound=Enum)


def pair(value: str) -> tuple[str, str]:
    name, sep, text = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {value!r}")
    return name, text


def enum_type(cls: type[E], what: str) -> Callable[[str], E]:
    """A closed set typed by its values (`full`, not `Space.FULL`); pair it with
    `choices=values(cls)` so help shows `{full,reduced}`."""

    def convert(value: str) -> E:
        try:
            return cls(parse_enum(cls, value, what))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def values(cls: type[Enum]) -> list[str]:
    return [str(member.value) for member in cls]


class UsageError(Exception):
    """The command line is wrong in a way argparse cannot see: `imagesim CMD: error: ...`,
    exit code 2, as argparse reports its own usage errors."""


def require_directory(path: Path) -> Path:
    """A folder argument: one that is not a directory is a usage error (exit 2). Checked when
    the command runs, not while parsing, so a command line can be checked where the folder
    does not exist (a Kubernetes Job's arguments, say)."""
    if not path.is_dir():
        raise UsageError(
            f"argument DIR: {path} is not a directory"
            if path.exists()
            else f"argument DIR: no such directory: {path}"
        )
    return path


Command = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Parents:
    """The flag sets several commands share, given to each module's `register` as argparse
    parents: `common` (--shards, --timeout), `embedding` (--embedder, --space), `bulk`
    (--streams)."""

    common: argparse.ArgumentParser
    embedding: argparse.ArgumentParser
    bulk: argparse.ArgumentParser


def add_command(
    commands: argparse._SubParsersAction,
    name: str,
    run: Command,
    parents: Sequence[argparse.ArgumentParser] = (),
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """A subcommand whose parsed arguments carry the function that runs it (`args.run`)."""
    parser: argparse.ArgumentParser = commands.add_parser(name, parents=list(parents), **kwargs)
    parser.set_defaults(run=run)
    return parser


def add_renamed_flag(
    parser: argparse.ArgumentParser, flag: str, old: str, **kwargs: Any
) -> argparse.Action:
    """`flag` as help shows it; `old`, its earlier spelling, is still accepted (deprecated:
    imagesim.settings_base.add_old_flag)."""
    action = parser.add_argument(flag, **kwargs)
    add_old_flag(parser, old, flag, action.dest, **kwargs)
    return action
