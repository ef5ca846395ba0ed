"""Several real shard processes: fan-out equals one shard, updates after build, crash safety."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from imagesim.client.collection import Collection
from imagesim.client.index_client import IndexClient, ItemToAdd
from imagesim.errors import FailedPrecondition, ImagesimError, Unavailable
from imagesim.launch import start_index

DIMS = 64


def clustered(n: int, dims: int = DIMS, clusters: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dims))
    data = centres[rng.integers(clusters, size=n)] + 0.3 * rng.normal(size=(n, dims))
    return np.maximum(data, 0).astype(np.float32) + 1e-3  # ReLU-like, never all zero


def items(data: np.ndarray, prefix: str = "img") -> list[ItemToAdd]:
    return [ItemToAdd(f"{prefix}/{i:05d}.jpg", v) for i, v in enumerate(data)]


def test_three_shards_answer_like_one(start_shard):
    data = clustered(1500)
    one = start_shard(DIMS, name="one")
    three = [start_shard(DIMS, "--shard", f"{n}/3", name=f"part{n}") for n in range(3)]
    with Collection([one.address]) as single, Collection([s.address for s in three]) as spread:
        single.add(items(data))
        spread.add(items(data))
        counts = [s.count for s in spread.stats()]
        assert sum(counts) == 1500 and min(counts) > 400  # the hash spreads keys
        single.build()
        spread.build()
        for query in clustered(20, seed=1):
            # search_k past the node count makes Annoy exhaustive: both must be exact.
            a = single.search(query, 10, search_k=10**6).neighbors
            b = spread.search(query, 10, search_k=10**6).neighbors
            assert [h.key for h in a] == [h.key for h in b]
            np.testing.assert_allclose([h.distance for h in a], [h.distance for h in b], atol=1e-6)


def test_updates_after_build_show_at_once_and_removed_keys_never_return(start_shard, tmp_path):
    data = clustered(600)
    shards = [start_shard(DIMS, data=tmp_path / f"d{n}", name=f"u{n}") for n in range(2)]
    addresses = [s.address for s in shards]
    with Collection(addresses) as collection:
        collection.add(items(data))
        collection.build()
        fresh = clustered(1, seed=7)[0] * 5
        collection.add([ItemToAdd("new.jpg", fresh)])
        assert collection.search(fresh, 1).neighbors[0].key == "new.jpg"
        gone = ["img/00003.jpg", "img/00004.jpg"]
        assert collection.remove(gone) == (2, 0)
        collection.add([ItemToAdd("img/00005.jpg", -data[5] + 2.0)])  # replace

        def check() -> None:
            keys = {h.key for q in (data[3], data[4]) for h in collection.search(q, 50).neighbors}
            assert not keys & set(gone)
            assert collection.search(-data[5] + 2.0, 1).neighbors[0].key == "img/00005.jpg"

        check()
        collection.build()
        check()
    for n, shard in enumerate(shards):
        shard.stop()
        shards[n] = start_shard(DIMS, data=tmp_path / f"d{n}", name=f"u{n}-again")
    with Collection([s.address for s in shards]) as collection:
        check()
        assert sum(s.count for s in collection.stats()) == 599


def test_acknowledged_adds_survive_kill_9(start_shard, tmp_path):
    data_dir = tmp_path / "crash"
    shard = start_shard(DIMS, "--auto-build", "0", data=data_dir, name="victim")
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        with IndexClient(shard.address, timeout=5) as client:
            batch = 0
            while not stop.is_set():
                chunk = items(clustered(25, seed=batch), prefix=f"b{batch}")
                try:
                    client.add(chunk)
                except ImagesimError:
                    return
                acknowledged.extend(i.key for i in chunk)
                batch += 1

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(1.5)
    shard.kill()  # SIGKILL mid-stream of adds
    stop.set()
    thread.join(30)
    assert len(acknowledged) > 100
    again = start_shard(DIMS, data=data_dir, name="revived")
    with IndexClient(again.address) as client:
        assert client.stats().count >= len(acknowledged)
        for key in acknowledged[::7] + acknowledged[-25:]:
            assert client.get(key).key == key
        assert client.search(clustered(1, seed=3)[0], 5)


def test_kill_9_during_a_build_leaves_the_last_good_generation(start_shard, tmp_path):
    data_dir = tmp_path / "build-crash"
    dims = 256
    shard = start_shard(dims, "--auto-build", "0", data=data_dir, name="builder")
    data = clustered(20_000, dims=dims)
    with IndexClient(shard.address, timeout=120) as client:
        client.add(items(data[:1000]))
        client.build(trees=10)  # generation 1
        client.add(items(data[1000:], prefix="more"))
        build = client.stub.Build.future(
            __import__("imagesim.v1.index_pb2").v1.index_pb2.BuildRequest(trees=300), timeout=300
        )
        deadline = time.monotonic() + 60
        while not client.stats().building:
            assert time.monotonic() < deadline and not build.done()
            time.sleep(0.01)
        shard.kill()
    again = start_shard(dims, data=data_dir, name="rebuilt")
    with IndexClient(again.address, timeout=120) as client:
        stats = client.stats()
        assert (stats.count, stats.generation, stats.built_count) == (20_000, 1, 1000)
        assert stats.staged == 19_000
        assert client.search(data[5000], 1)[0].key == "more/04000.jpg"
        assert not [p for p in (data_dir / "generations").iterdir() if p.name.startswith(".tmp")]
        assert client.build(trees=10).generation == 2


def test_a_failed_shard_is_named_or_left_out_with_allow_partial(start_shard):
    data = clustered(400)
    shards = [start_shard(DIMS, name=f"p{n}") for n in range(3)]
    with Collection([s.address for s in shards], timeout=5) as collection:
        collection.add(items(data))
        collection.build()
        victim = shards[1]
        victim.kill()
        with pytest.raises(Unavailable, match=f"shard {victim.address}"):
            collection.search(data[0], 5)
        partial = collection.search(data[0], 5, allow_partial=True)
        assert list(partial.missing) == [victim.address]
        assert len(partial.neighbors) == 5
        assert all(h.shard != victim.address for h in partial.neighbors)


def test_shard_order_and_count_are_enforced(start_shard, tmp_path):
    a = start_shard(DIMS, "--shard", "0/2", data=tmp_path / "a", name="a")
    b = start_shard(DIMS, "--shard", "1/2", data=tmp_path / "b", name="b")
    with Collection([a.address, b.address]) as right:
        assert right.check_layout(DIMS) == (DIMS, "angular")
    with (
        Collection([b.address, a.address]) as swapped,
        pytest.raises(FailedPrecondition, match="recorded as shard 1 of 2"),
    ):
        swapped.check_layout()
    with Collection([a.address]) as short, pytest.raises(FailedPrecondition, match="of 2"):
        short.check_layout()
    a.stop()
    with pytest.raises(RuntimeError, match="is shard 0/2; it cannot be served as shard 1/3"):
        start_index(tmp_path / "bad.log", tmp_path / "a", DIMS, "--shard", "1/3")
