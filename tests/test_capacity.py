"""The capacity model (deploy/capacity.py): the tables of docs/scaling.md are its output, the
Kubernetes resources are sized by it, its measured inputs agree with the measurements in
docs/performance.md and can be measured again."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy_support import DEPLOY, ROOT, load_deploy_module

SCALING = ROOT / "docs" / "scaling.md"  # the capacity model's section and the sizing paragraph

capacity = load_deploy_module("capacity.py")
BEGIN, END = "<!-- capacity: begin (python deploy/capacity.py) -->", "<!-- capacity: end -->"
QUANTITY = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def quantity(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)?", text).groups()  # type: ignore[union-attr]
    return int(number) * QUANTITY.get(unit or "", 1)


def test_the_docs_hold_the_scripts_output():
    doc = SCALING.read_text()
    assert doc.count(BEGIN) == 1 and doc.count(END) == 1
    block = doc.split(BEGIN)[1].split(END)[0]
    assert block.strip() == capacity.report(capacity.Hosts()).strip()


def test_the_shard_pods_are_sized_by_the_model():
    sts = yaml.safe_load((DEPLOY / "k8s" / "base" / "index-statefulset.yaml").read_text())
    annotations = sts["metadata"]["annotations"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    limit = quantity(container["resources"]["limits"]["memory"])
    assert quantity(container["resources"]["requests"]["memory"]) == limit
    costs = capacity.ShardCosts.of(capacity.LAYOUTS[0])
    assert annotations["imagesim/dims"] == "2048" and "--dims=2048" in container["args"]
    items = int(annotations["imagesim/max-items-per-shard"])
    assert items == costs.items_per_pod(limit)
    assert costs.build_peak(items) <= capacity.POD_USABLE * limit
    volume = sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert costs.disk(items) <= quantity(volume)
    # the figures quoted by hand beside the manifest and in the docs' sizing paragraph
    peak = f"{costs.build_peak_intercept / capacity.MiB:.0f} MiB + {costs.build_peak_per_item:,.0f}"
    assert (
        f"build peak {peak} B per item" in (DEPLOY / "k8s/base/index-statefulset.yaml").read_text()
    )
    sizing = " ".join(SCALING.read_text().split())
    assert f"{peak} bytes per 2048-d item" in sizing
    assert f"pods hold {items:,} items each" in sizing


def test_the_embedder_pod_holds_the_model_and_the_decode_budget():
    deployment = yaml.safe_load((DEPLOY / "k8s" / "base" / "embedder-deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    budget_mpx = float(
        next(a for a in container["args"] if a.startswith("--decode-budget-mpx=")).split("=")[1]
    )
    # docs/operations.md (Running the servers): the decode path peaks at ~8 bytes a pixel;
    # docs/performance.md: OpenVINO bf16 from the cached IR, RSS 505-516 MB after serving.
    need = budget_mpx * 1e6 * 8 + 516e6
    assert need <= 0.9 * quantity(container["resources"]["limits"]["memory"])


def test_measured_index_sizes_agree_with_facts():
    # docs/performance.md (What the capacity model uses), Annoy at 25,000 vectors: 2048-d files
    # 208-236 MB, 256-d 29-63 MB (10-100 trees),
    # against the measurement nearest that size (Annoy's file per item grows with the count)
    def annoy_bytes_at_25k(layout: capacity.Layout) -> float:
        row = min(layout.rows(), key=lambda r: abs(r["items"] - 25_000))
        return 25_000 * row["annoy_file_mib"] * capacity.MiB / row["items"]

    full_layout, _, reduced_layout = capacity.LAYOUTS
    assert 208e6 <= annoy_bytes_at_25k(full_layout) <= 236e6
    assert 29e6 <= annoy_bytes_at_25k(reduced_layout) <= 63e6
    full, _, reduced = (capacity.ShardCosts.of(layout) for layout in capacity.LAYOUTS)
    # the raw vectors alone are 8,192 B (2048-d) and 1,024 B (256-d) per item
    assert full.build_peak_per_item > 8192 and reduced.build_peak_per_item > 1024


def test_the_model_arithmetic():
    assert capacity.line_fit([1, 2, 3], [3, 5, 7]) == pytest.approx((1, 2))
    hosts = capacity.Hosts(host_gib=64, reserved_gib=8, shard_pod_gib=14)
    assert hosts.pods_per_host == 4
    plan = capacity.Plan.of(10_000_000, capacity.LAYOUTS[0], hosts)
    assert plan.shards * plan.items_per_shard >= 10_000_000
    assert plan.hosts == -(-plan.shards // 4)
    assert plan.fan_out_ms == pytest.approx(capacity.CALL_OVERHEAD_MS * plan.shards)
    bigger = capacity.Plan.of(10_000_000, capacity.LAYOUTS[0], capacity.Hosts(128, 8, 28))
    assert bigger.shards < plan.shards and bigger.query_ms < plan.query_ms
    runtime = capacity.RUNTIMES[0]
    assert 1_000_000 / runtime.images_per_second_per_core / 3600 == pytest.approx(4.9, abs=0.1)


def test_the_script_prints_the_report():
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "capacity.py"), "--host-gib", "128", "--shard-pod-gib", "28"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "hosts (128 GiB)" in result.stdout
    assert "shard pods of 28 GiB, 4 per 128 GiB host" in result.stdout


@pytest.mark.parametrize("measured", sorted((DEPLOY / "measured").glob("*.json")))
def test_measurements_can_be_repeated(measured: Path, tmp_path: Path):
    """Each measurement names the command that made it; that command runs (at a tiny size)."""
    record = json.loads(measured.read_text())
    if record["command"].startswith("python -m bench.scale"):
        _repeat_scale(record, tmp_path)
        return
    args = record["command"].split()[2:]
    assert args[:1] == ["--sizes"] or "--sizes" in args
    sizes = args.index("--sizes") + 1
    args[sizes] = "300"
    args[args.index("--out") + 1] = str(tmp_path / "out.json")
    subprocess.run(
        [sys.executable, str(DEPLOY / "measure_shard.py"), *args],
        check=True,
        capture_output=True,
        timeout=300,
    )
    again = json.loads((tmp_path / "out.json").read_text())
    assert again["what"] == record["what"]
    assert set(again["results"][0]) == set(record["results"][0])


def _repeat_scale(record: dict, tmp_path: Path) -> None:
    """A benchmark scale record: its points again at 300 items each."""
    args = record["command"].split()
    points = args[args.index("--points") + 1].split(",")
    tiny = ",".join("300x" + point.partition("x")[2] for point in points)
    out = tmp_path / "out.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.scale",
            "--points",
            tiny,
            "--work",
            str(tmp_path / "w"),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    again = json.loads(out.read_text())
    assert again["what"] == record["what"]
    # Every figure of the record is measured again (a newer bench may add figures).
    assert set(record["results"][0]) <= set(again["results"][0])
