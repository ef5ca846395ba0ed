"""Durable key -> (vector, metadata) storage for one shard: SQLite in WAL mode.

Why SQLite: every Add/Remove is one transaction, and with `journal_mode=WAL` +
`synchronous=FULL` the WAL is fsynced at each commit, so an acknowledged write survives
`kill -9` or power loss; recovery is SQLite's own, not a hand-written log replay. It also gives
the key map, metadata and the shard's recorded layout in one file.

Every write gets a sequence number from a persisted counter; an Annoy generation records the
sequence number of each item it holds, so after a restart the shard knows which items are
newer than the live generation (staged) and which of its items are gone (hidden).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS layout (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    vector BLOB NOT NULL,
    metadata TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class StoredItem:
    key: str
    seq: int
    vector: np.ndarray
    metadata: dict[str, str]


def _row_item(row: tuple) -> StoredItem:
    key, seq, blob, metadata = row
    return StoredItem(key, seq, np.frombuffer(blob, dtype="<f4"), json.loads(metadata))


class ItemStore:
    """All items of a shard. Thread-safe; writes are serialized and durable when they return."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = self._connect()
        self._db.executescript(SCHEMA)
        self._seq = int(self.layout().get("seq", "0"))

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def layout(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT name, value FROM layout").fetchall())

    def set_layout(self, values: dict[str, str]) -> None:
        with self._lock:
            self._db.executemany(  # autocommit: one statement, one transaction
                "INSERT OR REPLACE INTO layout (name, value) VALUES (?, ?)", values.items()
            )

    def upsert(
        self, items: list[tuple[str, np.ndarray, dict[str, str]]]
    ) -> list[tuple[str, int, bool]]:
        """Add or replace items in one transaction; returns (key, seq, replaced) for each."""
        results = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._seq
                for key, vector, metadata in items:
                    seq += 1
                    replaced = (
                        self._db.execute("SELECT 1 FROM items WHERE key = ?", (key,)).fetchone()
                        is not None
                    )
                    self._db.execute(
                        "INSERT OR REPLACE INTO items (key, seq, vector, metadata) "
                        "VALUES (?, ?, ?, ?)",
                        (key, seq, vector.astype("<f4").tobytes(), json.dumps(metadata)),
                    )
                    results.append((key, seq, replaced))
                self._db.execute(
                    "INSERT OR REPLACE INTO layout (name, value) VALUES ('seq', ?)", (str(seq),)
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._seq = seq
        return results

    def delete(self, keys: list[str]) -> list[str]:
        """Delete keys in one transaction; returns those that were present."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                removed = [
                    key
                    for key in dict.fromkeys(keys)
                    if self._db.execute("DELETE FROM items WHERE key = ?", (key,)).rowcount
                ]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return removed

    def get(self, key: str) -> StoredItem | None:
        with self._lock:
            row = self._db.execute(
                "SELECT key, seq, vector, metadata FROM items WHERE key = ?", (key,)
            ).fetchone()
        return _row_item(row) if row else None

    def items(self, keys: list[str]) -> list[StoredItem]:
        """The items with these keys (absent keys are skipped)."""
        found = []
        with self._lock:
            for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = keys[start : start + 500]
                found.extend(
                    _row_item(row)
                    for row in self._db.execute(
                        "SELECT key, seq, vector, metadata FROM items WHERE key IN "
                        f"({','.join('?' * len(chunk))})",
                        chunk,
                    )
                )
        return found

    def metadata(self, keys: list[str]) -> dict[str, dict[str, str]]:
        return {item.key: item.metadata for item in self.items(keys)}

    def key_seqs(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT key, seq FROM items").fetchall())

    def iter_items(self) -> Iterator[StoredItem]:
        """A consistent snapshot of all items in write order (own connection: safe to run
        while writes go on)."""
        reader = self._connect()
        try:
            reader.execute("BEGIN")
            cursor = reader.execute("SELECT key, seq, vector, metadata FROM items ORDER BY seq")
            for row in cursor:
                yield _row_item(row)
            reader.execute("COMMIT")
        finally:
            reader.close()
