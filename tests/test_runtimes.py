"""Inference runtimes: selection, the OpenVINO IR cache (stale and corrupt entries rebuilt,
never trusted; cached starts without TensorFlow; no telemetry), agreement with TensorFlow
float32 on real photos, and the TensorFlow runtime still serving. Untrained seeded weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest

from imagesim.client.embedder_client import EmbedderClient
from imagesim.embedder_server.model import WeightsSource
from imagesim.embedder_server.preprocess import ImageLimits, load_rgb
from imagesim.embedder_server.runtimes import openvino as ovrt
from imagesim.embedder_server.runtimes.ir_cache import MANIFEST, CacheKey, IRCache
from imagesim.embedder_server.runtimes.select import choose_runtime, load_runtime
from imagesim.embedder_server.runtimes.tensorflow import TensorFlowRuntime
from imagesim.enums import Precision, Runtime
from imagesim.errors import FailedPrecondition
from imagesim.recall import row_cosines, top_k_agreement
from tests.support.launch import ServerProcess, start_embedder

UNTRAINED = WeightsSource("none")


def run_python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def cached_entry(model_cache: Path) -> Path:
    """The session cache's entry for the untrained weights (converting it if needed)."""
    load_runtime("none", "openvino", "float32", model_cache)
    key = ovrt.cache_key(UNTRAINED)
    assert key is not None
    return IRCache(model_cache).entry_dir(key)


def copy_cache(model_cache: Path, target: Path) -> Path:
    """A private copy of the session's cache entry; returns the copied entry directory."""
    entry = cached_entry(model_cache)
    shutil.copytree(entry, target / entry.name)
    return target / entry.name


# ---- runtime selection -------------------------------------------------------------------


def test_runtime_choice_on_this_machine():
    assert choose_runtime("tensorflow").runtime is Runtime.TENSORFLOW
    assert choose_runtime("openvino").runtime is Runtime.OPENVINO
    auto = choose_runtime("auto")
    # No NVIDIA device here, OpenVINO is installed and supports every x86-64 CPU we run on.
    assert not any(Path("/dev").glob("nvidia[0-9]*"))
    assert auto.runtime is Runtime.OPENVINO and "supports this CPU" in auto.reason
    with pytest.raises(ValueError, match="runtime must be one of"):
        choose_runtime("onnx")


