"""The `imagesim` CLI against real servers: index a folder into two shards, query, errors."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from tests.support.cli import run_cli as imagesim


@pytest.fixture(scope="module")
def indexed(embedder_server, photos, tmp_path_factory):
    """The test photos indexed into two shards: (embedder, shards, index output, work dir)."""
    from tests.support.launch import start_index

    root = tmp_path_factory.mktemp("cli-shards")
    shards = [start_index(root / f"s{n}.log", root / f"s{n}", 2048) for n in range(2)]
    addresses = ",".join(s.address for s in shards)
    result = imagesim(
        "index",
        str(photos),
        "--embedder",
        embedder_server.address,
        "--shards",
        addresses,
        "--report",
        str(root / "failed.tsv"),
        "--meta",
        "album=tests",
    )
    yield embedder_server.address, addresses, result, root
    for shard in shards:
        shard.stop()


def image_count(photos) -> int:
    return len(list(photos.rglob("*.jpg"))) + len(list(photos.rglob("*.png")))


def test_index_reports_and_skips_bad_files(indexed, photos):
    *_, result, root = indexed
    images = image_count(photos)
    assert f"indexed {images - 2} of {images} images" in result.stdout
    assert "2 skipped" in result.stdout
    assert f"skipped {photos / 'corrupt.jpg'}: not a readable image" in result.stderr
    assert f"skipped {photos / 'truncated.jpg'}: INVALID_ARGUMENT" in result.stderr
    assert "Traceback" not in result.stderr
    failed = dict(line.split("\t") for line in (root / "failed.tsv").read_text().splitlines())
    assert set(failed) == {str(photos / "corrupt.jpg"), str(photos / "truncated.jpg")}


def test_rerun_resumes_and_embeds_only_what_is_missing(indexed, photos, tmp_path):
    embedder, shards, *_ = indexed
    result = imagesim(
        "index",
        str(photos),
        "--embedder",
        embedder,
        "--shards",
        shards,
        "--no-build",
        "--report",
        str(tmp_path / "f.tsv"),
    )
    images = image_count(photos)
    assert f"{images - 2} images were already done" in result.stdout
    assert f"indexed 0 of {images} images" in result.stdout


@pytest.mark.parametrize(
    "name", ["real/astronaut.jpg", "real/moon_crop.jpg", "generated/synthetic_3.png"]
)
def test_query_an_indexed_image_finds_itself_first(indexed, photos, name):
    embedder, shards, *_ = indexed
    result = imagesim(
        "query", str(photos / name), "--embedder", embedder, "--shards", shards, "-k", "5"
    )
    lines = result.stdout.splitlines()
    assert lines[0] == f"# {photos / name}"
    assert lines[1].split() == ["rank", "distance", "key"]
    rank, distance, key = lines[2].split()
    assert (rank, key) == ("1", str(photos / name))
    assert float(distance) == pytest.approx(0.0, abs=1e-3)
    assert len(lines) == 7


def test_query_json_and_near_duplicates_rank_high(indexed, photos):
    embedder, shards, *_ = indexed
    result = imagesim(
        "query",
        str(photos / "real" / "chelsea.jpg"),
        "--embedder",
        embedder,
        "--shards",
        shards,
        "-k",
        "4",
        "--json",
    )
    [answer] = json.loads(result.stdout)
    assert answer["query"] == str(photos / "real" / "chelsea.jpg")
    assert answer["missing_shards"] == []
    hits = answer["neighbors"]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert hits[0]["key"] == str(photos / "real" / "chelsea.jpg")
    assert hits[0]["distance"] == pytest.approx(0.0, abs=1e-3)
    assert all(h["distance"] <= n["distance"] for h, n in itertools.pairwise(hits))
    assert {h["key"].split("/")[-1] for h in hits} == {
        "chelsea.jpg",
        "chelsea_mirror.jpg",
        "chelsea_crop.jpg",
        "chelsea_half.jpg",
    }
    assert {h["shard"] for h in hits} <= set(shards.split(","))
    assert all(h["metadata"] is None for h in hits)  # not asked for: null, as the web sends


def test_several_images_in_one_query_each_get_their_answer(indexed, photos):
    embedder, shards, *_ = indexed
    names = ["real/coffee.jpg", "real/rocket.jpg", "real/horse.jpg"]
    result = imagesim(
        "query",
        *(str(photos / n) for n in names),
        "--embedder",
        embedder,
        "--shards",
        shards,
        "-k",
        "2",
        "--json",
    )
    answers = json.loads(result.stdout)
    assert [a["neighbors"][0]["key"] for a in answers] == [str(photos / n) for n in names]


def test_similar_threshold_filter_and_metadata(indexed, photos):
    _, shards, *_ = indexed
    key = str(photos / "real" / "chelsea.jpg")
    result = imagesim("similar", key, "--shards", shards, "-k", "3", "--json", "--metadata")
    answer = json.loads(result.stdout)
    assert answer["query"] == key and len(answer["neighbors"]) == 3  # as /api/similar
    assert key not in [n["key"] for n in answer["neighbors"]]
    assert {n["key"].split("/")[-1] for n in answer["neighbors"]} == {
        "chelsea_mirror.jpg",
        "chelsea_crop.jpg",
        "chelsea_half.jpg",
    }
    meta = answer["neighbors"][0]["metadata"]
    assert meta["album"] == "tests" and int(meta["width"]) > 0 and int(meta["file_size"]) > 0
    assert set(meta) == {
        "album",
        "file_size",
        "width",
        "height",
        "mtime",
        "imagesim.model",
        "imagesim.embedded_by",
    }
    far = answer["neighbors"][-1]["distance"]
    near = json.loads(
        imagesim(
            "similar", key, "--shards", shards, "-k", "3", "--json", "--max-distance", str(far / 2)
        ).stdout
    )
    assert all(n["distance"] <= far / 2 for n in near["neighbors"])
    assert len(near["neighbors"]) < 3
    half = json.loads(
        imagesim(
            "similar",
            key,
            "--shards",
            shards,
            "--json",
            "--where",
            "width=225",
            "--where",
            "album=tests",
        ).stdout
    )
    assert [n["key"].split("/")[-1] for n in half["neighbors"]] == ["chelsea_half.jpg"]


def test_stats_export_build_and_remove(indexed, photos, tmp_path):
    embedder, shards, *_ = indexed
    stats = json.loads(imagesim("stats", "--shards", shards, "--json").stdout)
    indexed_images = image_count(photos) - 2
    rows = stats["shards"]
    assert sum(r["count"] for r in rows) == indexed_images and all(r["built"] for r in rows)
    assert stats["total"]["count"] == indexed_images and stats["total"]["shards"] == 2
    assert all(r["metric"] == "angular" and r["layout_version"] == 1 for r in rows)
    text = imagesim("stats", "--shards", shards).stdout
    assert f"total: {indexed_images} items in 2 shards" in text
    out = tmp_path / "export.npz"
    assert (
        f"{indexed_images} items (2048-d)"
        in imagesim("export", "--shards", shards, "--out", str(out)).stdout
    )
    from imagesim.client.dump import VectorDump

    exported = VectorDump.load(out)
    assert len(exported.keys) == indexed_images and exported.vectors.shape == (indexed_images, 2048)
    assert exported.metadata is not None and exported.metadata[0]["album"] == "tests"
    key = str(photos / "generated" / "synthetic_0.png")
    assert "removed 1; 0 not found" in imagesim("remove", key, "--shards", shards).stdout
    result = imagesim("query", key, "--embedder", embedder, "--shards", shards, "--json")
    assert key not in [h["key"] for h in json.loads(result.stdout)[0]["neighbors"]]
    assert "generation 2" in imagesim("build", "--shards", shards).stdout


def test_a_server_that_is_down_gives_one_line_naming_it(indexed, photos):
    embedder, shards, *_ = indexed
    image = str(photos / "real" / "rocket.jpg")
    result = imagesim("query", image, "--embedder", "127.0.0.1:1", "--shards", shards, check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "UNAVAILABLE" in result.stderr and "127.0.0.1:1" in result.stderr
    result = imagesim(
        "query", image, "--embedder", embedder, "--shards", f"{shards},127.0.0.1:2", check=False
    )
    assert result.returncode == 1 and "index shard at 127.0.0.1:2" in result.stderr
    assert result.stderr.count("\n") == 1
    partial = imagesim(
        "query",
        image,
        "--embedder",
        embedder,
        "--shards",
        f"{shards},127.0.0.1:2",
        "--allow-partial",
        "--json",
    )
    [answer] = json.loads(partial.stdout)
    assert answer["neighbors"][0]["key"] == image
    assert answer["missing_shards"] == ["127.0.0.1:2"]
    assert "127.0.0.1:2 missing" in partial.stderr


def test_the_collection_remembers_what_made_its_vectors(indexed, embedder_server, photos, tmp_path):
    """Bulk adds tag items with the model and runtime/precision: stats count them, another
    model's vectors are refused, another runtime's get a note."""
    from imagesim.client.embedder_client import EmbedderClient, ModelIdentity
    from imagesim.client.index_client import IndexClient
    from imagesim.types import ItemToAdd
    from tests.support.launch import start_index

    _, shards, *_ = indexed
    with EmbedderClient(embedder_server.address) as embedder:
        identity = ModelIdentity.of(embedder.info())
    total = json.loads(imagesim("stats", "--shards", shards, "--json").stdout)["total"]
    made_by = f"{identity.runtime}/{identity.precision}"
    assert total["embedded_by"] == {made_by: total["count"]}
    assert total["models"] == {identity.fingerprint[:16]: total["count"]}

    other = start_index(tmp_path / "other.log", tmp_path / "other", 2048)
    try:
        with IndexClient(other.address) as shard:
            vector = np.ones(2048, np.float32)
            shard.add([ItemToAdd("old.jpg", vector, {"imagesim.model": "0" * 16})])
        refused = imagesim(
            "index",
            str(photos / "real"),
            "--embedder",
            embedder_server.address,
            "--shards",
            other.address,
            "--quiet",
            check=False,
        )
        assert refused.returncode == 1 and "FAILED_PRECONDITION" in refused.stderr
        assert "vectors of different models are not comparable" in refused.stderr
        with IndexClient(other.address) as shard:
            shard.remove(["old.jpg"])
            tagged = {
                "imagesim.model": identity.fingerprint[:16],
                "imagesim.embedded_by": "tensorflow/float16",
            }
            shard.add([ItemToAdd("tf.jpg", vector, tagged)])
        query = imagesim(
            "query",
            str(photos / "real" / "coffee.jpg"),
            "--embedder",
            embedder_server.address,
            "--shards",
            other.address,
        )
        assert "also holds vectors made on tensorflow/float16" in query.stderr
    finally:
        other.stop()
