"""`imagesim query/similar --sheet` and `imagesim duplicates` against real servers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagesim.client.collection import Collection
from imagesim.client.pictures import ACCENT, TILE_BACKGROUND, picture
from imagesim.samples import photo, write_sample_photos
from imagesim.types import ItemToAdd
from tests.support.cli import run_cli as imagesim

PAD, TILE, STEP = 14, 180, 194  # the sheet's geometry (imagesim.client.cli.pictures)


@pytest.fixture(scope="module")
def collection(embedder_server, tmp_path_factory):
    """The sample photos (and their variants) in two shards, plus two items with keys
    relative to the photos' folder: (embedder, shards, folder)."""
    from tests.support.launch import start_index

    root = tmp_path_factory.mktemp("sheets")
    folder = root / "photos"
    write_sample_photos(folder)
    shards = [start_index(root / f"s{n}.log", root / f"s{n}", 2048) for n in range(2)]
    addresses = ",".join(s.address for s in shards)
    imagesim("index", str(folder), "--embedder", embedder_server.address, "--shards", addresses)
    with Collection(addresses.split(",")) as c:
        for name in ("coffee", "rocket"):
            vector = c.get(str(folder / f"{name}.jpg")).vector
            c.add([ItemToAdd(f"{name}.jpg", vector)])  # a relative key: a file under the folder
    yield embedder_server.address, addresses, folder
    for shard in shards:
        shard.stop()


def tile(sheet: Image.Image, n: int, columns: int = 6) -> Image.Image:
    x, y = PAD + (n % columns) * STEP, 40 + PAD + (n // columns) * (STEP + 44)
    return sheet.crop((x, y, x + TILE, y + TILE))


def is_picture(image: Image.Image) -> bool:
    return np.asarray(image, dtype=float).std() > 15


def test_query_sheet_shows_the_query_then_each_result(collection, tmp_path):
    embedder, shards, folder = collection
    query = tmp_path / "held_out_cat.jpg"
    cat = photo("chelsea")
    cat.crop((30, 0, cat.width, cat.height - 20)).convert("RGB").save(query, quality=80)
    out = tmp_path / "out" / "result.png"
    result = imagesim(
        "query", str(query), "--embedder", embedder, "--shards", shards, "-k", "5",
        "--sheet", str(out), "--json", "--images-root", str(folder),
    )  # fmt: skip
    [answer] = json.loads(result.stdout)  # the sheet's path goes to stderr with --json
    assert f"contact sheet: {out}" in result.stderr
    sheet = Image.open(out)
    assert sheet.size == (PAD + 6 * STEP, 40 + PAD + STEP + 44)  # query + 5 results, one row
    assert sheet.getpixel((PAD - 2, 40 + PAD + 90)) == ACCENT  # the query's frame
    assert all(is_picture(tile(sheet, n)) for n in range(6))
    # Tile 0 is the query file, tile 1 the closest neighbour's file.
    assert answer["neighbors"][0]["key"].split("/")[-1].startswith("chelsea")
    for n, path in ((0, query), (1, Path(answer["neighbors"][0]["key"]))):
        expected = picture(path, TILE)
        x, y = (TILE - expected.width) // 2, (TILE - expected.height) // 2
        shown = tile(sheet, n).crop((x, y, x + expected.width, y + expected.height))
        difference = np.abs(np.asarray(shown, dtype=float) - np.asarray(expected, dtype=float))
        assert difference.mean() < 2


def test_several_queries_get_a_sheet_each_and_text_output_names_them(collection, tmp_path):
    embedder, shards, folder = collection
    out = tmp_path / "r.png"
    result = imagesim(
        "query", str(folder / "coffee.jpg"), str(folder / "moon.jpg"), "--embedder", embedder,
        "--shards", shards, "-k", "2", "--sheet", str(out), "--images-root", str(folder),
    )  # fmt: skip
    for n in (1, 2):
        assert f"contact sheet: {tmp_path / f'r-{n}.png'}" in result.stdout
        assert Image.open(tmp_path / f"r-{n}.png").size == (PAD + 3 * STEP, 40 + PAD + STEP + 44)
    assert result.stdout.index("# ") < result.stdout.index("contact sheet")  # results first


def test_similar_sheet_reads_relative_keys_under_the_images_root(collection, tmp_path):
    _, shards, folder = collection
    out = tmp_path / "like.png"
    common = ("similar", "coffee.jpg", "--shards", shards, "-k", "3", "--sheet", str(out))
    found = imagesim(*common, "--images-root", str(folder))
    sheet = Image.open(out)
    assert all(is_picture(tile(sheet, n)) for n in range(4))
    assert "warning" not in found.stderr
    # Without the root, relative keys are read from the current directory: not there.
    lost = imagesim(*common)
    assert f"warning: no file {Path.cwd() / 'coffee.jpg'}" in lost.stderr
    sheet = Image.open(out)
    assert tile(sheet, 0).getpixel((5, 5)) == TILE_BACKGROUND  # "no image", sheet still made


def test_duplicates_finds_each_photo_with_its_variants(collection, tmp_path):
    _, shards, folder = collection
    result = imagesim("duplicates", "--shards", shards, "--json", "--quiet")
    report = json.loads(result.stdout)
    groups = [[m["key"] for m in g["members"]] for g in report["groups"]]
    assert report["items"] == 46 and report["max_distance"] == 0.04
    assert report["neighbors"] == 10
    assert [g["size"] for g in report["groups"]] == sorted(
        (g["size"] for g in report["groups"]), reverse=True
    )

    def photo_of(key: str) -> str:
        return Path(key).stem.split("_")[0] if "_" in Path(key).stem else Path(key).stem

    for keys in groups:  # never two different photos in one group
        assert len({photo_of(k) for k in keys}) == 1, keys
    cat = next(g for g in groups if photo_of(g[0]) == "chelsea")
    assert sorted(Path(k).name for k in cat) == [
        "chelsea.jpg", "chelsea_crop.jpg", "chelsea_half.jpg", "chelsea_mirror.jpg",
    ]  # fmt: skip
    coffee = next(g for g in groups if photo_of(g[0]) == "coffee")
    assert "coffee.jpg" in coffee and str(folder / "coffee.jpg") in coffee  # the relative twin
    tight = json.loads(
        imagesim(
            *("duplicates", "--shards", shards, "--json", "--quiet", "--max-distance", "0.001"),
            *("--neighbours", "5"),  # the earlier spelling of --neighbors, still accepted
        ).stdout
    )
    assert tight["neighbors"] == 5
    pairs = [{m["key"] for m in g["members"]} for g in tight["groups"]]
    assert {"coffee.jpg", str(folder / "coffee.jpg")} in pairs  # same vector, two keys
    assert {"rocket.jpg", str(folder / "rocket.jpg")} in pairs
    assert all(len(pair) == 2 for pair in pairs)


def test_duplicates_text_and_one_sheet_per_group(collection, tmp_path):
    _, shards, folder = collection
    sheets = tmp_path / "groups"
    result = imagesim(
        "duplicates", "--shards", shards, "--sheet-dir", str(sheets), "--max-sheets", "3",
        "--images-root", str(folder),
    )  # fmt: skip
    first = result.stdout.splitlines()[0]
    assert first.startswith("11 groups of near-duplicates (43 images) within 0.04 among 46 items")
    assert "group 1: " in result.stdout
    written = sorted(sheets.iterdir())
    assert [p.name for p in written] == ["group-0001.png", "group-0002.png", "group-0003.png"]
    largest = Image.open(written[0])
    assert all(is_picture(tile(largest, n)) for n in range(4))
