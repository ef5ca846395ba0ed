"""API keys with roles, read from a file of `ROLE KEY` lines.

    # comment
    read  3f7c0a...          a key given as is
    admin sha256:9b74c9...   the SHA-256 (hex) of a key: the file then holds no secret

Only SHA-256 digests are kept in memory. A presented key is hashed and compared with every
stored digest in constant time (hmac.compare_digest, no early exit), so neither the timing nor
the log tells a caller how close a guess was. Keys are never logged nor put in error messages.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from imagesim.security.roles import Role

log = logging.getLogger(__name__)

MIN_KEY_CHARS = 16  # a shorter key is guessable; generate keys with `openssl rand -hex 32`
_HASH_PREFIX = "sha256:"


class KeyFileError(ValueError):
    """The key file cannot be used; the message names the line, never the key."""


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    role: Role

    def __repr__(self) -> str:  # never print a digest either
        return f"_Entry(role={self.role.label})"


class ApiKeys:
    """The keys of one file: who holds which role."""

    def __init__(self, entries: list[tuple[bytes, Role]]) -> None:
        self._entries = [_Entry(d, r) for d, r in entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"ApiKeys({len(self)} keys)"

    @classmethod
    def parse(cls, text: str, source: str = "key file") -> ApiKeys:
        entries: list[tuple[bytes, Role]] = []
        seen: dict[bytes, int] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            where = f"{source} line {number}"
            if len(parts) != 2:
                raise KeyFileError(f"{where}: expected `ROLE KEY`, found {len(parts)} fields")
            try:
                role = Role.parse(parts[0])
            except ValueError as exc:
                raise KeyFileError(f"{where}: {exc}") from None
            value = parts[1]
            if value.startswith(_HASH_PREFIX):
                hex_digest = value[len(_HASH_PREFIX) :]
                try:
                    key_digest = bytes.fromhex(hex_digest)
                except ValueError:
                    key_digest = b""
                if len(key_digest) != hashlib.sha256().digest_size:
                    raise KeyFileError(f"{where}: sha256: must be followed by 64 hex digits")
            else:
                if len(value) < MIN_KEY_CHARS:
                    raise KeyFileError(
                        f"{where}: key shorter than {MIN_KEY_CHARS} characters "
                        "(make one with `openssl rand -hex 32`)"
                    )
                key_digest = digest(value)
            if key_digest in seen:
                raise KeyFileError(f"{where}: the same key as line {seen[key_digest]}")
            seen[key_digest] = number
            entries.append((key_digest, role))
        if not entries:
            raise KeyFileError(f"{source}: no keys (expected `ROLE KEY` lines)")
        return cls(entries)

    @classmethod
    def load(cls, path: Path) -> ApiKeys:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
        return cls.parse(text, str(path))

    def role_of(self, key: str | None) -> Role | None:
        """The role of `key`, None if it is not one of ours. Constant time in the key."""
        if not key:
            return None
        presented = digest(key)
        found = 0
        for entry in self._entries:  # every entry, no early exit
            match = hmac.compare_digest(presented, entry.digest)
            found |= int(entry.role) * match
        return Role(found) if found else None


class KeyFile:
    """An ApiKeys that follows its file: edits (key rotation) apply without a restart.

    The file is looked at no more than every `check_seconds`; a new version that fails to
    parse is logged and the previous keys stay in force."""

    def __init__(self, path: Path, check_seconds: float = 2.0) -> None:
        self.path = Path(path)
        self.check_seconds = check_seconds
        self._lock = threading.Lock()
        self._keys = ApiKeys.load(self.path)  # a bad file at start-up is fatal (KeyFileError)
        self._signature = self._stat()
        self._checked = time.monotonic()
        self._warn_if_readable_by_others()
        log.info("API keys: %d loaded from %s", len(self._keys), self.path)

    def _stat(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _warn_if_readable_by_others(self) -> None:
        mode = os.stat(self.path).st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
            log.warning("key file %s is accessible to other users (chmod 600 it)", self.path)

    def keys(self) -> ApiKeys:
        now = time.monotonic()
        if now - self._checked < self.check_seconds:
            return self._keys
        with self._lock:
            if now - self._checked < self.check_seconds:
                return self._keys
            self._checked = now
            try:
                signature = self._stat()
                if signature != self._signature:
                    self._keys = ApiKeys.load(self.path)
                    self._signature = signature
                    log.info("API keys reloaded: %d from %s", len(self._keys), self.path)
            except (OSError, KeyFileError) as exc:
                log.error("keeping the previous API keys: %s", exc)
            return self._keys

    def role_of(self, key: str | None) -> Role | None:
        return self.keys().role_of(key)


def bearer_token(authorization: str | None) -> str | None:
    """The KEY of an `authorization: Bearer KEY` header value (None if absent or malformed)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
