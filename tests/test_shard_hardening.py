"""Regression tests for the shard core's failure modes (issue 8): each one failed on the code
before the fix. Races are forced with fault points (events), not sleeps that usually work."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from imagesim.enums import Metric
from imagesim.errors import FailedPrecondition, Reason
from imagesim.index_server import builds as builds_module
from imagesim.index_server import generation as generation_module
from imagesim.index_server import staging as staging_module
from imagesim.index_server.item_store import ItemStore
from imagesim.index_server.shard import Shard, ShardConfig
from imagesim.params import SearchParams
from imagesim.routing import home
from imagesim.types import Layout

DIMS = 16


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIMS)).astype(np.float32)


def open_shard(path: Path, **kwargs) -> Shard:
    return Shard(ShardConfig(path, kwargs.pop("dims", DIMS), trees=5, **kwargs))


def top(shard: Shard, vector: np.ndarray, k: int = 1) -> list[str]:
    return [h.key for h in shard.search([vector], SearchParams(k=k))[0]]


def test_concurrent_writes_of_one_key_apply_in_the_same_order_on_disk_and_in_memory(tmp_path):
    shard = open_shard(tmp_path)
    first, second = vectors(2, seed=3)
    original = shard.store.upsert
    first_committed, second_done = threading.Event(), threading.Event()

    def upsert(items):
        results = original(items)
        if items[0][1] is not None and np.array_equal(items[0][1], first):
            first_committed.set()
            second_done.wait(timeout=2)  # the second write gets every chance to overtake
        return results

    shard.store.upsert = upsert  # type: ignore[method-assign]
    writer = threading.Thread(target=lambda: shard.add([("same", first, {})]))
    writer.start()
    assert first_committed.wait(timeout=30)
    overtaker = threading.Thread(
        target=lambda: (shard.add([("same", second, {})]), second_done.set())
    )
    overtaker.start()
    writer.join()
    overtaker.join()
    on_disk = shard.get("same").vector
    assert top(shard, on_disk) == ["same"]
    hits = shard.search([on_disk], SearchParams(k=1))[0]
    assert hits[0].distance == pytest.approx(0, abs=1e-6)  # memory serves the stored vector
    shard.close()
    again = open_shard(tmp_path)
    assert again.search([on_disk], SearchParams(k=1))[0][0].distance == pytest.approx(0, abs=1e-6)


def test_a_slow_search_does_not_block_writes(tmp_path, monkeypatch):
    shard = open_shard(tmp_path)
    shard.add([(f"k{i}", v, {}) for i, v in enumerate(vectors(50))])  # staged: exact search
    in_search, release = threading.Event(), threading.Event()
    coarse = staging_module.coarse_distances

    def slow_coarse(*args, **kwargs):
        in_search.set()
        release.wait(timeout=60)
        return coarse(*args, **kwargs)

    monkeypatch.setattr(staging_module, "coarse_distances", slow_coarse)
    searcher = threading.Thread(target=lambda: top(shard, vectors(1)[0]))
    searcher.start()
    assert in_search.wait(timeout=30)
    writer = threading.Thread(target=lambda: shard.add([("late", vectors(1, seed=9)[0], {})]))
    writer.start()
    writer.join(timeout=30)  # blocked by the search, it would wait for the release
    finished_while_searching = not writer.is_alive()
    release.set()
    searcher.join()
    writer.join()
    assert finished_while_searching


class CountingAnnoy:
    """Wraps a loaded AnnoyIndex and records the `n` of every search."""

    def __init__(self, annoy) -> None:
        self.annoy = annoy
        self.asked: list[int] = []

    def get_nns_by_vector(self, vector, n, search_k=-1, include_distances=False):
        self.asked.append(n)
        return self.annoy.get_nns_by_vector(vector, n, search_k, include_distances)


def test_removed_items_do_not_make_every_search_fetch_more(tmp_path):
    shard = open_shard(tmp_path, auto_build=0)
    data = vectors(2000)
    shard.add([(f"k{i}", v, {}) for i, v in enumerate(data)])
    shard.build()
    query = data[0]
    far = np.argsort(data @ query)[:1000]  # the items least like the query
    shard.remove([f"k{i}" for i in far])
    counting = CountingAnnoy(shard._view.generation.annoy)
    shard._view.generation.annoy = counting
    hits = top(shard, query, 10)
    assert len(hits) == 10 and not {f"k{i}" for i in far} & set(hits)
    assert max(counting.asked) <= 40  # not 10 + 1000 hidden items


def test_a_search_never_comes_back_short_while_more_live_items_exist(tmp_path):
    shard = open_shard(tmp_path, auto_build=0)
    data = vectors(500)
    shard.add([(f"k{i}", v, {}) for i, v in enumerate(data)])
    shard.build()
    query = data[0]
    near = np.argsort(-(data @ query) / np.linalg.norm(data, axis=1))[:300]
    shard.remove([f"k{i}" for i in near])  # the query's whole neighbourhood is gone
    assert len(top(shard, query, 50)) == 50


def test_building_an_emptied_shard_retires_its_generation(tmp_path):
    shard = open_shard(tmp_path)
    data = vectors(20)
    shard.add([(f"k{i}", v, {}) for i, v in enumerate(data)])
    shard.build()
    shard.remove([f"k{i}" for i in range(20)])
    assert shard.build() is None
    stats = shard.stats()
    assert (stats.built, stats.generation, stats.count, stats.hidden) == (False, 0, 0, 0)
    assert not (tmp_path / "CURRENT").exists()
    assert not any((tmp_path / "generations").iterdir())
    assert top(shard, data[0]) == []
    shard.add([("again", data[3], {})])
    assert shard.build().number == 2  # generation numbers are never reused


def test_a_second_shard_on_one_data_directory_is_refused(tmp_path):
    shard = open_shard(tmp_path)
    with pytest.raises(FailedPrecondition, match="in use by another imagesim-index"):
        open_shard(tmp_path)
    shard.close()
    open_shard(tmp_path).close()  # free again once the owner closed it


def test_layout_records_are_all_or_nothing(tmp_path):
    store = ItemStore(tmp_path / "items.sqlite3")
    with pytest.raises(Exception, match="NOT NULL"):
        store.set_layout({"dims": "32", "metric": None})  # type: ignore[dict-item]
    assert "dims" not in store.layout()
    store.close()


def test_a_damaged_layout_record_is_a_clear_error(tmp_path):
    store = ItemStore(tmp_path / "items.sqlite3")
    store.set_layout({"dims": "16"})  # as if written by a crashed older version
    store.close()
    with pytest.raises(FailedPrecondition, match="damaged"):
        open_shard(tmp_path)


def test_a_failing_background_build_is_not_retried_on_every_write(tmp_path, monkeypatch):
    attempts: list[int] = []

    class FailingBuilder:
        def __init__(self, *args, **kwargs):
            attempts.append(1)
            raise OSError("disk full")

    monkeypatch.setattr(builds_module, "GenerationBuilder", FailingBuilder)
    shard = open_shard(tmp_path, auto_build=5)
    data = vectors(40)
    for i in range(8):
        shard.add([(f"k{i}-{j}", data[5 * i + j], {}) for j in range(5)])
        for thread in threading.enumerate():
            if thread.name == "auto-build":
                thread.join()
    assert len(attempts) == 1
    assert "disk full" in shard.stats().last_build_error
    assert shard.stats().count == 40  # the writes themselves all succeeded


def test_flags_that_make_every_build_fail_are_refused_at_start(tmp_path):
    with pytest.raises(FailedPrecondition) as caught:
        open_shard(tmp_path, metric=Metric.MANHATTAN, project_dims=4)
    assert caught.value.reason == Reason.BUILD_FAILED.value


def test_a_generation_that_fails_to_load_is_never_made_current(tmp_path, monkeypatch):
    shard = open_shard(tmp_path)
    data = vectors(30)
    shard.add([(f"k{i}", v, {}) for i, v in enumerate(data)])
    shard.build()
    shard.add([("more", data[0] * 2, {})])
    load = generation_module.Generation.load

    def failing_load(path, *args, **kwargs):
        if path.name == "gen-000002":
            raise FailedPrecondition("simulated: cannot map the new index")
        return load(path, *args, **kwargs)

    monkeypatch.setattr(generation_module.Generation, "load", staticmethod(failing_load))
    with pytest.raises(FailedPrecondition):
        shard.build()
    assert (tmp_path / "CURRENT").read_text().strip() == "gen-000001"
    assert shard.stats().generation == 1 and "simulated" in shard.stats().last_build_error
    monkeypatch.undo()
    shard.close()
    again = open_shard(tmp_path)
    assert again.stats().generation == 1 and again.stats().count == 31


def test_a_corrupt_live_generation_is_served_exactly_from_the_store(tmp_path):
    shard = open_shard(tmp_path, auto_build=0)
    data = vectors(30)
    shard.add([(f"k{i}", v, {}) for i, v in enumerate(data)])
    shard.build()
    shard.close()
    (tmp_path / "generations" / "gen-000001" / "index.ann").write_bytes(b"\0" * 7)
    again = open_shard(tmp_path, auto_build=0)
    stats = again.stats()
    assert (stats.built, stats.count, stats.staged) == (False, 30, 30)
    assert "cannot" in stats.last_build_error or "does not fit" in stats.last_build_error
    assert top(again, data[4]) == ["k4"]
    assert again.build().number == 2


def test_keys_that_belong_to_another_shard_are_refused(tmp_path):
    shard = open_shard(tmp_path, shard_id="a")
    shard.set_layout(Layout(1, ("a", "b")), expected_version=0)
    mine = next(k for k in (f"k{i}" for i in range(100)) if home(k, ["a", "b"]) == "a")
    theirs = next(k for k in (f"k{i}" for i in range(100)) if home(k, ["a", "b"]) == "b")
    shard.add([(mine, vectors(1)[0], {})])
    with pytest.raises(FailedPrecondition) as caught:
        shard.add([(theirs, vectors(1)[0], {})])
    assert caught.value.reason == Reason.WRONG_SHARD.value
    with pytest.raises(FailedPrecondition) as caught:
        shard.add([(mine, vectors(1)[0], {})], layout_version=7)
    assert caught.value.reason == Reason.LAYOUT_CHANGED.value
    # While a reshard moves items to c, a key may live under either layout.
    shard.set_layout(Layout(2, ("a", "b"), ("a", "b", "c")), expected_version=1)
    assert shard.stats().count == 1
