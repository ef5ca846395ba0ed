"""Duplicate review: a plan with one keeper per group, applied to a quarantine folder and undone,
against real shards and real files. Crash safety is tested with a real kill -9 mid-apply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagesim.client.collection import Collection
from imagesim.client.duplicates import find_duplicates
from imagesim.client.images_root import ImagesRoot
from imagesim.client.quarantine import apply_plan, locked, undo
from imagesim.client.review_plan import (
    Action,
    KeepRule,
    Member,
    load_plan,
    make_plan,
    plan_from_json,
    save_plan,
)
from imagesim.errors import FailedPrecondition, InvalidArgument
from imagesim.types import ItemToAdd

# group "a": three copies of one picture, "b": two; sizes decide the "largest" keeper.
FILES = {
    "a/big.jpg": ("a", (400, 300)),
    "a/small.jpg": ("a", (200, 150)),
    "a/deeper/copy.jpg": ("a", (300, 225)),
    "b/one.jpg": ("b", (320, 240)),
    "b/two.jpg": ("b", (160, 120)),
    "c/alone.jpg": ("c", (320, 240)),
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    for n, (key, (_, size)) in enumerate(FILES.items()):
        path = images / key
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (40 * n, 80, 120)).save(path, "JPEG")
        os.utime(path, ns=(10**18 + n * 10**9, 10**18 + n * 10**9))  # big.jpg is the oldest
    return images


@pytest.fixture
def collection(start_shard, root: Path):
    shards = [start_shard(64, name=f"s{n}") for n in range(2)]
    rng = np.random.default_rng(1)
    base = {group: rng.random(64, dtype=np.float32) for group in "abc"}
    with Collection([s.address for s in shards], timeout=30) as collection:
        collection.record_layout()
        items = []
        for key, (group, (w, h)) in FILES.items():
            vector = base[group] + rng.normal(0, 1e-4, 64).astype(np.float32)
            items.append(ItemToAdd(key, vector, {"width": str(w), "height": str(h)}))
        collection.add(items)
        yield collection


def make(collection: Collection, root: Path, rule: KeepRule = KeepRule.LARGEST):
    report = find_duplicates(collection, 0.04)
    return make_plan(
        report,
        lambda key: collection.get(key).metadata,
        collection.layout.shard_ids,
        ImagesRoot(root),
        rule,
    )


def keepers(plan) -> dict[int, str]:
    return {g.members[0].key[0]: g.keep for g in plan.groups}  # type: ignore[misc]


def test_the_rule_picks_one_keeper_per_group(collection, root):
    assert keepers(make(collection, root)) == {"a": "a/big.jpg", "b": "b/one.jpg"}
    assert keepers(make(collection, root, KeepRule.OLDEST))["a"] == "a/big.jpg"
    assert keepers(make(collection, root, KeepRule.NEWEST))["a"] == "a/deeper/copy.jpg"
    assert keepers(make(collection, root, KeepRule.SHORTEST_PATH))["b"] == "b/one.jpg"
    (root / "a" / "big.jpg").unlink()
    plan = make(collection, root)
    big = next(m for g in plan.groups for m in g.members if m.key == "a/big.jpg")
    assert big.action is Action.SKIP and "no file" in big.note
    assert keepers(plan)["a"] == "a/deeper/copy.jpg"


def test_apply_quarantines_and_undo_restores(collection, root, tmp_path):
    plan_file = tmp_path / "plan.json"
    save_plan(make(collection, root), plan_file)
    plan = load_plan(plan_file)
    quarantine = tmp_path / "quarantine"

    dry = apply_plan(plan, collection, quarantine, quarantine, dry_run=True)
    assert sorted(e.key for e in dry.done) == ["a/deeper/copy.jpg", "a/small.jpg", "b/two.jpg"]
    assert not quarantine.exists() and (root / "a" / "small.jpg").exists()

    before = collection.get("a/small.jpg").vector
    outcome = apply_plan(plan, collection, quarantine, quarantine)
    assert outcome.items == 3
    assert (quarantine / "a" / "deeper" / "copy.jpg").is_file()
    assert not (root / "a" / "small.jpg").exists() and (root / "a" / "big.jpg").exists()
    assert sorted(collection.missing(FILES)) == ["a/deeper/copy.jpg", "a/small.jpg", "b/two.jpg"]
    record = json.loads(outcome.manifest.read_text())
    assert record["state"] == "applied" and len(record["entries"]) == 3

    back = undo(outcome.manifest, collection)
    assert back.items == 3 and not back.skipped
    assert (root / "a" / "deeper" / "copy.jpg").is_file()
    assert not (quarantine / "a" / "small.jpg").exists()
    assert collection.missing(FILES) == []
    np.testing.assert_array_equal(collection.get("a/small.jpg").vector, before)
    assert collection.get("a/small.jpg").metadata["width"] == "200"


def test_changed_files_and_taken_destinations_are_skipped(collection, root, tmp_path):
    plan = make(collection, root)
    quarantine = tmp_path / "q"
    (root / "a" / "small.jpg").write_bytes(b"changed since the plan")
    (quarantine / "b").mkdir(parents=True)
    (quarantine / "b" / "two.jpg").write_text("someone else's file")
    outcome = apply_plan(plan, collection, quarantine, quarantine)
    why = dict(outcome.skipped)
    assert why["a/small.jpg"] == "the file changed since the plan was made"
    assert "already exists (never overwritten)" in why["b/two.jpg"]
    assert (quarantine / "b" / "two.jpg").read_text() == "someone else's file"
    assert sorted(collection.missing(FILES)) == ["a/deeper/copy.jpg"]


def test_bad_plans_and_places_are_refused(collection, root, tmp_path, start_shard):
    plan = make(collection, root)
    for overlapping in (root / "quarantine", root, root.parent):
        with pytest.raises(InvalidArgument, match="overlaps the folder the photos are in"):
            apply_plan(plan, collection, overlapping, tmp_path)
    data = plan.to_json()
    data["groups"][0]["members"][1]["action"] = "keep"
    with pytest.raises(InvalidArgument, match="exactly one member is kept"):
        plan_from_json(data)
    data = plan.to_json()
    data["groups"][0]["members"][0]["action"] = "burn"
    with pytest.raises(InvalidArgument, match="keep, move or skip"):
        plan_from_json(data)
    data = plan.to_json()
    data["groups"][1]["members"].append(data["groups"][0]["members"][1])
    with pytest.raises(InvalidArgument, match="in two groups"):
        plan_from_json(data)
    with pytest.raises(InvalidArgument, match="not a duplicates plan"):
        plan_from_json({"groups": []})
    other = start_shard(64, name="other")
    with Collection([other.address], timeout=30) as elsewhere:
        elsewhere.record_layout()
        with pytest.raises(FailedPrecondition, match="another collection"):
            apply_plan(plan, elsewhere, tmp_path / "q", tmp_path / "q")
    (tmp_path / "q").mkdir(exist_ok=True)
    with locked(tmp_path / "q"), pytest.raises(FailedPrecondition, match="another apply"):
        apply_plan(plan, collection, tmp_path / "q", tmp_path / "q")
    assert collection.missing(FILES) == []  # nothing was removed by a refused apply


def test_delete_writes_a_manifest_and_cannot_be_undone(collection, root, tmp_path):
    plan = make(collection, root)
    outcome = apply_plan(plan, collection, None, tmp_path / "manifests")
    assert not (root / "b" / "two.jpg").exists() and outcome.items == 3
    back = undo(outcome.manifest, collection)
    assert back.items == 0 and all("cannot come back" in why for _, why in back.skipped)


KILLER = """
import os, signal, sys
from pathlib import Path
from imagesim.client import quarantine
from imagesim.client.collection import Collection
from imagesim.client.review_plan import load_plan
real, moved = quarantine._move, []
def move_then_die(src, dst):
    real(src, dst)
    moved.append(dst)
    if len(moved) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
