"""Durable key -> (vector, metadata) storage for one shard: SQLite in WAL mode.

Why SQLite: every Add/Remove is one transaction, and with `journal_mode=WAL` +
`synchronous=FULL` the WAL is fsynced at each commit, so an acknowledged write survives
`kill -9` or power loss; recovery is SQLite's own, not a hand-written log replay. It also gives
the key map, metadata (with an index for metadata filters) and the shard's recorded layout in
one file.

Every write gets a sequence number from a persisted counter; an Annoy generation records the
sequence number of each item it holds, so after a restart the shard knows which items are
newer than the live generation (staged) and which of its items are gone (hidden).

Writes go through one connection under a lock; reads use one connection per thread (WAL lets
readers run beside the writer), so searches never wait for a write's fsync. The log is copied
into the database by a thread of its own (`WalCheckpointer`), not inside a writer's commit.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from imagesim.index_server.metadata_index import MetadataIndex, chunks, marks
from imagesim.index_server.wal_checkpointer import EVERY_BYTES, WalCheckpointer, backstop_frames

T = TypeVar("T")

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS layout (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    vector BLOB NOT NULL,
    metadata TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (name, value, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS meta_by_key ON meta (key);
"""
PAGE_BYTES = 65536
SNAPSHOT_ROWS = 1024  # items per block a build reads from its snapshot
# Page cache of each reader connection (one per handler thread): small, so a shard's memory
# does not grow with the number of threads that have served a read.
READER_CACHE_KIB = 512
JOURNAL_SIZE_LIMIT = 128 * 1024 * 1024


@dataclass(frozen=True)
class StoredItem:
    key: str
    seq: int
    vector: np.ndarray
    metadata: dict[str, str]


def _row_item(row: tuple[Any, ...]) -> StoredItem:
    key, seq, blob, metadata = row
    return StoredItem(key, seq, np.frombuffer(blob, dtype="<f4"), json.loads(metadata))


@dataclass(frozen=True)
class Block:
    """Consecutive items of a snapshot: their keys, write sequence numbers and vectors."""

    keys: list[str]
    seqs: list[int]
    vectors: np.ndarray  # (len(keys), dims) float32


def _blocks(cursor: sqlite3.Cursor, dims: int, rows: int) -> Iterator[Block]:
    while batch := cursor.fetchmany(rows):
        keys, seqs, blobs = zip(*batch, strict=True)
        vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(batch), dims)
        yield Block(list(keys), list(seqs), vectors)


def _blob(vector: np.ndarray) -> memoryview | bytes:
    """A vector's bytes for its BLOB: a view of a contiguous little-endian float32 row (no
    copy), else a copy."""
    row = vector.astype("<f4", copy=False)
    return row.data if row.flags.c_contiguous else row.tobytes()


def _json(metadata: Mapping[str, str]) -> str:
    return json.dumps(dict(metadata)) if metadata else "{}"


