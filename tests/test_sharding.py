"""Several real shard processes: fan-out equals one shard, updates after build, crash safety,
and a collection layout no client can contradict."""

from __future__ import annotations

import queue
import threading
import time

import grpc
import numpy as np
import pytest

from imagesim.client.collection import Collection
from imagesim.client.index_client import IndexClient
from imagesim.errors import FailedPrecondition, ImagesimError, Reason, Unavailable
from imagesim.params import SearchParams
from imagesim.types import ItemToAdd
from imagesim.v1 import index_pb2
from tests.support.launch import ServerProcess, start_index
from tests.support.vectors import structured

DIMS = 64


def clustered(n: int, dims: int = DIMS, seed: int = 0) -> np.ndarray:
    return structured(n, dims, seed, clusters=20)


def items(data: np.ndarray, prefix: str = "img") -> list[ItemToAdd]:
    return [ItemToAdd(f"{prefix}/{i:05d}.jpg", v) for i, v in enumerate(data)]


def test_three_shards_answer_like_one_in_any_order(start_shard):
    data = clustered(1500)
    one = start_shard(DIMS, name="one")
    three = [start_shard(DIMS, name=f"part{n}") for n in range(3)]
    addresses = [s.address for s in three]
    with Collection([one.address]) as single, Collection(addresses) as spread:
        single.add(items(data))
        spread.add(items(data))
        counts = [s.count for s in spread.stats()]
        assert sum(counts) == 1500 and min(counts) > 400  # rendezvous hashing spreads keys
        single.build()
        spread.build()
        exhaustive = SearchParams(k=10, search_k=10**6)  # past the node count: exact
        queries = clustered(20, seed=1)
        a = single.search_many(queries, exhaustive)
        b = spread.search_many(queries, exhaustive)
        for x, y in zip(a, b, strict=True):
            assert [h.key for h in x.neighbors] == [h.key for h in y.neighbors]
            np.testing.assert_allclose(
                [h.distance for h in x.neighbors], [h.distance for h in y.neighbors], atol=1e-6
            )
    with Collection(addresses[::-1]) as reordered:  # placement is by shard id, not position
        assert reordered.get("img/00042.jpg").key == "img/00042.jpg"
        assert reordered.missing([i.key for i in items(data)]) == []


def test_updates_after_build_show_at_once_and_removed_keys_never_return(start_shard, tmp_path):
    data = clustered(600)
    shards = [start_shard(DIMS, data=tmp_path / f"d{n}", name=f"u{n}") for n in range(2)]
    addresses = [s.address for s in shards]
    with Collection(addresses) as collection:
        collection.add(items(data))
        collection.build()
        fresh = clustered(1, seed=7)[0] * 5
        collection.add([ItemToAdd("new.jpg", fresh)])
        assert collection.search(fresh, SearchParams(k=1)).neighbors[0].key == "new.jpg"
        gone = ["img/00003.jpg", "img/00004.jpg"]
        assert collection.remove(gone) == (2, 0)
        collection.add([ItemToAdd("img/00005.jpg", -data[5] + 2.0)])  # replace

        def check() -> None:
            found = collection.search_many(data[[3, 4]], SearchParams(k=50))
            assert not {h.key for r in found for h in r.neighbors} & set(gone)
            replaced = collection.search(-data[5] + 2.0, SearchParams(k=1))
            assert replaced.neighbors[0].key == "img/00005.jpg"

        check()
        collection.build()
        check()
    for n, shard in enumerate(shards):
        shard.stop()
        shards[n] = start_shard(DIMS, data=tmp_path / f"d{n}", name=f"u{n}-again")
    with Collection([s.address for s in shards]) as collection:
        check()
        assert sum(s.count for s in collection.stats()) == 599


def test_similar_leaves_the_item_out_and_reads_its_stored_vector(start_shard):
    data = clustered(300)
    shards = [start_shard(DIMS, name=f"m{n}") for n in range(2)]
    with Collection([s.address for s in shards]) as collection:
        collection.add(items(data))
        result = collection.similar("img/00010.jpg", SearchParams(k=5))
        keys = [h.key for h in result.neighbors]
        assert len(keys) == 5 and "img/00010.jpg" not in keys
        plain = collection.search(data[10], SearchParams(k=6)).neighbors
        assert keys == [h.key for h in plain if h.key != "img/00010.jpg"][:5]


def test_acknowledged_adds_survive_kill_9(start_shard, tmp_path):
    data_dir = tmp_path / "crash"
    shard = start_shard(DIMS, "--auto-build", "0", data=data_dir, name="victim")
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        with IndexClient(shard.address, timeout=60) as client:
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
    deadline = time.monotonic() + 120
    while len(acknowledged) <= 100:  # some adds are acknowledged, more are on their way
        assert thread.is_alive() and time.monotonic() < deadline, "the writer stopped early"
        time.sleep(0.05)
    shard.kill()  # SIGKILL mid-stream of adds
    stop.set()
    thread.join(30)
    assert len(acknowledged) > 100
    again = start_shard(DIMS, data=data_dir, name="revived")
    with IndexClient(again.address) as client:
        assert client.stats().count >= len(acknowledged)
        for start in range(0, len(acknowledged), 2000):
            batch = acknowledged[start : start + 2000]
            assert all(client.contains(batch)), "an acknowledged add was lost"