quarantine._move = move_then_die
with Collection(sys.argv[1].split(","), timeout=30) as c:
    quarantine.apply_plan(load_plan(Path(sys.argv[2])), c, Path(sys.argv[3]), Path(sys.argv[3]))
"""


def test_an_apply_killed_midway_is_finished_by_running_it_again(collection, root, tmp_path):
    plan_file, quarantine = tmp_path / "plan.json", tmp_path / "q"
    save_plan(make(collection, root), plan_file)
    addresses = ",".join(collection.addresses)
    args = [sys.executable, "-c", KILLER, addresses, str(plan_file), str(quarantine)]
    killed = subprocess.run(args, capture_output=True, timeout=120, check=False)
    assert killed.returncode == -9, killed.stderr.decode()
    assert len(list(quarantine.rglob("*.jpg"))) == 2  # two moved, then killed
    assert collection.missing(FILES) == []  # killed before the items were removed
    outcome = apply_plan(load_plan(plan_file), collection, quarantine, quarantine)
    assert len(list(quarantine.rglob("*.jpg"))) == 3 and outcome.items == 3
    assert sorted(collection.missing(FILES)) == ["a/deeper/copy.jpg", "a/small.jpg", "b/two.jpg"]
    back = undo(outcome.manifest, collection)
    assert back.items == 3 and collection.missing(FILES) == []


def test_keys_outside_the_images_root_are_never_moved(collection, root, tmp_path):
    outside = tmp_path / "elsewhere" / "x.jpg"
    outside.parent.mkdir()
    outside.write_bytes((root / "b" / "two.jpg").read_bytes())
    plan = make(collection, root)
    group = next(g for g in plan.groups if g.keep == "b/one.jpg")
    for key in (str(outside), "../elsewhere/x.jpg"):
        group.members.append(Member(key, Action.MOVE, outside.stat().st_size))
    outcome = apply_plan(plan, collection, tmp_path / "q", tmp_path / "q")
    why = dict(outcome.skipped)
    assert "not a file under the images root" in why[str(outside)]
    assert "not a file under the images root" in why["../elsewhere/x.jpg"]
    assert outside.exists() and outcome.items == 3


def test_a_full_disk_moves_nothing_it_cannot_finish(collection, root, tmp_path, monkeypatch):
    """Across file systems a move is a copy; a copy that fails (ENOSPC) leaves the source where
    it was, no partial file in the quarantine, and the item in the collection."""
    import errno

    from imagesim.client import quarantine

    def cross_device(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    real_copy = quarantine.shutil.copyfileobj

    def disk_full(fin, fout, length=0):
        real_copy(fin, fout, 10)  # some bytes land, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(quarantine.os, "link", cross_device)
    monkeypatch.setattr(quarantine.shutil, "copyfileobj", disk_full)
    plan = make(collection, root)
    outcome = apply_plan(plan, collection, tmp_path / "q", tmp_path / "q")
    assert outcome.items == 0 and outcome.done == []
    assert all("No space left on device" in why for _, why in outcome.skipped)
    assert not [p for p in (tmp_path / "q").rglob("*") if p.is_file() and p.suffix == ".jpg"]
    assert not list((tmp_path / "q").rglob("*.imagesim-tmp"))
    assert collection.missing(FILES) == [] and (root / "a" / "small.jpg").exists()
