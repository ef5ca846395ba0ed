"""Opening the image file of a key, never outside the images root (the web server's thumbnails,
the quarantine of duplicate review).

A relative key is a path under the root; an absolute key is accepted only when it lies in the
root. Refused, whatever the file system holds: empty keys, NUL bytes, any `..` component, and
any path whose real location (every symlink followed) is outside the root. The file is opened
without following a final symlink, without blocking (a FIFO cannot hang a worker), must be a
regular file, and the opened descriptor's own path is checked against the root again, so a
symlink swapped in between the check and the open is caught too.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath

from imagesim.errors import InvalidArgument, NotFound, PermissionDenied, Reason

MAX_KEY_CHARS = 4096


class FileReason(str, Enum):
    """Why a key's file cannot be used (client side: the services never see image files)."""

    OUTSIDE_IMAGES_ROOT = "OUTSIDE_IMAGES_ROOT"  # a key whose file lies outside the images root
    IMAGE_FILE_MISSING = "IMAGE_FILE_MISSING"  # in the collection, but no (regular) file

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class OpenedFile:
    fd: int
    path: str  # real path
    size: int
    version: tuple[
        int, int, int, int
    ]  # device, inode, size, mtime (ns): changes when the file does


def _outside(key: str) -> PermissionDenied:
    return PermissionDenied(
        f"{key[:200]!r} is not a file under the images root", reason=FileReason.OUTSIDE_IMAGES_ROOT
    )


def _missing(key: str, why: str) -> NotFound:
    return NotFound(f"no image file for {key[:200]!r}: {why}", reason=FileReason.IMAGE_FILE_MISSING)


class ImagesRoot:
    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise NotADirectoryError(f"images root {root} is not a directory")

    def _inside(self, real: str) -> bool:
        return os.path.commonpath([self.root, real]) == self.root and real != self.root

    def path_of(self, key: str) -> str:
        """The real path of `key`'s file: PermissionDenied (OUTSIDE_IMAGES_ROOT) if it is not
        under the root."""
        if not key or len(key) > MAX_KEY_CHARS:
            raise InvalidArgument("the key is empty or too long", reason=Reason.KEY_EMPTY)
        if "\0" in key or ".." in PurePosixPath(key).parts:
            raise _outside(key)
        candidate = key if os.path.isabs(key) else os.path.join(self.root, key)
        real = os.path.realpath(candidate)
        if not self._inside(real):
            raise _outside(key)
        return real

    def open(self, key: str) -> OpenedFile:
        """Open `key`'s file for reading (the caller closes `fd`)."""
        real = self.path_of(key)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise _missing(key, "not found") from None
        except OSError as exc:
            # ELOOP: the final component became a symlink after the check.
            raise _missing(key, exc.strerror or "cannot be opened") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise _missing(key, "not a regular file")
            # Linux: where the opened descriptor really points.
            if os.path.isdir("/proc/self/fd") and not self._inside(
                os.path.realpath(f"/proc/self/fd/{fd}")
            ):
                raise _outside(key)
            return OpenedFile(
                fd, real, info.st_size, (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
            )
        except BaseException:
            os.close(fd)
            raise