def test_kill_9_during_a_build_leaves_the_last_good_generation(start_shard, tmp_path):
    data_dir = tmp_path / "build-crash"
    dims = 256
    shard = start_shard(dims, "--auto-build", "0", data=data_dir, name="builder")
    data = clustered(20_000, dims=dims)
    with IndexClient(shard.address, timeout=120) as client:
        client.add(items(data[:1000]))
        client.build(trees=10)  # generation 1
        for start in range(1000, 20_000, 4000):
            client.add(items(data[start : start + 4000], prefix=f"more{start}"))
        build = client.stub.Build.future(index_pb2.BuildRequest(trees=300), timeout=300)
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
        hit = client.search(data[5000], SearchParams(k=1))[0][0]
        assert hit.key == "more5000/00000.jpg"
        assert not [p for p in (data_dir / "generations").iterdir() if p.name.startswith(".tmp")]
        assert client.build(trees=10).generation >= 2


def test_a_failed_shard_is_named_or_left_out_with_allow_partial(start_shard):
    data = clustered(400)
    shards = [start_shard(DIMS, name=f"p{n}") for n in range(3)]
    with Collection([s.address for s in shards], timeout=5) as collection:
        collection.add(items(data))
        collection.build()
        victim = shards[1]
        victim.kill()
        with pytest.raises(Unavailable, match=f"shard {victim.address}"):
            collection.search(data[0], SearchParams(k=5))
        partial = collection.search(data[0], SearchParams(k=5), allow_partial=True)
        assert list(partial.missing) == [victim.address]
        assert len(partial.neighbors) == 5
        assert all(h.shard != victim.address for h in partial.neighbors)


def test_a_shard_list_that_contradicts_the_recorded_layout_is_refused(start_shard):
    """Without --shard flags: the first write records the layout on every shard."""
    a, b, c = (start_shard(DIMS, name=n) for n in "abc")
    with Collection([a.address, b.address]) as collection:
        collection.add(items(clustered(50)))
        assert collection.layout.version == 1
    with Collection([b.address, a.address]) as swapped:  # order does not matter
        assert swapped.connect().version == 1
    for shards in ([a.address], [a.address, b.address, c.address]):
        with Collection(shards) as wrong, pytest.raises(FailedPrecondition) as caught:
            wrong.add(items(clustered(5), prefix="x"))
        assert caught.value.reason == Reason.LAYOUT_MISMATCH.value
    with Collection([a.address, c.address]) as swapped_in, pytest.raises(FailedPrecondition):
        swapped_in.search(clustered(1)[0])
    # Whatever the client lists, a shard never takes a key that is not its own.
    from imagesim.routing import home

    ids = {s.address: IndexClient(s.address).stats().shard_id for s in (a, b)}
    key = next(f"x{i}" for i in range(100) if home(f"x{i}", list(ids.values())) == ids[b.address])
    with IndexClient(a.address) as direct, pytest.raises(FailedPrecondition) as caught:
        direct.add([ItemToAdd(key, clustered(1)[0])])
    assert caught.value.reason == Reason.WRONG_SHARD.value


def channel_state(client: IndexClient) -> grpc.ChannelConnectivity:
    """The state of a client's channel now (without asking it to connect)."""
    states: queue.Queue[grpc.ChannelConnectivity] = queue.Queue()
    channel = client._channel
    channel.subscribe(states.put, try_to_connect=False)
    try:
        return states.get(timeout=10)  # a subscriber is told the current state first
    finally:
        channel.unsubscribe(states.put)


def test_a_client_waits_for_a_restarted_shard_to_connect(tmp_path):
    """After a restart, a channel waits out its reconnect backoff and calls fail fast until
    then; `wait_connected` waits for the connection instead (and says when it cannot)."""
    data = tmp_path / "restarted"
    shard = start_index(tmp_path / "first.log", data, DIMS)
    port = int(shard.address.rsplit(":", 1)[1])
    restarted = None
    try:
        with IndexClient(shard.address, timeout=5) as client:
            client.wait_connected()
            client.add(items(clustered(3, seed=1), prefix="a"))
            shard.kill()
            with pytest.raises(Unavailable):
                client.stats()  # the channel is in TRANSIENT_FAILURE: fail fast
            with pytest.raises(Unavailable, match=r"did not connect within 0\.5 s"):
                client.wait_connected(timeout=0.5)
            # Started, not waited for: the wait is the client's, while the server is still
            # importing its modules and the channel is backing off.
            restarted = ServerProcess(
                "imagesim.index_server.main",
                ["--data", str(data), "--dims", str(DIMS)],
                tmp_path / "again.log",
                port=port,
            )
            client.wait_connected(timeout=60)
            assert channel_state(client) == grpc.ChannelConnectivity.READY
            restarted.wait_ready()
            assert client.stats().count == 3
        with pytest.raises(FailedPrecondition, match="closed"):
            client.wait_connected()
    finally:
        shard.stop()
        if restarted is not None:
            restarted.stop()
