"""Copies a shard store's SQLite write-ahead log into its database on a thread of its own.

SQLite's automatic checkpoint runs inside the commit that crosses its threshold: one Add in
eight paid for copying the last 64 MB of the log into the database and fsyncing it (about a
third of an Add's time at 2048-d). Here, once about `every_bytes` have been committed, this
thread copies the log in rounds:

1. PASSIVE checkpoints beside the writer (no lock; SQLite lets them run while new frames are
   appended), repeated while more than a quarter of `every_bytes` is left to copy: the bulk of
   the work, done while writes go on;
2. one more under the store's writer lock, which copies only the little appended since. With
   nothing left to copy, the next write transaction starts the log over, so the log stays near
   `every_bytes` however long the writes go on.

The bytes a writer reports are an estimate. SQLite's own automatic checkpoint stays on as a
backstop at `BACKSTOP_FRAMES` (4x the target, counted in real log frames): should the estimate
fall short (large metadata, many removals), a commit checkpoints as SQLite always did.

A reader holding an old snapshot (a build reading the store) stops a checkpoint at its
snapshot; the log then grows until the reader finishes. A round that could not copy everything
is retried every `RETRY_SECONDS` until one does, writes or not; so is the first round after the
store opens (a log left by a crash). Durability is unchanged: commits fsync the log
(`synchronous=FULL`), a checkpoint fsyncs the database before the log may restart.

Lock order: the writer lock is taken only for the last pass of a round, after this thread's
own condition is released; `wrote` (called with the writer lock held) only takes the condition.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

EVERY_BYTES = 64 * 1024 * 1024
RETRY_SECONDS = 5.0
UNLOCKED_PASSES = 4  # at most, before the locked one


def backstop_frames(every_bytes: int, page_bytes: int) -> int:
    """The writer's `wal_autocheckpoint`: 4x the target, in log frames (one page each)."""
    return max(1, 4 * every_bytes // page_bytes)


class WalCheckpointer:
    def __init__(
        self,
        path: Path,
        writer_lock: threading.Lock,
        page_bytes: int,
        every_bytes: int = EVERY_BYTES,
    ) -> None:
        self.every_bytes = every_bytes
        self.page_bytes = page_bytes
        self.checkpoints = 0  # rounds that copied the whole log
        self._writer_lock = writer_lock
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA synchronous=FULL")  # the database fsynced before a restart
        self._pending = 0  # bytes committed since the last round began
        self._behind = True  # the log may hold uncopied frames (at start: a crash's)
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
        """Stop the thread (interrupting a pass under way) and close its connection."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._db.interrupt()
        self._thread.join()
        self._db.close()

    def _due(self) -> bool:
        return self._closed or self._pending >= self.every_bytes

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(self._due, timeout=RETRY_SECONDS if self._behind else None)
                if self._closed:
                    return
                self._pending = 0
            try:
                self._behind = not self._round()
                self.checkpoints += not self._behind
            except Exception as error:  # e.g. disk full: the log keeps every write
                self._behind = True
                if not self._closed:
                    log.warning("WAL checkpoint failed (the log keeps every write): %s", error)

    def _round(self) -> bool:
        """Copy the log; True when all of it was copied (the log may restart)."""
        for _ in range(UNLOCKED_PASSES):
            left = self._checkpoint()
            if left * self.page_bytes <= self.every_bytes // 4:
                break
        with self._writer_lock:
            return self._checkpoint() == 0

    def _checkpoint(self) -> int:
        """One PASSIVE pass; returns the frames it could not copy (readers on old ones)."""
        _, frames, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return max(0, int(frames) - int(copied)) if frames >= 0 else 0
