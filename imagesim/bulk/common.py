"""What every bulk engine shares: a file's item key and default metadata (from its header
alone), and the report of a run (done, failed with reasons, ...)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from imagesim.errors import InvalidArgument
from imagesim.images import image_size


@dataclass
class BulkReport:
    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    already: int = 0  # skipped because a previous run had done them
    per_shard: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    resent: int = 0  # images sent again after their stream broke (none lost)
    streams_broken: int = 0  # embed streams that broke on a transient failure and were replaced
    # Why the final Build was not run ("" when it ran or was not asked for): the key lacks the
    # admin role Build needs; the shards build in the background instead.
    build_skipped: str = ""

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def path_key(path: Path) -> str:
    """The item key of a file: its path as given. A name that is not valid UTF-8 cannot be a
    key (keys are UTF-8 strings on the wire): ValueError, and the file is reported."""
    key = str(path)
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise ValueError(f"file name is not valid UTF-8: {shown}") from None
    return key


def image_metadata(data: bytes, mtime: float) -> dict[str, str]:
    """The default metadata of an image file (file size, width, height, mtime), from its
    header alone; ValueError with a reason if it is empty or does not look like an image."""
    if not data:
        raise ValueError("empty file")
    try:
        width, height = image_size(data)
    except InvalidArgument as exc:  # its message says what the data is, never a Python repr
        raise ValueError(f"not a readable image: {exc.message}") from None
    return {
        "file_size": str(len(data)),
        "width": str(width),
        "height": str(height),
        "mtime": str(int(mtime)),
    }


def write_failures(report: BulkReport, path: Path) -> None:
    """The failed files, one `path<TAB>reason` line each."""
    with open(path, "w", encoding="utf-8") as f:
        for failed, reason in report.failed:
            f.write(f"{failed}\t{reason}\n")
