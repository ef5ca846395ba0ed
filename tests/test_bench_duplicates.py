"""The duplicates benchmark runs end to end on small data (`--quick`) and its figures hold:
the finder agrees with the exact computation (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # a benchmark smoke test (make test-fast skips it)


def test_quick_duplicates_benchmark_agrees_with_the_exact_groups(tmp_path):
    out = tmp_path / "duplicates.json"
    command = [sys.executable, "-m", "bench.duplicates", "--quick", "--out", str(out)]
    command += ["--work", str(tmp_path / "work")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["quick"] is True and figures["items"] == 1500
    assert figures["sample_groups_exact"] == 1.0
    assert figures["pair_recall"] == 1.0 and figures["planted_recovered"] == 1.0
    assert figures["groups"] == 63 and figures["duplicated_items"] == 263
    assert 0 < figures["rss_before_mb"] <= figures["peak_rss_mb"] < 1000
    assert figures["machine"]["cores"] >= 1
    assert "duplicates 1,500 x 256" in result.stdout
