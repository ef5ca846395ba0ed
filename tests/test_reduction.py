"""Vector dumps and the 256-d reduced space: train PCA and an autoencoder, serve, evaluate."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imagesim.client.dump import VectorDump
from imagesim.client.embedder_client import EmbedderClient
from imagesim.enums import Space
from imagesim.pca import l2_normalise
from imagesim.reduction.evaluate import evaluate
from imagesim.reduction.reducer import Reducer, ReducerSpec
from tests.conftest import synthetic_image
from tests.support.cli import run_cli as imagesim
from tests.support.launch import start_embedder, start_index


@pytest.fixture(scope="module")
def dump(embedder_server, photos, tmp_path_factory):
    """A dump of the real test photos plus generated ones, made in two runs."""
    root = tmp_path_factory.mktemp("dump")
    folder = root / "images"
    shutil.copytree(photos / "real", folder / "real")
    for seed in range(10, 26):
        synthetic_image(seed).save(folder / f"gen_{seed}.png")
    out = root / "vectors.npz"

    def run_dump():
        return imagesim(
            "dump",
            str(folder),
            "--embedder",
            embedder_server.address,
            "--out",
            str(out),
            "--quiet",
            "--report",
            str(root / "failed.tsv"),
        )

    first = run_dump()
    assert "(2048-d full)" in first.stdout and "already done" not in first.stdout
    before = VectorDump.load(out)
    for seed in range(26, 30):  # the folder grows
        synthetic_image(seed).save(folder / f"gen_{seed}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    second = run_dump()
    return {
        "root": root,
        "folder": folder,
        "out": out,
        "before": before,
        "first": first,
        "second": second,
    }


def test_dump_round_trip_and_incremental_rerun(dump, embedder):
    before, after = dump["before"], VectorDump.load(dump["out"])
    assert len(before.keys) == 60 and before.vectors.shape == (60, 2048)
    assert "embedded 4 of 5 images" in dump["second"].stdout  # only the new files
    assert "60 images were already done" in dump["second"].stdout
    assert "broken.png" in dump["second"].stderr
    assert "broken.png\t" in (dump["root"] / "failed.tsv").read_text()
    assert len(after.keys) == 64 and after.keys[:60] == before.keys
    np.testing.assert_array_equal(after.vectors[:60], before.vectors)
    assert after.model_fingerprint == embedder.info().model_fingerprint
    key = next(k for k in after.keys if k.endswith("rocket.jpg"))
    direct = embedder.embed(Path(key).read_bytes())
    np.testing.assert_allclose(after.vectors[after.keys.index(key)], direct, rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def reducers(dump):
    root = dump["root"]
    imagesim(
        "reducer",
        "train",
        str(dump["out"]),
        "--method",
        "pca",
        "--dims",
        "256",
        "--out",
        str(root / "pca"),
    )
    imagesim(
        "reducer",
        "train",
        str(dump["out"]),
        "--method",
        "autoencoder",
        "--dims",
        "256",
        "--epochs",
        "30",
        "--out",
        str(root / "ae"),
    )
    return {"pca": root / "pca", "ae": root / "ae"}


def test_reducers_record_what_they_were_trained_for(reducers, dump):
    fingerprint = VectorDump.load(dump["out"]).model_fingerprint
    for method, directory in (("pca", reducers["pca"]), ("autoencoder", reducers["ae"])):
        spec = json.loads((directory / "reducer.json").read_text())
        assert (spec["method"], spec["input_dim"], spec["output_dim"]) == (method, 2048, 256)
        assert spec["model_fingerprint"] == fingerprint
        assert 40 < spec["training_size"] < 64  # the held-out keys are not trained on
    assert (reducers["ae"] / "autoencoder.keras").is_file()


def test_pca_norms(reducers, dump):
    vectors = VectorDump.load(dump["out"]).vectors
    pca = Reducer.load(reducers["pca"])
    reduced = pca.transform(vectors)
    assert reduced.shape == (64, 256) and reduced.dtype == np.float32
    centred = l2_normalise(vectors) - pca.arrays["mean"]
    # An orthonormal projection never lengthens a vector and keeps most of it here.
    ratio = np.linalg.norm(reduced, axis=1) / np.linalg.norm(centred, axis=1)
    assert (ratio <= 1.0 + 1e-4).all() and ratio.mean() > 0.9
    # Scale does not matter: inputs are L2-normalised first.
    np.testing.assert_allclose(pca.transform(vectors * 7.0), reduced, rtol=1e-4, atol=1e-5)


def test_both_reducers_serve_through_the_embedder(reducers, dump, tmp_path, photos):
    image = (photos / "real" / "coffee.jpg").read_bytes()
    for name, directory in reducers.items():
        server = start_embedder(
            tmp_path / f"{name}.log",
            "--weights",
            "none",
            "--precision",
            "float32",
            "--reducer",
            str(directory),
        )
        try:
            with EmbedderClient(server.address, timeout=60) as client:
                spaces = {s.space: s.dimension for s in client.info().spaces}
                assert spaces == {Space.FULL: 2048, Space.REDUCED: 256}
                full, reduced = client.embed(image), client.embed(image, space="reduced")
                assert reduced.shape == (256,) and np.isfinite(reduced).all() and reduced.any()
                expected = Reducer.load(directory).transform(full[None])[0]
                np.testing.assert_allclose(reduced, expected, rtol=1e-4, atol=1e-5)
                # The reduced space indexes and queries end to end; the full space is refused.
                shard = start_index(tmp_path / f"{name}-shard.log", tmp_path / f"{name}-s", 256)
                try:
                    common = ["--embedder", server.address, "--shards", shard.address]
                    imagesim(
                        "index", str(photos / "real"), *common, "--space", "reduced", "--quiet"
                    )
                    query = str(photos / "real" / "coffee.jpg")
                    [answer] = json.loads(
                        imagesim("query", query, *common, "--space", "reduced", "--json").stdout
                    )
                    assert answer["neighbors"][0]["key"] == query
                    wrong = imagesim("query", query, *common, check=False)
                    assert wrong.returncode == 1
                    assert "shards hold 256-d vectors but the embeddings are 2048-d" in wrong.stderr
                finally:
                    shard.stop()
        finally:
            server.stop()


def test_index_from_dump(dump, start_shard):
    shard = start_shard(2048)
    result = imagesim("index", "--from-dump", str(dump["out"]), "--shards", shard.address)
    assert "indexed 64 of 64 images" in result.stdout
    stats = json.loads(imagesim("stats", "--shards", shard.address, "--json").stdout)
    assert (stats["shards"][0]["count"], stats["shards"][0]["built"]) == (64, True)


def test_reducer_for_another_model_or_dimension_is_refused(reducers, tmp_path):
    for field, value, message in (
        ("model_fingerprint", "0" * 64, "another embedding model"),
        ("input_dim", 1024, "takes 1024-d vectors"),
    ):
        bad = tmp_path / field
        shutil.copytree(reducers["pca"], bad)
        spec = json.loads((bad / "reducer.json").read_text())
        spec[field] = value
        (bad / "reducer.json").write_text(json.dumps(spec))
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "imagesim.embedder_server.main",
                "--port",
                "0",
                "--weights",
                "none",
                "--reducer",
                str(bad),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 2
        assert message in result.stderr


def test_eval_prints_the_comparison_table(reducers, dump):
    result = imagesim(
        "reducer",
        "eval",
        str(dump["out"]),
        str(reducers["pca"]),
        str(reducers["ae"]),
        "-k",
        "3",
        "--trees",
        "5",
    )
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["space", "dims"]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert set(rows) == {"full", "pca", "ae"}
    assert float(rows["full"][2]) == 1.0  # the full space agrees with itself
    assert all(0.0 <= float(r[-5]) <= 1.0 for r in rows.values())


def test_the_evaluation_tells_pca_from_a_random_projection():
    """On vectors that live near a 16-d subspace of 512-d, PCA to 16 dims keeps the neighbours
    and a random projection to 16 dims does not: the evaluation must show that."""
    from imagesim.reduction.train import train_pca

    rng = np.random.default_rng(0)
    latent = rng.normal(size=(3000, 16)) @ rng.normal(size=(16, 512))
    vectors = (latent + 0.05 * rng.normal(size=(3000, 512))).astype(np.float32)
    keys = [f"k{i}" for i in range(len(vectors))]
    pca = train_pca(vectors, 16, "fingerprint")
    basis, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(512, 16)))
    random = Reducer(
        ReducerSpec("pca", 512, 16, 0, "fingerprint"),
        {
            "mean": pca.arrays["mean"],
            "components": basis.T.astype(np.float32),
            "scale": np.ones(16, np.float32),
        },
    )
    reports = {
        r.name: r for r in evaluate(keys, vectors, {"pca": pca, "random": random}, k=10, trees=5)
    }
    assert reports["full"].neighbour_recall == 1.0
    assert reports["pca"].neighbour_recall > reports["random"].neighbour_recall + 0.1
