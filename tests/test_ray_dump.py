"""`imagesim dump --engine ray` on a private local Ray: real photos and bad files, vectors equal
to the gRPC path's, Parquet metadata, resuming, and what the local Ray is allowed to do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imagesim.bulk.parquet_dump import read_header, read_rows
from tests.support.cli import run_cli as imagesim

pytestmark = pytest.mark.slow

HELD_BACK = ("real/coffee.jpg", "real/rocket_half.jpg", "generated/synthetic_5.png")


@pytest.fixture(scope="module")
def ray_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Ray's session files under the test's temporary directory (a short path: Ray's socket
    paths must fit in 107 characters)."""
    return {"RAY_TMPDIR": str(tmp_path_factory.mktemp("ray"))}


@pytest.fixture(scope="module")
def runs(photos: Path, embedder_server, ray_env, tmp_path_factory: pytest.TempPathFactory):
    """A copy of the test photos dumped with the Ray engine twice (the second run after three
    more photos were added) and once with the gRPC engine; returns the folder, the outputs and
    the CLI results."""
    root = tmp_path_factory.mktemp("ray-dump")
    folder = root / "photos"
    shutil.copytree(photos, folder)
    held = root / "held"
    for name in HELD_BACK:
        (held / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(folder / name, held / name)
    ray_out = root / "ray.parquet"
    model = ["--weights", "none", "--runtime", "openvino", "--precision", "float32"]
    args = ["--engine", "ray", "--out", str(ray_out), "--quiet", *model]
    first = imagesim("dump", str(folder), *args, "--report", str(root / "f1.tsv"), env=ray_env)
    first_rows = {k: v for k, v, _ in read_rows(ray_out)}
    for name in HELD_BACK:
        shutil.move(held / name, folder / name)
    second = imagesim("dump", str(folder), *args, "--report", str(root / "f2.tsv"), env=ray_env)
    grpc_out = root / "grpc.parquet"
    imagesim(
        "dump",
        str(folder),
        "--out",
        str(grpc_out),
        "--embedder",
        embedder_server.address,
        "--quiet",
        "--report",
        str(root / "f3.tsv"),
    )
    return {
        "folder": folder,
        "ray": ray_out,
        "grpc": grpc_out,
        "first": first,
        "first_rows": first_rows,
        "second": second,
        "root": root,
    }


def images_in(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.suffix in (".jpg", ".png"))


def test_every_readable_photo_has_a_vector_and_bad_files_are_reported(runs):
    folder, root = runs["folder"], runs["root"]
    total = images_in(folder) - len(HELD_BACK)
    first = runs["first"]
    assert f"embedded {total - 2} of {total} images" in first.stdout
    assert "2 skipped" in first.stdout and "Traceback" not in first.stderr
    failed = dict(line.split("\t") for line in (root / "f1.tsv").read_text().splitlines())
    assert failed.keys() == {str(folder / "corrupt.jpg"), str(folder / "truncated.jpg")}
    assert failed[str(folder / "corrupt.jpg")].startswith("not a readable image")
    assert failed[str(folder / "truncated.jpg")].startswith("INVALID_ARGUMENT: cannot decode")
    assert len(runs["first_rows"]) == total - 2


def test_a_rerun_embeds_only_the_new_files_and_keeps_the_earlier_vectors(runs):
    folder = runs["folder"]
    second = runs["second"]
    before = images_in(folder) - len(HELD_BACK) - 2
    assert f"{before} images were already done" in second.stdout
    # the 3 added photos, and the 2 bad files again (they have no vector to skip them by)
    assert "embedded 3 of 5 images" in second.stdout
    rows = {k: v for k, v, _ in read_rows(runs["ray"])}
    assert len(rows) == before + 3
    assert {str(folder / n) for n in HELD_BACK} <= rows.keys()
    for key, vector in runs["first_rows"].items():
        assert np.array_equal(rows[key], vector)


def test_ray_vectors_equal_the_grpc_dump(runs):
    """Same keys, same model fingerprint, runtime and precision, same metadata, and vectors
    equal within float tolerance: one preprocessing and one runtime behind both engines."""
    ray_header, grpc_header = read_header(runs["ray"]), read_header(runs["grpc"])
    assert ray_header == grpc_header
    assert (ray_header.runtime, ray_header.precision) == ("openvino", "float32")
    ray_rows = {k: (v, m) for k, v, m in read_rows(runs["ray"])}
    grpc_rows = {k: (v, m) for k, v, m in read_rows(runs["grpc"])}
    assert ray_rows.keys() == grpc_rows.keys()
    keys = sorted(ray_rows)
    ray_vectors = np.stack([ray_rows[k][0] for k in keys])
    grpc_vectors = np.stack([grpc_rows[k][0] for k in keys])
    np.testing.assert_allclose(ray_vectors, grpc_vectors, rtol=1e-4, atol=1e-5)
    assert all(ray_rows[k][1] == grpc_rows[k][1] for k in keys)
    assert set(ray_rows[keys[0]][1]) == {
        "file_size",
        "width",
        "height",
        "mtime",
        "imagesim.model",
        "imagesim.embedded_by",
    }
    assert ray_rows[keys[0]][1]["imagesim.embedded_by"] == "openvino/float32"


def test_the_parquet_file_says_what_made_its_vectors(runs):
    file = pq.ParquetFile(runs["ray"])
    schema = file.schema_arrow
    assert schema.field("vector").type == pa.list_(pa.float32(), 2048)
    assert schema.field("metadata").type == pa.map_(pa.string(), pa.string())
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    assert meta["imagesim.runtime"] == "openvino"
    assert meta["imagesim.precision"] == "float32"
    assert meta["imagesim.space"] == "full" and meta["imagesim.dims"] == "2048"
    assert len(meta["imagesim.model_fingerprint"]) == 64
    assert not list(runs["root"].glob(".ray.parquet*"))  # no parts or temporary files left


def test_the_ray_engine_refuses_another_model_into_the_same_dump(runs, ray_env, tmp_path):
    out = tmp_path / "v.parquet"
    shutil.copy(runs["ray"], out)
    extra = tmp_path / "more"
    extra.mkdir()
    shutil.copy(runs["folder"] / "real" / "chelsea.jpg", extra / "cat.jpg")
    result = imagesim(
        "dump",
        str(extra),
        "--engine",
        "ray",
        "--out",
        str(out),
        "--weights",
        "none",
        "--runtime",
        "tensorflow",
        "--precision",
        "float32",
        "--quiet",
        check=False,
        env=ray_env,
    )
    assert result.returncode == 1
    assert "never mixed" in result.stderr and "tensorflow/float32" in result.stderr
    assert {k for k, _, _ in read_rows(out)} == {k for k, _, _ in read_rows(runs["ray"])}


LOCAL_RAY_CHECK = """
import json, ray
from ray._common.usage import usage_lib
from imagesim.bulk.ray_dump import RaySettings, ray_session

with ray_session(RaySettings(actors=3, local_cpus=2, object_store_mb=128)) as session:
    resources = session.cluster_resources()
    facts = {
        "usage_stats": usage_lib.usage_stats_enabled(),
        "cpus": resources["CPU"],
        "object_store": resources["object_store_memory"],
        "dashboard_url": session._private.worker.get_dashboard_url(),
        "progress_bars": session.data.DataContext.get_current().enable_progress_bars,
    }
facts["after"] = ray.is_initialized()
print(json.dumps(facts))
"""


def test_a_local_ray_stays_private_small_and_quiet(ray_env):
    """Checked in a fresh process, as the CLI runs it: a Ray started inside pytest's
    long-lived process (gRPC channels of earlier tests open) sometimes lost its dashboard
    process to SIGABRT or never launched its raylet."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_USAGE_STATS_ENABLED"}
    result = subprocess.run(
        [sys.executable, "-c", LOCAL_RAY_CHECK],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, **ray_env},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["usage_stats"] is False
    assert facts["cpus"] == 4  # the actors' CPUs plus one for decoding
    assert facts["object_store"] == 128 * 1024 * 1024
    assert facts["dashboard_url"] == ""  # no dashboard web UI
    assert facts["progress_bars"] is False
    assert facts["after"] is False  # shut down at the end


def test_a_ray_that_cannot_be_reached_is_unavailable(monkeypatch):
    import ray

    from imagesim.bulk.ray_dump import RaySettings, ray_session
    from imagesim.errors import Unavailable

    calls = []

    def always_fails(*args, **kwargs):
        calls.append(kwargs.get("address"))
        raise ConnectionError("no GCS there")

    monkeypatch.setattr(ray, "init", always_fails)
    cluster = ray_session(RaySettings(address="10.0.0.1:6379"))
    with pytest.raises(Unavailable, match=r"could not connect to Ray at 10\.0\.0\.1:6379"):
        cluster.__enter__()
    assert calls == ["10.0.0.1:6379"]


def test_quieting_ray_data_leaves_the_applications_handlers_alone():
    """Ray Data can list the application's root handlers on its own logger (seen after a
    failed local start): quieting Ray's console must not raise their level."""
    import logging

    import ray.data  # noqa: F401  (configures the 'ray.data' logger)

    from imagesim.bulk.ray_dump import quiet_console

    logger = logging.getLogger("ray.data")
    for handler in logger.handlers:  # as if no session had quieted them yet
        handler.setLevel(logging.NOTSET)
    mine = logging.StreamHandler()
    logger.addHandler(mine)
    try:
        quiet_console("ray.data")
        assert mine.level == logging.NOTSET
        consoles = [h for h in logger.handlers if type(h).__name__ == "PlainRayHandler"]
        assert consoles and all(h.level == logging.ERROR for h in consoles)  # Ray's console
    finally:
        logger.removeHandler(mine)