def test_auto_runtime_without_openvino_is_tensorflow():
    result = run_python(
        "import sys\n"
        "sys.modules['openvino'] = None  # as if not installed\n"
        "from imagesim.embedder_server.runtimes.select import choose_runtime\n"
        "from imagesim.errors import FailedPrecondition\n"
        "choice = choose_runtime('auto')\n"
        "print(choice.runtime.value, '|', choice.reason)\n"
        "try:\n"
        "    choose_runtime('openvino')\n"
        "except FailedPrecondition as exc:\n"
        "    print('refused:', exc.message)\n"
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "tensorflow | auto: OpenVINO is not installed"
    assert lines[1].startswith("refused: --runtime openvino: OpenVINO is not installed")


def test_auto_precision_follows_native_bf16_and_the_measured_agreement(model_cache, tmp_path):
    expected = Precision.BFLOAT16 if ovrt.native_bf16() else Precision.FLOAT32
    assert load_runtime("none", "openvino", "auto", model_cache).info.precision is expected
    # The same IR whose conversion measured a poor bfloat16 agreement: auto keeps float32.
    entry = copy_cache(model_cache, tmp_path)
    manifest = json.loads((entry / MANIFEST).read_text())
    if "bfloat16" in manifest["agreement"]:
        manifest["agreement"]["bfloat16"]["top10_agreement"] = 0.5
    (entry / MANIFEST).write_text(json.dumps(manifest))
    runtime = load_runtime("none", "openvino", "auto", tmp_path)
    assert runtime.info.precision is Precision.FLOAT32
    assert "runtime requested" in runtime.info.notes[0]


def test_tensorflow_precision_auto_is_float32():
    # Keras' mixed_bfloat16 is not measured at start: auto never picks it.
    runtime = load_runtime("none", "tensorflow", "auto")
    assert (runtime.info.runtime, runtime.info.precision) == (Runtime.TENSORFLOW, Precision.FLOAT32)


# ---- agreement on real photos ------------------------------------------------------------


@pytest.fixture(scope="module")
def real_pixels(photos) -> np.ndarray:
    paths = sorted((photos / "real").glob("*.jpg"))
    return np.stack([load_rgb(p.read_bytes(), (299, 299), ImageLimits()) for p in paths])


@pytest.fixture(scope="module")
def tensorflow_float32(real_pixels) -> tuple[np.ndarray, str]:
    runtime = TensorFlowRuntime(UNTRAINED, Precision.FLOAT32)
    return runtime(real_pixels), runtime.info.fingerprint


@pytest.mark.parametrize(
    "precision, min_cosine, min_top10",
    [(Precision.FLOAT32, 0.99999, 0.99), (Precision.BFLOAT16, 0.9999, 0.98)],
    ids=["float32", "bfloat16"],
)
def test_openvino_agrees_with_tensorflow_float32_on_real_photos(
    model_cache, real_pixels, tensorflow_float32, precision, min_cosine, min_top10
):
    if precision is Precision.BFLOAT16 and not ovrt.native_bf16():
        pytest.skip("no native bfloat16 on this CPU")
    reference, fingerprint = tensorflow_float32
    runtime = load_runtime("none", "openvino", precision.value, model_cache)
    vectors = runtime(real_pixels)
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    assert runtime.info.fingerprint == fingerprint  # same weights, comparable vectors
    assert row_cosines(reference, vectors).min() >= min_cosine
    assert top_k_agreement(reference, vectors, 10) >= min_top10
    # The agreement measured at conversion is stated with the model.
    assert any("top-10 agreement" in note for note in runtime.info.notes)


# ---- the IR cache --------------------------------------------------------------------------


def small_ir(xml: Path) -> None:
    xml.write_text("<net>not a real network; the cache only checks bytes</net>")
    xml.with_suffix(".bin").write_bytes(os.urandom(4096))


KEY = CacheKey("arch", "sha256=ab", "ov 1")


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda d: (d / "model.bin").write_bytes(b"\0" * 4096), "does not match its sha256"),
        (lambda d: (d / "model.xml").write_text("<net/>"), "model.xml is"),
        (lambda d: (d / "model.bin").unlink(), "model.bin missing"),
        (lambda d: (d / MANIFEST).write_text("{"), "unreadable manifest"),
        (lambda d: (d / MANIFEST).unlink(), "unreadable manifest"),
    ],
    ids=["bin-bytes-changed", "xml-truncated", "bin-missing", "manifest-corrupt", "no-manifest"],
)
def test_damaged_cache_entries_are_not_trusted_and_are_replaced(tmp_path, caplog, damage, reason):
    cache = IRCache(tmp_path)
    stored = cache.store(KEY, small_ir, "f" * 64, {"agreement": {}})
    assert cache.load(KEY) == stored
    damage(stored.directory)
    assert cache.load(KEY) is None
    assert reason in caplog.text
    again = cache.store(KEY, small_ir, "e" * 64, {"agreement": {}})
    assert cache.load(KEY) == again and again.fingerprint == "e" * 64
    assert [p.name for p in tmp_path.iterdir()] == [stored.directory.name]  # no leftovers


def test_an_entry_for_another_key_is_stale(tmp_path, caplog):
    cache = IRCache(tmp_path)
    stored = cache.store(KEY, small_ir, "f" * 64, {"agreement": {}})
    manifest = json.loads((stored.directory / MANIFEST).read_text())
    manifest["key"]["openvino"] = "ov 0"  # converted by another OpenVINO version
    (stored.directory / MANIFEST).write_text(json.dumps(manifest))
    assert cache.load(KEY) is None and "manifest is for another key" in caplog.text
    # Another key never finds this entry at all.
    assert cache.load(CacheKey("arch", "sha256=cd", "ov 1")) is None


