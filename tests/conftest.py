"""Shared fixtures: real server processes on loopback ports they bound themselves."""

from __future__ import annotations

import hashlib
import io
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagesim.channel import ChannelSecurity
from imagesim.client.embedder_client import EmbedderClient
from imagesim.samples import write_sample_photos
from tests.pki import CertificateAuthority, Issued
from tests.support.launch import ServerProcess, start_embedder, start_index

STREAM_IDLE_SECONDS = 5  # the idle timeout of servers started for stream tests

MODEL_CACHE_ENV = "IMAGESIM_EMBEDDER_MODEL_CACHE"


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


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One OpenVINO IR cache for every embedder the tests start (converted once per session),
    so no test writes to the user's Keras cache."""
    cache = tmp_path_factory.mktemp("model-cache")
    previous = os.environ.get(MODEL_CACHE_ENV)
    os.environ[MODEL_CACHE_ENV] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop(MODEL_CACHE_ENV, None)
    else:
        os.environ[MODEL_CACHE_ENV] = previous


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

    def start(
        dims: int = 2048,
        *args: str,
        data: Path | None = None,
        name: str = "shard",
        security: ChannelSecurity | None = None,
    ):
        data = data or tmp_path / name
        server = start_index(tmp_path / f"{name}.log", data, dims, *args, security=security)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@dataclass(frozen=True)
class Pki:
    """Certificates and API keys for the security tests."""

    ca: Path
    server: Issued
    client: Issued  # signed by `ca`
    other_ca: Path  # a CA that signed nothing here
    stranger: Issued  # a client certificate from other_ca
    keys_file: Path
    keys: dict[str, str]  # role -> key

    def security(self, role: str | None = None, **kwargs) -> ChannelSecurity:
        """TLS trusting our CA, with the key of `role` (None: no key)."""
        return ChannelSecurity(tls_ca=self.ca, api_key=self.keys.get(role or ""), **kwargs)

    def mutual(self, role: str | None = None) -> ChannelSecurity:
        return self.security(role, tls_cert=self.client.cert, tls_key=self.client.key)

    def server_args(self, *extra: str) -> list[str]:
        return [
            "--tls-cert",
            str(self.server.cert),
            "--tls-key",
            str(self.server.key),
            "--api-keys",
            str(self.keys_file),
            *extra,
        ]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(folder / "ca")
    other = CertificateAuthority(folder / "other", "some other CA")
    keys = {role: secrets.token_hex(24) for role in ("read", "write", "admin")}
    admin_hash = hashlib.sha256(keys["admin"].encode()).hexdigest()
    keys_file = folder / "api-keys"
    keys_file.write_text(
        "# role key\n"
        f"read {keys['read']}\n"
        f"write {keys['write']}   # the ingest job\n"
        f"admin sha256:{admin_hash}\n"
    )
    keys_file.chmod(0o600)
    return Pki(
        ca=ca.files.cert,
        server=ca.issue("server", "localhost"),
        client=ca.issue("client", "imagesim client", client=True),
        other_ca=other.files.cert,
        stranger=other.issue("stranger", "stranger", client=True),
        keys_file=keys_file,
        keys=keys,
    )


@pytest.fixture(scope="session")
def secure_embedder(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServerProcess]:
    """An Embedder with TLS, API keys, metrics and a short stream idle timeout (the other
    limits at their defaults)."""
    logs = tmp_path_factory.mktemp("secure-embedder")
    server = start_embedder(
        logs / "embedder.log",
        "--weights",
        "none",
        "--precision",
        "float32",
        "--grace",
        "5",
        "--stream-idle-timeout",
        str(STREAM_IDLE_SECONDS),
        "--metrics-port",
        "0",
        *pki.server_args(),
        security=pki.security(),
    )
    yield server
    server.stop()
