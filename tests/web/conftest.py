"""Fixtures of the web server's tests: the sample photos indexed into two real shards, and
imagesim-web processes in front of them (real processes on loopback, untrained embedder)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagesim.client.collection import Collection
from imagesim.samples import write_held_out_cat, write_sample_photos
from imagesim.types import ItemToAdd
from tests.conftest import Pki
from tests.support.cli import run_cli
from tests.support.launch import ServerProcess, start_index
from tests.support.web import WebProcess, start_web


@pytest.fixture(scope="session")
def web_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder imagesim-web serves pictures from: the sample photos and their variants."""
    root = tmp_path_factory.mktemp("web") / "images"
    write_sample_photos(root / "photos")
    return root


@pytest.fixture(scope="session")
def held_out_cat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A photo outside the collection whose near-duplicates are in it (the chelsea*.jpg)."""
    return write_held_out_cat(tmp_path_factory.mktemp("queries") / "held_out_cat.jpg")


@pytest.fixture(scope="session")
def web_collection(
    embedder_server: ServerProcess, web_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """The web root indexed into two shards with the CLI: (embedder address, shard list)."""
    work = tmp_path_factory.mktemp("web-shards")
    shards = [start_index(work / f"s{n}.log", work / f"s{n}", 2048) for n in range(2)]
    addresses = ",".join(s.address for s in shards)
    run_cli(
        "index", str(web_root), "--embedder", embedder_server.address, "--shards", addresses,
        "--meta", "album=samples", "--report", str(work / "failed.tsv"),
    )  # fmt: skip
    yield embedder_server.address, addresses
    for shard in shards:
        shard.stop()


@pytest.fixture(scope="session")
def web(
    web_collection: tuple[str, str], web_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebProcess]:
    """imagesim-web with its default limits in front of the collection."""
    embedder, shards = web_collection
    server = start_web(tmp_path_factory.mktemp("web-log") / "web.log", embedder, shards, web_root)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def web_small(
    web_collection: tuple[str, str], web_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebProcess]:
    """imagesim-web with small limits: 256 KiB uploads, 2 at once, 5 s to arrive (and metrics,
    which tests watch to know a request has reached the server)."""
    embedder, shards = web_collection
    server = start_web(
        tmp_path_factory.mktemp("web-small-log") / "web.log", embedder, shards, web_root,
        "--max-upload-mb", "0.25", "--max-uploads", "2", "--upload-timeout", "5",
        "--metrics-port", "0",
    )  # fmt: skip
    yield server
    server.stop()


@pytest.fixture
def stack_with_a_shard_to_kill(
    embedder_server: ServerProcess, web_collection: tuple[str, str], web_root: Path, tmp_path: Path
) -> Iterator[tuple[WebProcess, ServerProcess]]:
    """A web server over a two-shard copy of the collection, and one of those shards (for
    the test to stop)."""
    shards = [start_index(tmp_path / f"s{n}.log", tmp_path / f"s{n}", 2048) for n in range(2)]
    with Collection(web_collection[1].split(",")) as source:
        items = [ItemToAdd(i.key, i.vector, i.metadata) for i in source.scan(include_vectors=True)]
    with Collection([s.address for s in shards]) as copy:
        copy.add(items)
    addresses = ",".join(s.address for s in shards)
    server = start_web(tmp_path / "web.log", embedder_server.address, addresses, web_root)
    yield server, shards[1]
    server.stop()
    for shard in shards:
        shard.stop()


def tls_client(pki: Pki, client_cert: bool = False) -> ssl.SSLContext:
    """A client context trusting the test CA (with the client certificate: for mutual TLS)."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client_cert:
        context.load_cert_chain(pki.client.cert, pki.client.key)
    return context


def start_secure_web(
    log_path: Path, collection: tuple[str, str], root: Path, pki: Pki, *args: str
) -> WebProcess:
    """imagesim-web with TLS (the test CA's localhost certificate), the test key file and
    metrics on a free port, in front of `collection`."""
    server = WebProcess(
        log_path, *collection, root,
        "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
        "--api-keys", str(pki.keys_file), "--metrics-port", "0", *args,
        tls=tls_client(pki, client_cert="--tls-client-ca" in args),
    )  # fmt: skip
    server.wait_ready()
    return server


@pytest.fixture(scope="session")
def secure_web(
    web_collection: tuple[str, str], web_root: Path, pki: Pki, tmp_path_factory
) -> Iterator[WebProcess]:
    """imagesim-web behind TLS and API keys (the pki fixture's), with metrics."""
    server = start_secure_web(
        tmp_path_factory.mktemp("secure-web") / "web.log", web_collection, web_root, pki
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def review_stack(
    embedder_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str, str, Path]]:
    """Photos of their own indexed into one shard: (images root, embedder, shards, quarantine)."""
    work = tmp_path_factory.mktemp("review")
    root = work / "images"
    write_sample_photos(root / "photos")
    quarantine = work / "quarantine"
    quarantine.mkdir()
    shard = start_index(work / "s0.log", work / "s0", 2048)
    run_cli(
        "index", str(root), "--embedder", embedder_server.address, "--shards", shard.address,
        "--report", str(work / "failed.tsv"),
    )  # fmt: skip
    yield root, embedder_server.address, shard.address, quarantine
    shard.stop()


@pytest.fixture(scope="module")
def review_web(review_stack, tmp_path_factory) -> Iterator[WebProcess]:
    """imagesim-web over review_stack with its quarantine folder (the page can move files)."""
    root, embedder, shards, quarantine = review_stack
    server = start_web(
        tmp_path_factory.mktemp("review-web") / "web.log", embedder, shards, root,
        "--quarantine", str(quarantine),
    )  # fmt: skip
    yield server
    server.stop()
