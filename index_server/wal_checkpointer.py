"""Copies a shard store's SQLite write-ahead log into its database on a thread of its own.

SQLite's automatic checkpoint runs inside the commit that crosses its threshold: one Add in
eight paid for copying the last 64 MB of the log into the database and fsyncing it (about a
third of an Add's time at 2048-d). Here the writer connection never checkpoints itself.
Once `every_bytes` have been committed, this thread copies the log in two passes:

1. a PASSIVE checkpoint beside the writer (no lock; SQLite lets it run while new frames are
   appended): it copies everything committed when it began, the bulk of the work;
2. the same again under the store's writer lock, which copies only what was appended during
   pass 1. With nothing left to copy, the next write transaction starts the log over, so the
   log stays near `every_bytes` plus what one pass 1 lasts, however long the writes go on.

A reader holding an old snapshot (a build reading the store) stops a checkpoint at its
snapshot, as with SQLite's own; the log then grows until the reader finishes. Durability is
unchanged: commits still fsync the log (`synchronous=FULL`), a checkpoint only moves pages.

Lock order: the writer lock is taken only for pass 2, after this thread's own condition is
released; `wrote` (called with the writer lock held) only takes the condition.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

EVERY_BYTES = 64 * 1024 * 1024


class WalCheckpointer:
    def __init__(
        self, path: Path, writer_lock: threading.Lock, every_bytes: int = EVERY_BYTES
    ) -> None:
        self.every_bytes = every_bytes
        self.checkpoints = 0  # completed rounds (both passes)
        self._writer_lock = writer_lock
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=10000")
        self._pending = 0  # bytes committed since the last round began
        self._closed = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def wrote(self, nbytes: int) -> None:
        """A commit of about `nbytes` went into the log (cheap: never waits on a checkpoint)."""
        with self._wake:
            self._pending += nbytes
            if self._pending >= self.every_bytes:
                self._wake.notify()

    def close(self) -> None:
        """Stop the thread (after the round it is in) and close its connection."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()
        self._db.close()

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._closed or self._pending >= self.every_bytes)
                if self._closed:
                    return
                self._pending = 0
            try:
                self._checkpoint()  # pass 1, beside the writer
                with self._writer_lock:
                    self._checkpoint()  # pass 2, what pass 1 did not see
                self.checkpoints += 1
            except sqlite3.Error as error:  # e.g. disk full: the log keeps the data
                log.warning("WAL checkpoint failed (the log keeps every write): %s", error)

    def _checkpoint(self) -> None:
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
