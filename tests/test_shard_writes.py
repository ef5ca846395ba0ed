"""The write path's overlap of work: the store's log copied into its database on a thread of
its own, and the staged rows written while the transaction commits (real SQLite, no gRPC)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from imagesim.enums import Metric
from imagesim.index_server import builds as builds_module
from imagesim.index_server.generation import Generation
from imagesim.index_server.generation_builder import GenerationBuilder
from imagesim.index_server.item_store import ItemStore
from imagesim.index_server.staging import StagingSet
from tests.test_shard import open_shard, search, vectors

MB = 1024 * 1024


def test_the_log_is_copied_into_the_database_while_writes_go_on(tmp_path: Path) -> None:
    store = ItemStore(tmp_path / "items.sqlite3", checkpoint_every=1 * MB)
    database, wal = tmp_path / "items.sqlite3", tmp_path / "items.sqlite3-wal"
    rows = np.random.default_rng(0).normal(size=(64, 2048)).astype(np.float32)  # 512 KiB
    largest = 0
    for batch in range(40):  # 20 MiB in all, with a client's pauses between writes
        store.upsert([(f"b{batch}-{i}", row, {}) for i, row in enumerate(rows)])
        largest = max(largest, wal.stat().st_size)
        time.sleep(0.01)
    # Copied beside the writes, in rounds of the thread (SQLite's own checkpoint, the backstop
    # at 4 MiB of frames here, counts in none of them); the log restarted, so it never held all.
    deadline = time.monotonic() + 30
    while database.stat().st_size < 16 * MB and time.monotonic() < deadline:
        time.sleep(0.05)
    assert database.stat().st_size >= 16 * MB
    assert store._checkpointer.checkpoints >= 2
    assert largest < 8 * MB
    store.close()
    reopened = ItemStore(tmp_path / "items.sqlite3")
    assert len(reopened.key_seqs()) == 40 * 64
    item = reopened.get("b39-63")
    assert item is not None and np.array_equal(item.vector, rows[63])
    reopened.close()


def test_a_snapshot_pins_the_log_and_a_later_round_copies_it_without_new_writes(
    tmp_path: Path,
) -> None:
    store = ItemStore(tmp_path / "items.sqlite3", checkpoint_every=256 * 1024)
    checkpointer = store._checkpointer
    rows = np.random.default_rng(1).normal(size=(32, 2048)).astype(np.float32)
    store.upsert([(f"old{i}", row, {}) for i, row in enumerate(rows)])  # starts a round
    deadline = time.monotonic() + 30
    while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # over before the snapshot begins
    with store.snapshot(2048, rows=8) as (count, blocks):
        done = checkpointer.checkpoints
        assert done >= 1
        for batch in range(8):  # 2 MiB written, rounds requested, during the snapshot
            store.upsert([(f"new{batch}-{i}", row, {}) for i, row in enumerate(rows)])
        time.sleep(0.5)
        seen = [key for block in blocks for key in block.keys]
        assert checkpointer.checkpoints == done  # the snapshot pins what came after it
    assert count == 32 and sorted(seen) == sorted(f"old{i}" for i in range(32))
    deadline = time.monotonic() + 30  # retried every RETRY_SECONDS, with no write to wake it
    while checkpointer.checkpoints == done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpointer.checkpoints > done
    store.close()


def test_reserved_rows_stay_unseen_until_published() -> None:
    staging = StagingSet(4, capacity=2)
    data = np.eye(4, dtype=np.float32)
    staging.put_many(["a"], [1], data[:1])
    reserved = staging.reserve(data[1:4])  # grows the arrays: readers keep the old ones
    assert staging.snapshot().count == 1
    hits = staging.snapshot().search(data[2:3], 4, Metric.ANGULAR)[0]
    assert [key for _, key in hits] == ["a"]
    staging.publish(["b", "c", "d"], [2, 3, 4], reserved)
    hits = staging.snapshot().search(data[2:3], 1, Metric.ANGULAR)[0]
    assert [key for _, key in hits] == ["c"]
    stale = staging.reserve(data[:1])
    staging.put_many(["e"], [5], data[:1])  # another write got there first
    with pytest.raises(ValueError, match="another state"):
        staging.publish(["f"], [6], stale)


def test_a_write_whose_transaction_fails_stages_nothing(tmp_path: Path) -> None:
    shard = open_shard(tmp_path)
    data = vectors(200)
    shard.add([("kept", data[0], {})])
    upsert = shard.store.upsert

    def failing(items):
        raise OSError(28, os.strerror(28))  # disk full, after the staged rows were written

    shard.store.upsert = failing  # type: ignore[method-assign]
    with pytest.raises(OSError, match="No space"):  # 99 rows: the staging arrays grow
        shard.add([(f"lost{i}", data[i], {}) for i in range(1, 100)])
    assert shard.stats().count == 1
    assert [hit.key for hit in search(shard, data[2], 3)] == ["kept"]
    shard.store.upsert = upsert  # type: ignore[method-assign]
    shard.add([(f"next{i}", data[i], {}) for i in range(100, 200)])  # reuses the rows
    assert [hit.key for hit in search(shard, data[150], 1)] == ["next150"]
    assert shard.stats().count == 101
    shard.close()


def test_a_write_whose_staging_fails_beside_the_commit_is_staged_again(
    tmp_path: Path, monkeypatch
) -> None:
    shard = open_shard(tmp_path)
    data = vectors(3)
    staging = shard._view.staging
    reserve = staging.reserve
    calls: list[int] = []

    def flaky(vectors: np.ndarray):
        calls.append(len(vectors))
        if len(calls) == 1:
            raise OSError(28, os.strerror(28))  # the scratch file, after the commit
        return reserve(vectors)

    monkeypatch.setattr(staging, "reserve", flaky)
    shard.add([(f"k{i}", data[i], {}) for i in range(3)])  # durable, so it must show
    assert calls == [3, 3]
    assert [hit.key for hit in search(shard, data[1], 1)] == ["k1"]
    shard.close()


def test_searches_and_writes_go_on_while_a_build_runs(tmp_path: Path, monkeypatch) -> None:
    entered, release = threading.Event(), threading.Event()

    class HeldBuilder(GenerationBuilder):
        def finish(self, trees: int) -> Generation:
            entered.set()
            assert release.wait(30)
            return super().finish(trees)

    monkeypatch.setattr(builds_module, "GenerationBuilder", HeldBuilder)
    shard = open_shard(tmp_path, auto_build=0)
    data = vectors(40)
    shard.add([(f"k{i}", data[i], {}) for i in range(30)])
    building = threading.Thread(target=shard.build)
    building.start()
    try:
        assert entered.wait(30)  # the build read its snapshot and is making its trees
        assert [hit.key for hit in search(shard, data[3], 1)] == ["k3"]
        shard.add([(f"late{i}", data[i], {}) for i in range(30, 40)])  # the store's writer
        assert [hit.key for hit in search(shard, data[35], 1)] == ["late35"]
    finally:
        release.set()
        building.join()
    stats = shard.stats()
    assert (stats.generation, stats.count) == (1, 40)
    assert [hit.key for hit in search(shard, data[35], 1)] == ["late35"]  # still staged
    shard.close()
