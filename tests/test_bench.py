"""The benchmark's own code runs end to end (`--quick`: tiny inputs). No timing assertions:
its correctness figures are checked instead (they would catch a wrong runtime, a served vector
that is not the model's, a query that does not find its own photo, a broken recall)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_quick_benchmark_runs_every_section_and_its_figures_hold(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["quick"] is True and results["machine"]["cpu"]
    assert set(results["raw"]) == {"openvino/float32", "tensorflow/float32"}
    for raw in results["raw"].values():
        assert raw["bs32_img_s"] > 0 and raw["bs1_p50_ms"] > 0
    # OpenVINO float32 computes what TensorFlow float32 computes, on real photos.
    [agreement] = results["agreement"]
    assert agreement["config"] == "openvino/float32"
    assert agreement["top10_vs_tensorflow_float32"] >= 0.99
    assert agreement["min_cosine_vs_tensorflow_float32"] >= 0.9999
    assert 0 <= agreement["reference_gap_10th_11th"] < 1
    assert results["weights"] == "none" and "weights untrained" in result.stdout
    [served] = results["served"]
    for key in ("grpc_1_client_img_s", "grpc_8_clients_img_s", "dump_img_s", "embedder_rss_mb"):
        assert served[key] > 0, key
    assert served["served_vs_raw_min_cosine"] >= 0.9999  # the server returns the model's vectors
    [startup] = results["startup"]
    assert startup["cached_s"] > 0 and startup["rss_mb"] > 0
    [query] = results["query"]
    assert query["top1_is_self"] == 1.0 and query["p99_ms"] >= query["p50_ms"] > 0
    rows = {r["label"]: r for r in results["index"][0]["rows"]}
    assert rows["numpy exact"]["recall_at_10"] == 1.0  # measured against a full sort
    assert rows["annoy+rerank"]["recall_at_10"] >= 0.9
    assert results["fan_out"]["p50_ms"]["4 shards"] > 0
    # A no-op sync over files the collection already holds embeds and removes nothing.
    assert results["sync"]["files"] == 2000 and results["sync"]["embedded"] == 0
    # Local Ray and the gRPC dump embedded the same photos with the same model.
    [ray] = results["ray"]
    assert ray["config"] == "openvino/float32" and ray["images"] == 16
    assert ray["grpc_dump_img_s"] > 0 and ray["ray_img_s"] > 0 and ray["ray_start_s"] > 0
    assert len(ray["rounds"]["ray"]) == 1
    assert ray["min_cosine_ray_vs_grpc"] >= 0.9999
    assert "machine: " in result.stdout and "fan-out p50" in result.stdout
    assert "bulk dump openvino/float32 16 photos" in result.stdout