class ItemStore:
    """All items of a shard. Thread-safe; writes are serialized and durable when they return."""

    def __init__(self, path: Path, checkpoint_every: int = EVERY_BYTES) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # the writer connection
        self._readers = threading.local()
        self._connections_lock = threading.Lock()  # the list below (never waits on a write)
        self._reader_connections: list[sqlite3.Connection] = []
        self._db = self._connect()
        # The checkpointer's job; SQLite's own, counted in real frames, only as a backstop.
        backstop = backstop_frames(checkpoint_every, PAGE_BYTES)
        self._db.execute(f"PRAGMA wal_autocheckpoint={backstop}")
        # A log that grew (e.g. during a long build's snapshot) shrinks again when it restarts.
        self._db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        self._db.executescript(SCHEMA)  # idempotent: CREATE ... IF NOT EXISTS
        self._checkpointer = WalCheckpointer(self.path, self._lock, PAGE_BYTES, checkpoint_every)
        try:
            with self._lock:
                self._migrate()
            self._seq = int(self.layout().get("seq", "0"))
        except BaseException:
            self.close()
            raise
        self.metadata_index = MetadataIndex(self.reader)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # 64 KiB pages hold several 2048-d vectors each (no overflow chains): half the
        # write time of SQLite's default 4 KiB pages. Takes effect only in a new file.
        db.execute(f"PRAGMA page_size={PAGE_BYTES}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=10000")
        return db

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (opened on first use)."""
        db = getattr(self._readers, "db", None)
        if db is None:
            db = self._connect()
            db.execute("PRAGMA query_only=1")
            db.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
            self._readers.db = db
            with self._connections_lock:
                self._reader_connections.append(db)
        return db

    def _transaction(self, work: Callable[[sqlite3.Connection], T], nbytes: int = 0) -> T:
        """Run `work(db)` in one IMMEDIATE transaction on the writer (caller holds the lock);
        `nbytes`: about what it writes (at least a page is counted)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = work(self._db)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._checkpointer.wrote(max(nbytes, PAGE_BYTES))
        return result

    def _migrate(self) -> None:
        """Schema 1 kept metadata only as JSON: fill the metadata index once."""
        version = self._db.execute("SELECT value FROM layout WHERE name = 'schema'").fetchone()
        if version is not None and int(version[0]) >= SCHEMA_VERSION:
            return

        def fill(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM meta")
            for key, metadata in db.execute("SELECT key, metadata FROM items").fetchall():
                db.executemany(
                    "INSERT INTO meta (name, value, key) VALUES (?, ?, ?)",
                    [(n, v, key) for n, v in json.loads(metadata).items()],
                )
            db.execute(
                "INSERT OR REPLACE INTO layout (name, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )

        self._transaction(fill)

    def close(self) -> None:
        """Close every connection (call once no request uses the store)."""
        self._checkpointer.close()  # before the lock: its last round may need it
        with self._lock, self._connections_lock:
            for db in self._reader_connections:
                db.close()
            self._db.close()

    # ---- layout ---------------------------------------------------------------------------

    def layout(self) -> dict[str, str]:
        return dict(self.reader().execute("SELECT name, value FROM layout").fetchall())

    def set_layout(self, values: Mapping[str, str]) -> None:
        """Record several layout values in one transaction: all or none."""
        with self._lock:
            self._transaction(
                lambda db: db.executemany(
                    "INSERT OR REPLACE INTO layout (name, value) VALUES (?, ?)",
                    list(values.items()),
                )
            )

    # ---- writes ---------------------------------------------------------------------------

    def upsert(
        self, items: list[tuple[str, np.ndarray, Mapping[str, str]]]
    ) -> list[tuple[str, int, bool]]:
        """Add or replace items (distinct keys) in one transaction; returns (key, seq,
        replaced) for each. Set-based: one lookup of the replaced keys, then bulk inserts."""

        def write(db: sqlite3.Connection) -> tuple[list[tuple[str, int, bool]], int]:
            keys = [key for key, _, _ in items]
            present: set[str] = set()
            for chunk in chunks(keys):
                present.update(
                    row[0]
                    for row in db.execute(
                        f"SELECT key FROM items WHERE key IN ({marks(len(chunk))})", chunk
                    )
                )
            for chunk in chunks([key for key in keys if key in present]):
                db.execute(f"DELETE FROM meta WHERE key IN ({marks(len(chunk))})", chunk)
            first = self._seq + 1
            db.executemany(
                "INSERT OR REPLACE INTO items (key, seq, vector, metadata) VALUES (?, ?, ?, ?)",
                [
                    (key, first + n, _blob(vector), _json(metadata))
                    for n, (key, vector, metadata) in enumerate(items)
                ],
            )
            db.executemany(
                "INSERT INTO meta (name, value, key) VALUES (?, ?, ?)",
                [(n, v, key) for key, _, metadata in items for n, v in metadata.items()],
            )
            seq = self._seq + len(items)
            db.execute("INSERT OR REPLACE INTO layout (name, value) VALUES ('seq', ?)", (str(seq),))
            return [(key, first + n, key in present) for n, key in enumerate(keys)], seq

        # What the log gets, roughly: each row, its metadata twice (JSON and index rows)
        nbytes = sum(
            vector.nbytes + len(key) + 2 * sum(len(n) + len(v) for n, v in metadata.items())
            for key, vector, metadata in items
        )
        with self._lock:
            results, self._seq = self._transaction(write, nbytes)
        return results

    def delete(self, keys: list[str]) -> list[str]:
        """Delete keys in one transaction; returns those that were present."""

        def write(db: sqlite3.Connection) -> list[str]:
            removed = []
            for key in dict.fromkeys(keys):
                if db.execute("DELETE FROM items WHERE key = ?", (key,)).rowcount:
                    db.execute("DELETE FROM meta WHERE key = ?", (key,))
                    removed.append(key)
            return removed

        with self._lock:  # a removal may rewrite a page (and an index page) per key
            return self._transaction(write, PAGE_BYTES * len(keys))

    # ---- reads ----------------------------------------------------------------------------

    def get(self, key: str) -> StoredItem | None:
        row = (
            self.reader()
            .execute("SELECT key, seq, vector, metadata FROM items WHERE key = ?", (key,))
            .fetchone()
        )
        return _row_item(row) if row else None

    def items(self, keys: list[str]) -> list[StoredItem]:
        """The items with these keys (absent keys are skipped)."""
        db = self.reader()
        found: list[StoredItem] = []
        for chunk in chunks(keys):
            found.extend(
                _row_item(row)
                for row in db.execute(
                    "SELECT key, seq, vector, metadata FROM items "
                    f"WHERE key IN ({marks(len(chunk))})",
                    chunk,
                )
            )
        return found

    def metadata(self, keys: list[str]) -> dict[str, dict[str, str]]:
        db = self.reader()
        found: dict[str, dict[str, str]] = {}
        for chunk in chunks(keys):
            for key, metadata in db.execute(
                f"SELECT key, metadata FROM items WHERE key IN ({marks(len(chunk))})", chunk
            ):
                found[key] = json.loads(metadata)
        return found

    def key_seqs(self) -> dict[str, int]:
        return dict(self.reader().execute("SELECT key, seq FROM items").fetchall())

    @contextlib.contextmanager
    def snapshot(
        self, dims: int, rows: int = SNAPSHOT_ROWS
    ) -> Iterator[tuple[int, Iterator[Block]]]:
        """(count, blocks of at most `rows` items) of one consistent snapshot of the store,
        read lazily on a connection of its own (safe while writes go on). Blocks come in
        storage order (no sort: a sort of every row would hold them all) and carry no
        metadata, so reading them holds one block at a time."""
        reader = self._connect()
        try:
            reader.execute("BEGIN")
            count = int(reader.execute("SELECT COUNT(*) FROM items").fetchone()[0])
            cursor = reader.execute("SELECT key, seq, vector FROM items")
            yield count, _blocks(cursor, dims, rows)
            reader.execute("COMMIT")
        finally:
            reader.close()

    def page(
        self, start_after: str, limit: int, with_vectors: bool, max_bytes: int
    ) -> list[StoredItem]:
        """Up to `limit` items with keys after `start_after`, in key (byte) order, read in one
        snapshot; stops early once the page holds `max_bytes` (so it fits in a message)."""
        db = self.reader()
        vector = "vector" if with_vectors else "x''"
        page: list[StoredItem] = []
        size = 0
        db.execute("BEGIN")
        try:
            cursor = db.execute(
                f"SELECT key, seq, {vector}, metadata FROM items WHERE key > ? "
                "ORDER BY key LIMIT ?",
                (start_after, limit),
            )
            for row in cursor:
                item = _row_item(row)
                size += len(item.key) + item.vector.nbytes + len(row[3]) + 16
                if page and size > max_bytes:
                    break
                page.append(item)
        finally:
            db.execute("COMMIT")
        return page
