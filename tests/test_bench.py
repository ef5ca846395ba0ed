"""The benchmark's own code runs end to end (`--quick`: tiny inputs; no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_quick_benchmark_runs_and_writes_every_section(tmp_path):
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
    assert results["quick"] is True
    row = results["embed"]["float32"]
    for key in (
        "raw_bs32_img_s",
        "predict_loop_img_s",
        "grpc_1_client_img_s",
        "grpc_8_clients_img_s",
        "bulk_dump_img_s",
        "ratio_8_clients_vs_raw",
        "embedder_rss_mb",
    ):
        assert row[key] > 0, key
    assert (
        results["query"]["p50_ms"] > 0
        and results["query"]["bare_bs1_p50_ms"] > 0
        and results["fan_out"]["4_shard_p50_ms"] > 0
    )
    index = results["index"]["structured 25k x 2048"]
    assert 0 <= index["annoy"]["recall_at_10"] <= index["numpy exact"]["recall_at_10"] == 1.0
    assert "embed float32" in result.stdout and "fan-out" in result.stdout
