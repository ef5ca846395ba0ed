"""The installed package's version, and the `--version` flag every program takes."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib import metadata
from typing import Any

DISTRIBUTION = "imagesim"


def package_version() -> str:
    """The version of the installed distribution (pyproject.toml's), from its metadata."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


class _VersionAction(argparse.Action):
    """argparse's "version" action, reading the metadata only when asked (a lookup costs
    ~0.1 s, which every start of a program would pay otherwise)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(f"{parser.prog} {package_version()}")
        parser.exit()


def add_version_flag(parser: argparse.ArgumentParser) -> None:
    """`--version`: prints `PROG VERSION` on stdout and exits 0 (before any required
    argument is checked)."""
    parser.add_argument(
        "--version", action=_VersionAction, help="print the program's version and exit"
    )
