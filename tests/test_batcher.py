"""AdaptiveBatcher: batching, ordering, errors, shutdown. In-process, with a numpy model."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from imagesim.embedder_server.batcher import AdaptiveBatcher
from imagesim.errors import Unavailable


class RecordingModel:
    def __init__(self, fail_on: float | None = None) -> None:
        self.batch_sizes: list[int] = []
        self.fail_on = fail_on
        self.release = threading.Event()
        self.release.set()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.release.wait(10)
        self.batch_sizes.append(len(batch))
        if self.fail_on is not None and (batch == self.fail_on).any():
            raise RuntimeError("model failure")
        return batch * 2


def test_concurrent_calls_share_batches_and_get_their_own_rows():
    model = RecordingModel()
    model.release.clear()  # hold the first batch so the others queue up
    batcher = AdaptiveBatcher(model, max_batch_size=8, max_batch_time=0.05)
    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(batcher, np.full(3, i, dtype=np.float32)) for i in range(32)]
        model.release.set()
        results = [f.result(10) for f in futures]
    for i, row in enumerate(results):
        np.testing.assert_array_equal(row, np.full(3, 2 * i))
    assert sum(model.batch_sizes) == 32
    assert max(model.batch_sizes) == 8
    assert len(model.batch_sizes) < 32  # batched, not one call per item
    batcher.close()


def test_a_failed_batch_fails_every_future_in_it_and_the_batcher_goes_on():
    model = RecordingModel(fail_on=-1.0)
    model.release.clear()
    batcher = AdaptiveBatcher(model, max_batch_size=4, max_batch_time=0.2)
    first = batcher.submit(np.zeros(2, dtype=np.float32))
    bad = batcher.submit(np.full(2, -1.0, dtype=np.float32))
    model.release.set()
    with pytest.raises(RuntimeError, match="model failure"):
        bad.result(10)
    # `first` rode in the same batch as the bad item or the one before it.
    if first.exception(10) is None:
        assert model.batch_sizes[0] == 1
    np.testing.assert_array_equal(batcher(np.ones(2, dtype=np.float32)), np.full(2, 2.0))
    batcher.close()


def test_close_runs_queued_items_then_refuses_new_ones():
    model = RecordingModel()
    model.release.clear()
    batcher = AdaptiveBatcher(model, max_batch_size=2, max_batch_time=0.0)
    futures = [batcher.submit(np.full(1, i, dtype=np.float32)) for i in range(5)]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    model.release.set()
    closer.join(10)
    assert [float(f.result(1)[0]) for f in futures] == [0, 2, 4, 6, 8]
    with pytest.raises(Unavailable):
        batcher.submit(np.zeros(1, dtype=np.float32))


def test_a_lone_caller_does_not_wait_for_company():
    model = RecordingModel()
    batcher = AdaptiveBatcher(model, max_batch_size=8, max_batch_time=5.0)
    started = time.monotonic()
    for i in range(3):
        batcher(np.full(1, i, dtype=np.float32))
    assert time.monotonic() - started < 2.0  # not 3 x 5 s
    assert model.batch_sizes == [1, 1, 1]
    batcher.close()


def test_each_item_reports_its_wait_in_the_queue():
    waits: list[float] = []
    model = RecordingModel()
    model.release.clear()  # hold the first batch so the next items wait
    batcher = AdaptiveBatcher(model, max_batch_size=4, max_batch_time=0.0, queued=waits.append)
    futures = [batcher.submit(np.full(1, i, dtype=np.float32)) for i in range(6)]
    model.release.set()
    for future in futures:
        future.result(10)
    batcher.close()
    assert len(waits) == 6 and all(w >= 0 for w in waits)


def test_the_idle_hook_runs_once_per_quiet_spell_on_the_model_thread():
    threads: list[str] = []
    idle = threading.Event()

    def on_idle() -> None:
        threads.append(threading.current_thread().name)
        idle.set()

    batcher = AdaptiveBatcher(
        RecordingModel(), max_batch_size=4, max_batch_time=0.0, on_idle=on_idle, idle_after=0.05
    )
    assert idle.wait(10)  # quiet from the start
    for round_ in (1, 2):
        idle.clear()
        assert batcher(np.full(3, float(round_))).tolist() == [2.0 * round_] * 3
        assert idle.wait(10)
        time.sleep(0.2)  # quiet for four more idle periods: still one call this spell
        assert len(threads) == round_ + 1
    assert len(set(threads)) == 1 and threads[0] != threading.current_thread().name
    batcher.close()
