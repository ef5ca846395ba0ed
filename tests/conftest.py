"""Shared fixtures: real server processes on loopback ports they bound themselves."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagesim.client.embedder_client import EmbedderClient
from imagesim.testing.launch import ServerProcess, start_embedder, start_index
from imagesim.testing.samples import write_sample_photos


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def synthetic_image(seed: int, size: tuple[int, int] = (500, 375)) -> Image.Image:
    """A smooth random colour field: distinct per seed, photo-like statistics."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos (scikit-image samples + near-duplicates), generated images, one corrupt file."""
    folder = tmp_path_factory.mktemp("photos")
    write_sample_photos(folder / "real")
    (folder / "generated").mkdir()
    for seed in range(6):
        synthetic_image(seed).save(folder / "generated" / f"synthetic_{seed}.png")
    # Two bad files: one the client's header check rejects, one only the embedder can reject.
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    whole = jpeg_bytes(synthetic_image(99))
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.txt").write_text("not an image: ignored by extension")
    return folder


@pytest.fixture(scope="session")
def embedder_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One Embedder process (untrained weights) for the whole session."""
    logs = tmp_path_factory.mktemp("embedder")
    # float32 pinned: vectors compared across processes and batches must not depend on the CPU.
    server = start_embedder(
        logs / "embedder.log", "--weights", "none", "--precision", "float32", "--grace", "5"
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def embedder(embedder_server: ServerProcess) -> Iterator[EmbedderClient]:
    with EmbedderClient(embedder_server.address, timeout=60) as client:
        yield client


@pytest.fixture
def start_shard(tmp_path: Path) -> Iterator:
    """Factory: start an Index shard process on a fresh (or given) data directory."""
    started: list[ServerProcess] = []

    def start(dims: int = 2048, *args: str, data: Path | None = None, name: str = "shard"):
        data = data or tmp_path / name
        server = start_index(tmp_path / f"{name}.log", data, dims, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
