"""--precision int8: the IR quantized by NNCF on calibration photos, cached (no second
quantization), reported in Info, stored with every vector, and never mixed silently with float
vectors of the same model in a collection. Untrained seeded weights, a tiny calibration set."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from imagesim.client.embedder_client import EmbedderClient, ModelIdentity
from imagesim.embedder_server.runtimes import quantize
from imagesim.embedder_server.runtimes.ir_cache import MANIFEST
from imagesim.embedder_server.runtimes.select import load_runtime
from imagesim.enums import Precision, Runtime
from imagesim.errors import FailedPrecondition
from imagesim.recall import row_cosines
from tests.support.cli import run_cli as imagesim
from tests.support.launch import ServerProcess, start_embedder

CALIBRATION = ("astronaut", "chelsea", "coffee", "rocket", "horse", "camera")


@pytest.fixture(scope="module")
def calibration(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six real photos (a few hundred in real use)."""
    folder = tmp_path_factory.mktemp("calibration")
    for name in CALIBRATION:
        shutil.copy(photos / "real" / f"{name}.jpg", folder)
    return folder


@pytest.fixture(scope="module")
def int8_server(
    calibration: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    logs = tmp_path_factory.mktemp("int8")
    server = start_embedder(
        logs / "embedder.log",
        *("--weights", "none", "--precision", "int8", "--calibration", str(calibration)),
        timeout=900,
    )
    yield server
    server.stop()


def test_int8_is_quantized_once_reported_and_cached(
    int8_server, embedder, calibration, model_cache, photos, caplog
):
    with EmbedderClient(int8_server.address, timeout=60) as client:
        info = client.info()
    assert info.precision == Precision.INT8
    assert info.runtime == Runtime.OPENVINO
    assert any(f"6 calibration photos in {calibration}" in note for note in info.notes)
    assert "quantizing the IR to INT8" in int8_server.log_text()
    # The IR on disk is quantized (FakeQuantize operations), keyed by the calibration set.
    [entry] = [
        path.parent
        for path in model_cache.glob(f"*/{MANIFEST}")
        if json.loads(path.read_text()).get("quantized", {}).get("calibration") == str(calibration)
    ]
    manifest = json.loads((entry / MANIFEST).read_text())
    assert "subset=6" in manifest["key"]["quantization"]
    assert 'type="FakeQuantize"' in (entry / "model.xml").read_text()
    # Vectors carry int8 and stay close to float32's on real photos (untrained weights).
    image = (photos / "real" / "coffee.jpg").read_bytes()
    with EmbedderClient(int8_server.address, timeout=60) as client:
        vector = client.embed(image)
    assert row_cosines(vector[None], embedder.embed(image)[None])[0] > 0.99
    # A second start loads the cached INT8 IR: no quantization, same vectors.
    caplog.set_level(logging.INFO)
    runtime = load_runtime("none", "openvino", "int8", model_cache, calibration)
    assert runtime.info.precision is Precision.INT8
    assert "from cache" in caplog.text and "quantizing" not in caplog.text
    from imagesim.embedder_server.preprocess import ImageLimits, load_rgb

    pixels = load_rgb(image, (299, 299), ImageLimits())[None]
    assert np.allclose(runtime(pixels)[0], vector, atol=1e-5)


def test_int8_vectors_are_tagged_and_never_mixed_with_float_ones(
    int8_server, embedder_server, photos, start_shard, tmp_path
):
    with EmbedderClient(int8_server.address, timeout=60) as client:
        identity = ModelIdentity.of(client.info())
    assert identity.precision == "int8"
    shard = start_shard(2048)
    folder = tmp_path / "few"
    folder.mkdir()
    for name in ("coffee", "horse", "moon"):
        shutil.copy(photos / "real" / f"{name}.jpg", folder)
    index = ("index", str(folder), "--shards", shard.address, "--quiet")
    imagesim(*index, "--embedder", int8_server.address)
    stats = json.loads(imagesim("stats", "--shards", shard.address, "--json").stdout)["total"]
    assert stats["embedded_by"] == {"openvino/int8": 3}
    # Float vectors of the same model are refused in this int8 collection ...
    refused = imagesim(*index, "--embedder", embedder_server.address, "--reindex", check=False)
    assert refused.returncode == 1 and "FAILED_PRECONDITION" in refused.stderr
    assert "int8 and float vectors are not mixed in one collection" in refused.stderr
    # ... a float query is answered, with a note.
    query = imagesim(
        "query",
        str(folder / "coffee.jpg"),
        *("--embedder", embedder_server.address, "--shards", shard.address),
    )
    assert "int8 and float vectors agree less" in query.stderr
    # And the reverse: int8 vectors are refused in a float collection.
    other = start_shard(2048, name="float")
    imagesim(*index[:3], other.address, "--quiet", "--embedder", embedder_server.address)
    refused = imagesim(
        *index[:3], other.address, "--quiet", "--embedder", int8_server.address, check=False
    )
    assert refused.returncode == 1
    assert "int8 and float vectors are not mixed in one collection" in refused.stderr


def test_a_wrong_calibration_folder_gives_a_clear_error(model_cache, tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(FailedPrecondition, match=r"--calibration .*missing: not a directory"):
        load_runtime("none", "openvino", "int8", model_cache, missing)
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no photos here")
    with pytest.raises(FailedPrecondition, match="no images in it"):
        load_runtime("none", "openvino", "int8", model_cache, empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    with pytest.raises(FailedPrecondition, match="no photo in it decodes"):
        load_runtime("none", "openvino", "int8", model_cache, broken)
    with pytest.raises(FailedPrecondition, match="--calibration is for --precision int8 only"):
        load_runtime("none", "openvino", "float32", model_cache, empty)
    with pytest.raises(FailedPrecondition, match="int8 runs on OpenVINO only"):
        load_runtime("none", "tensorflow", "int8", model_cache)


def test_the_default_calibration_set_needs_scikit_image(monkeypatch, tmp_path):
    quantize.write_samples(tmp_path / "samples")
    assert len(quantize.calibration_files(tmp_path / "samples")) == 44
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(FailedPrecondition, match=r"scikit-image: pip install 'imagesim\[demo\]'"):
        quantize.write_samples(tmp_path / "other")
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_the_mapped_ir_weights_leave_memory_after_the_first_inference(
    precision, model_cache, calibration, photos
):
    """OpenVINO keeps the IR's weights file mapped, but runs on its own repacked copy: the
    file's pages are dropped from RSS after the first inference (83 MB for float32) and not
    read back."""
    import psutil

    from imagesim.embedder_server.preprocess import ImageLimits, load_rgb

    runtime = load_runtime(
        "none", "openvino", precision, model_cache, calibration if precision == "int8" else None
    )
    [where] = [n.split("IR cached at ", 1)[1] for n in runtime.info.notes if "IR cached at" in n]
    weights = str((Path(where) / "model.bin").resolve())

    def resident() -> int:
        maps = psutil.Process().memory_maps(grouped=True)
        return sum(m.rss for m in maps if m.path == weights)

    pixels = load_rgb((photos / "real" / "coffee.jpg").read_bytes(), (299, 299), ImageLimits())
    first = runtime(pixels[None])
    assert resident() < 1 << 20
    for batch in (pixels[None], np.stack([pixels] * 4)):
        assert np.array_equal(runtime(batch)[0], first[0])  # same vectors afterwards
    # a new batch size reads back a few small constants (4 MB of float32's 83 MB), no more
    assert resident() < Path(weights).stat().st_size / 10


@pytest.mark.slow
def test_the_ray_engine_dumps_int8_vectors(calibration, model_cache, photos, tmp_path_factory):
    """`dump --engine ray --precision int8 --calibration DIR`: the actors load the cached INT8
    IR; the dump says int8 and holds the int8 runtime's vectors."""
    from imagesim.bulk.parquet_dump import read_header, read_rows
    from imagesim.embedder_server.preprocess import ImageLimits, load_rgb

    root = tmp_path_factory.mktemp("ray-int8")
    folder = root / "photos"
    folder.mkdir()
    for name in ("coffee", "horse"):
        shutil.copy(photos / "real" / f"{name}.jpg", folder)
    out = root / "v.parquet"
    imagesim(
        *("dump", str(folder), "--engine", "ray", "--out", str(out), "--quiet"),
        *("--weights", "none", "--runtime", "openvino", "--precision", "int8"),
        *("--calibration", str(calibration), "--model-cache", str(model_cache)),
        env={"RAY_TMPDIR": str(tmp_path_factory.mktemp("ray"))},
    )
    header = read_header(out)
    assert (header.runtime, header.precision) == ("openvino", "int8")
    runtime = load_runtime("none", "openvino", "int8", model_cache, calibration)
    for key, vector, _ in read_rows(out):
        pixels = load_rgb(Path(key).read_bytes(), (299, 299), ImageLimits())
        assert np.allclose(vector, runtime(pixels[None])[0], atol=1e-5), key