def test_cached_ir_loads_without_tensorflow_and_without_telemetry(model_cache, photos, tmp_path):
    cached_entry(model_cache)
    home = tmp_path / "home"
    home.mkdir()
    image = photos / "real" / "coffee.jpg"
    result = run_python(
        "import json, sys\n"
        "from imagesim.embedder_server.runtimes.select import load_runtime\n"
        "from imagesim.embedder_server.preprocess import ImageLimits, load_rgb\n"
        f"rt = load_runtime('none', 'openvino', 'float32', {str(model_cache)!r})\n"
        f"x = load_rgb(open({str(image)!r}, 'rb').read(), (299, 299), ImageLimits())\n"
        "v = rt(x[None])[0]\n"
        "from openvino.tools.ovc import telemetry_utils\n"
        "print(json.dumps({'tensorflow': 'tensorflow' in sys.modules,\n"
        "                  'keras': 'keras' in sys.modules,\n"
        "                  'telemetry': sys.modules.get('openvino_telemetry') is not None,\n"
        "                  'telemetry_impl': telemetry_utils.tm.__name__,\n"
        "                  'vector': v[:8].tolist()}))\n",
        env={"HOME": str(home)},
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["tensorflow"] is False and report["keras"] is False
    assert report["telemetry"] is False
    assert report["telemetry_impl"] == "openvino.tools.ovc.telemetry_stub"
    assert list(home.iterdir()) == []  # no consent or client-id file written
    here = load_runtime("none", "openvino", "float32", model_cache)
    x = load_rgb(image.read_bytes(), (299, 299), ImageLimits())
    np.testing.assert_allclose(report["vector"], here(x[None])[0][:8], rtol=1e-5, atol=1e-7)


def tensorflow_mapped(pid: int) -> list[str]:
    """TensorFlow's own shared libraries mapped into a process (imported TensorFlow)."""
    return [
        m.path
        for m in psutil.Process(pid).memory_maps()
        if "_pywrap_tensorflow" in m.path or "libtensorflow_framework" in m.path
    ]


def test_serving_process_never_imports_tensorflow(embedder_server):
    """The session's embedder converted (in a child process) or loaded the cached IR; either
    way TensorFlow never entered the serving process."""
    assert tensorflow_mapped(embedder_server.process.pid) == []
    assert "runtime openvino" in embedder_server.log_text()


def test_server_rebuilds_a_corrupt_cache_and_serves_the_same_vectors(
    model_cache, embedder, photos, tmp_path
):
    entry = copy_cache(model_cache, tmp_path / "cache")
    data = bytearray((entry / "model.bin").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, wrong weights
    (entry / "model.bin").write_bytes(bytes(data))
    home = tmp_path / "home"
    home.mkdir()
    server = ServerProcess(
        "imagesim.embedder_server.main",
        ["--weights", "none", "--precision", "float32", "--model-cache", str(tmp_path / "cache")],
        tmp_path / "embedder.log",
        env={"HOME": str(home)},
    )
    try:
        server.wait_ready(600)
        log = server.log_text()
        assert "not used: model.bin does not match its sha256" in log
        assert "converting none weights to OpenVINO IR" in log
        image = (photos / "real" / "rocket.jpg").read_bytes()
        with EmbedderClient(server.address, timeout=60) as client:
            np.testing.assert_allclose(
                client.embed(image), embedder.embed(image), rtol=1e-5, atol=1e-6
            )
        assert tensorflow_mapped(server.process.pid) == []
    finally:
        server.stop()
    assert IRCache(tmp_path / "cache").load(ovrt.cache_key(UNTRAINED)) is not None
    # The conversion (Keras writes its ~/.keras config) wrote no telemetry consent or client id.
    assert not (home / "intel").exists()


def test_tensorflow_runtime_still_serves(embedder, photos, tmp_path):
    server = start_embedder(
        tmp_path / "tf.log",
        "--weights",
        "none",
        "--runtime",
        "tensorflow",
        "--precision",
        "float32",
    )
    try:
        image = (photos / "real" / "astronaut.jpg").read_bytes()
        with EmbedderClient(server.address, timeout=120) as client:
            info = client.info()
            assert (info.runtime, info.precision) == (Runtime.TENSORFLOW, Precision.FLOAT32)
            assert info.model_fingerprint == embedder.info().model_fingerprint
            vector = client.embed(image)
        assert "runtime tensorflow (requested)" in server.log_text()
        assert row_cosines(vector[None], embedder.embed(image)[None])[0] >= 0.99999
    finally:
        server.stop()


def test_explicit_openvino_bf16_is_refused_where_it_would_not_run_bf16():
    if ovrt.native_bf16():
        runtime = load_runtime("none", "openvino", "bfloat16")
        assert runtime.info.precision is Precision.BFLOAT16
    else:
        with pytest.raises(FailedPrecondition, match="no native bfloat16"):
            load_runtime("none", "openvino", "bfloat16")
