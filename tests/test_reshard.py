"""Resharding 3 -> 4 -> 2 real shards while searches run: nothing lost, nothing doubled,
search results the same before, during and after; an interrupted run resumes."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from imagesim.client.collection import Collection
from imagesim.client.index_client import IndexClient
from imagesim.client.reshard import Resharder
from imagesim.errors import FailedPrecondition, ImagesimError, Reason
from imagesim.params import SearchParams
from imagesim.types import ItemToAdd
from tests.support.cli import run_cli
from tests.support.vectors import structured

DIMS = 64
EXACT = SearchParams(k=10, search_k=10**6, include_metadata=True)


class Interrupted(Exception):
    pass


def answers(collection: Collection, queries: np.ndarray) -> list[list[tuple[str, float]]]:
    """Each query's keys and distances (to 3 decimals: a staged item's distance is computed in
    float64, a built one's by Annoy in float32)."""
    return [
        [(n.key, round(n.distance, 3)) for n in r.neighbors]
        for r in collection.search_many(queries, EXACT)
    ]


def contents(addresses: list[str]) -> dict[str, tuple[bytes, dict[str, str]]]:
    found: dict[str, tuple[bytes, dict[str, str]]] = {}
    for address in addresses:
        with IndexClient(address) as shard:
            for page in shard.scan(include_vectors=True):
                for item in page:
                    assert item.key not in found, f"{item.key} on two shards"
                    found[item.key] = (item.vector.tobytes(), item.metadata)
    return found


class Searcher(threading.Thread):
    """Searches all the time with whichever shard list the collection accepts at the moment,
    and records every answer that differs from the expected one."""

    def __init__(self, lists: list[list[str]], queries: np.ndarray, expected) -> None:
        super().__init__(daemon=True)
        self.lists, self.queries, self.expected = lists, queries, expected
        self.stop = threading.Event()
        self.searches = 0
        self.wrong: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            for shards in self.lists:
                try:
                    with Collection(shards) as collection:
                        got = answers(collection, self.queries)
                except ImagesimError as exc:
                    if exc.reason == Reason.LAYOUT_MISMATCH.value:
                        continue  # this list is not the collection at the moment
                    raise
                self.searches += 1
                if got != self.expected:
                    q = next(
                        i for i, (x, y) in enumerate(zip(got, self.expected, strict=True)) if x != y
                    )
                    self.wrong.append(
                        f"with {len(shards)} shards, query {q}: {got[q]} != {self.expected[q]}"
                    )
                break


def test_reshard_3_to_4_to_2_keeps_every_item_and_every_answer(start_shard):
    a, b, c, d = (start_shard(DIMS, name=n).address for n in "abcd")
    data = structured(3000, DIMS, seed=0, clusters=40)
    queries = structured(12, DIMS, seed=1, clusters=40)
    with Collection([a, b, c]) as collection:
        collection.add(
            [ItemToAdd(f"img/{i:05d}.jpg", v, {"n": str(i)}) for i, v in enumerate(data)]
        )
        collection.build()
        expected = answers(collection, queries)
    before = contents([a, b, c])
    assert len(before) == 3000

    searcher = Searcher([[a, b, c, d], [a, b, c], [a, b]], queries, expected)
    searcher.start()
    try:
        reshard_twice(a, b, c, d, data, queries, expected, before)
    finally:
        searcher.stop.set()
        searcher.join(60)
    assert searcher.searches > 5 and not searcher.wrong, searcher.wrong[:3]


def reshard_twice(a, b, c, d, data, queries, expected, before) -> None:
    moved: list[int] = []

    def crash_after_200(count: int) -> None:
        moved.append(count)
        if count >= 200 and len(moved) < 1000:  # only the first run crashes
            moved.extend([0] * 1000)
            raise Interrupted

    with (
        Resharder([a, b, c], [a, b, c, d], on_move=crash_after_200) as resharder,
        pytest.raises(Interrupted),
    ):
        resharder.run()
    # Mid-move: searches are still right, writes wait for the reshard.
    with Collection([a, b, c, d]) as collection:
        assert answers(collection, queries) == expected
        with pytest.raises(FailedPrecondition) as caught:
            collection.add([ItemToAdd("late.jpg", data[0])])
        assert caught.value.reason == Reason.LAYOUT_CHANGED.value
    result = run_cli("reshard", "--from", f"{a},{b},{c}", "--to", f"{a},{b},{c},{d}")
    assert "resumed an interrupted run" in result.stdout
    with IndexClient(d) as new_shard:
        share = new_shard.stats().count
    assert 500 < share < 1000  # about a quarter moved, to the new shard only
    assert contents([a, b, c, d]) == before

    with Resharder([a, b, c, d], [a, b]) as resharder:
        report = resharder.run()
    assert report.layout.version == 5 and len(report.layout.shard_ids) == 2  # 2 per reshard
    assert contents([a, b]) == before
    assert contents([c, d]) == {}
    with Collection([a, b]) as collection:
        assert answers(collection, queries) == expected
        collection.add([ItemToAdd("after.jpg", data[1])])  # writes flow again
    with Collection([a, b, c, d]) as stale, pytest.raises(FailedPrecondition):
        stale.connect()
    again = run_cli("reshard", "--from", f"{a},{b},{c},{d}", "--to", f"{a},{b}")
    assert "0 items moved" in again.stdout  # already done: nothing to do
