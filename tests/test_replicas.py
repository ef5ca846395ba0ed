"""Embedder replicas behind one balanced channel, with real Embedder processes on loopback: a
bulk dump spreads over both replicas, killing one mid-run loses no image, unary calls skip a
dead replica, and servers close connections at their maximum age without cutting streams."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from imagesim.channel import open_channel
from imagesim.client.dump import VectorDump
from imagesim.client.embedder_client import EmbedderClient
from imagesim.samples import write_photo_crops
from imagesim.v1 import embedder_pb2, embedder_pb2_grpc
from tests.support.cli import run_cli as imagesim
from tests.support.launch import ServerProcess, start_embedder

PHOTOS = 96
CONNECTION_AGE = 2  # seconds: the replicas' --max-connection-age


def start_replica(log: Path, *extra: str) -> ServerProcess:
    """A replica (later flags in `extra` override the defaults here)."""
    return start_embedder(
        log,
        "--weights",
        "none",
        "--precision",
        "float32",
        "--grace",
        "2",
        "--max-connection-age",
        str(CONNECTION_AGE),
        *extra,
    )


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory):
    logs = tmp_path_factory.mktemp("replicas")
    started = [start_replica(logs / f"replica-{n}.log") for n in range(2)]
    yield started
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("replica-photos")
    write_photo_crops(folder, PHOTOS, seed=5)
    return folder


@pytest.fixture(scope="module")
def single(crops: Path, embedder_server, tmp_path_factory) -> dict[str, np.ndarray]:
    """The vectors of a run on one embedder (the session's, same model and precision)."""
    out = tmp_path_factory.mktemp("single") / "v.npz"
    imagesim(
        "dump", str(crops), "--out", str(out), "--embedder", embedder_server.address, "--quiet"
    )
    dump = VectorDump.load(out)
    return dict(zip(dump.keys, dump.vectors, strict=True))


def images_embedded(address: str) -> int:
    with EmbedderClient(address, timeout=10) as client:
        return int(client.info().images_embedded)


def check_vectors(out: Path, single: dict[str, np.ndarray]) -> None:
    dump = VectorDump.load(out)
    assert len(dump.keys) == len(set(dump.keys)) == PHOTOS
    assert set(dump.keys) == set(single)
    for key, vector in zip(dump.keys, dump.vectors, strict=True):
        np.testing.assert_allclose(vector, single[key], rtol=1e-4, atol=1e-5)


def test_a_dump_spreads_over_both_replicas(replicas, crops, single, tmp_path):
    addresses = [r.address for r in replicas]
    before = [images_embedded(a) for a in addresses]
    out = tmp_path / "v.npz"
    result = imagesim("dump", str(crops), "--out", str(out), "--embedder", ",".join(addresses))
    served = [images_embedded(a) - b for a, b in zip(addresses, before, strict=True)]
    assert sum(served) == PHOTOS, served  # each image embedded exactly once
    # Both took a real share. Not an even one: the streams share one queue, so the replica that
    # answers faster takes more (as it should), the first streams may all open on the replica
    # that connected first, and here both replicas share 2 cores with the client (a clean-clone
    # run saw 22 / 74).
    assert min(served) >= PHOTOS // 6, served
    assert f"embedded {PHOTOS} of {PHOTOS}" in result.stdout
    assert "broke" not in result.stdout
    check_vectors(out, single)


def test_killing_a_replica_mid_run_loses_no_image(replicas, crops, single, tmp_path):
    survivor = replicas[0]
    # The victim answers one image at a time and keeps its connection, so from its first
    # answer on, until the run's last images, it has images sent and not answered: killing it
    # right after that first answer always catches some in flight. (With batches its first
    # stream's 16 images came back at once, and after a connection-age GOAWAY new streams could
    # all land on the survivor: a kill at that moment broke nothing.)
    victim = start_replica(
        tmp_path / "victim.log", "--max-batch-size", "1", "--max-connection-age", "600"
    )
    out = tmp_path / "v.npz"
    dump = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imagesim.client.cli",
            "dump",
            str(crops),
            "--out",
            str(out),
            "--embedder",
            f"{survivor.address},{victim.address}",
            "--quiet",
            "--report",
            str(tmp_path / "failed.tsv"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with EmbedderClient(victim.address, timeout=10) as client:
            deadline = time.monotonic() + 300
            while client.info().images_embedded < 1:  # it is serving its share
                assert dump.poll() is None, dump.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.02)
        victim.kill()  # SIGKILL: its streams break with images in flight
        stdout, stderr = dump.communicate(timeout=600)
    finally:
        if dump.poll() is None:
            dump.kill()
        victim.stop()
    assert dump.returncode == 0, stderr
    assert f"embedded {PHOTOS} of {PHOTOS}" in stdout
    resent = re.search(
        r"(\d+) embed streams broke and were replaced; (\d+) images were sent", stdout
    )
    assert resent is not None and int(resent[2]) >= 1, stdout  # images were in flight on it
    check_vectors(out, single)  # every file has its vector, equal to a single embedder's

    # Unary calls on a channel over both skip the dead replica (round_robin + retry).
    image = next(crops.glob("*.jpg")).read_bytes()
    with EmbedderClient(f"{survivor.address},{victim.address}", timeout=20) as client:
        for _ in range(4):
            assert client.embed(image).shape == (2048,)


def connectivity_while_streaming(address: str, seconds: float, image: bytes) -> tuple[list, int]:
    """Stream one image every 0.5 s for `seconds` on a fresh channel; returns the channel's
    connectivity states meanwhile and how many images were answered."""
    states: list[grpc.ChannelConnectivity] = []
    with open_channel(address) as channel:
        channel.subscribe(states.append, try_to_connect=True)
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        count = int(seconds / 0.5)

        def slowly():
            for n in range(count):
                time.sleep(0.5)
                yield embedder_pb2.EmbedStreamRequest(id=str(n), image=image)

        replies = list(stub.EmbedStream(slowly(), timeout=60))
        answered = sum(1 for r in replies if r.WhichOneof("result") == "embedding")
    return states, answered


def test_servers_close_connections_at_their_maximum_age_without_cutting_streams(
    replicas, embedder_server, crops
):
    image = next(crops.glob("*.jpg")).read_bytes()
    seconds = CONNECTION_AGE * 2 + 1
    states, answered = connectivity_while_streaming(replicas[0].address, seconds, image)
    assert answered == int(seconds / 0.5)  # the stream outlived its connection's age
    ready = states.index(grpc.ChannelConnectivity.READY)
    assert grpc.ChannelConnectivity.IDLE in states[ready:], states  # GOAWAY: reconnect anew
    # The session's embedder has the default age (300 s): its connection stays up.
    states, _ = connectivity_while_streaming(embedder_server.address, seconds, image)
    ready = states.index(grpc.ChannelConnectivity.READY)
    assert grpc.ChannelConnectivity.IDLE not in states[ready:], states
