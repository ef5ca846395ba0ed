"""`sync`: a collection follows its folder (new, changed and deleted files), touches no other
folder's items, and embeds nothing when nothing changed. Real Embedder, real shards."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from imagesim.client.collection import Collection
from imagesim.client.sync import apply_sync, belongs_to, plan_sync
from imagesim.types import ItemToAdd
from tests.conftest import jpeg_bytes, synthetic_image


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for seed in range(5):
        (photos / f"p{seed}.jpg").write_bytes(jpeg_bytes(synthetic_image(seed)))
    (photos / "sub" / "s0.png").write_bytes(jpeg_bytes(synthetic_image(10)))
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return photos


@pytest.fixture
def collection(start_shard):
    shards = [start_shard(name=f"s{n}") for n in range(2)]
    with Collection([s.address for s in shards], timeout=30) as collection:
        yield collection


def embedded(embedder) -> int:
    return embedder.info().images_embedded


def test_keys_belong_only_to_their_own_folder():
    assert belongs_to("photos/a.jpg", Path("photos"))
    assert belongs_to("photos/sub/a.jpg", Path("photos"))
    assert not belongs_to("photos-old/a.jpg", Path("photos"))
    assert not belongs_to("photos2/a.jpg", Path("photos"))
    assert not belongs_to("photos", Path("photos"))
    assert not belongs_to("/abs/photos/a.jpg", Path("photos"))
    assert not belongs_to("photos/../secret.jpg", Path("photos"))
    assert belongs_to("a.jpg", Path("."))
    assert not belongs_to("/a.jpg", Path("."))
    assert belongs_to("/srv/photos/a.jpg", Path("/srv/photos"))


def test_sync_follows_new_changed_and_deleted_files(folder, collection, embedder):
    first = plan_sync(folder, collection)
    assert (len(first.new), len(first.changed), len(first.removed)) == (7, 0, 0)
    report = apply_sync(first, embedder, collection, progress=False)
    assert report.summary() == "added 6, updated 0, removed 0, unchanged 0, skipped 1 unreadable"

    before = embedded(embedder)
    again = plan_sync(folder, collection)
    assert again.unchanged == 6 and [f.key for f in again.new] == [str(folder / "broken.jpg")]
    report = apply_sync(again, embedder, collection, progress=False)
    assert report.summary() == "added 0, updated 0, removed 0, unchanged 6, skipped 1 unreadable"
    assert embedded(embedder) == before  # nothing changed: nothing embedded

    (folder / "p0.jpg").write_bytes(jpeg_bytes(synthetic_image(50)))
    os.utime(folder / "p0.jpg", (1_000_000_000, 1_000_000_000))
    (folder / "p1.jpg").unlink()
    shutil.rmtree(folder / "sub")
    (folder / "p9.jpg").write_bytes(jpeg_bytes(synthetic_image(9)))
    plan = plan_sync(folder, collection)
    assert [f.key for f in plan.changed] == [str(folder / "p0.jpg")]
    assert sorted(plan.removed) == sorted([str(folder / "p1.jpg"), str(folder / "sub" / "s0.png")])
    assert sorted(f.key for f in plan.new) == [str(folder / "broken.jpg"), str(folder / "p9.jpg")]
    text = plan.describe()
    assert "2 to add, 1 to update, 2 to remove, 3 unchanged" in text
    assert f"remove {folder / 'p1.jpg'}" in text

    report = apply_sync(plan, embedder, collection, progress=False)
    assert report.summary() == "added 1, updated 1, removed 2, unchanged 3, skipped 1 unreadable"
    assert collection.missing([str(folder / "p1.jpg"), str(folder / "p9.jpg")]) == [
        str(folder / "p1.jpg")
    ]
    assert collection.get(str(folder / "p0.jpg")).metadata["mtime"] == "1000000000"
    final = plan_sync(folder, collection)
    assert final.unchanged == 5 and not (final.changed or final.removed)


def test_sync_never_removes_another_folders_items(folder, collection, embedder):
    vector = np.random.default_rng(0).random(2048, dtype=np.float32)
    # Keys that sort just before, inside and just after the folder's, none of them on disk.
    others = [f"{folder}-old/a.jpg", f"{folder}0/a.jpg", f"{folder}.jpg", "elsewhere/a.jpg"]
    collection.record_layout()
    collection.add([ItemToAdd(key, vector, {"file_size": "1", "mtime": "1"}) for key in others])
    plan = plan_sync(folder, collection)
    assert plan.removed == [] and len(plan.new) == 7
    apply_sync(plan, embedder, collection, progress=False)
    assert collection.missing(others) == []


def test_an_interrupted_sync_finishes_on_the_next_run(folder, collection, embedder):
    plan = plan_sync(folder, collection)
    plan.new = [f for f in plan.new if f.path.name != "broken.jpg"][:3]  # stopped after three
    apply_sync(plan, embedder, collection, progress=False, build=False)
    rest = plan_sync(folder, collection)
    assert rest.unchanged == 3 and len(rest.new) == 4
    apply_sync(rest, embedder, collection, progress=False)
    final = plan_sync(folder, collection)
    assert final.unchanged == 6 and [f.key for f in final.new] == [str(folder / "broken.jpg")]


def test_sync_of_a_missing_folder_is_refused(tmp_path, collection):
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        plan_sync(tmp_path / "nope", collection)


def test_watch_sees_a_change_made_while_the_first_sync_runs(tmp_path: Path):
    """The observer starts before the first run: a file written while that run works triggers a
    second run (the race that once lost the change and left `sync --watch` waiting forever)."""
    import threading

    from imagesim.client.cli.curate import watch

    runs: list[int] = []

    def run() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            (tmp_path / "during.jpg").write_bytes(b"x")  # a change while the first run works
        else:
            raise KeyboardInterrupt  # what Ctrl-C does: watch() returns

    watcher = threading.Thread(target=watch, args=(tmp_path, run, 0.2), daemon=True)
    watcher.start()
    watcher.join(60)
    assert not watcher.is_alive(), f"the change made during run 1 was lost (runs: {runs})"
    assert runs == [0, 1]
