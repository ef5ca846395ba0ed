"""Keeping a folder clean from the command line, as a user would: `sync` (and `--watch`),
`duplicates --plan`, `apply` (dry run, quarantine), `undo`, `outliers`. Real servers."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from imagesim.client.collection import Collection
from tests.conftest import jpeg_bytes, synthetic_image
from tests.support.cli import run_cli as imagesim


@pytest.fixture
def setup(embedder_server, start_shard, photos, tmp_path, monkeypatch):
    """A copy of the test photos (real photos and their near-duplicates), two empty shards;
    the CLI runs in tmp_path so keys are relative (`photos/...`)."""
    shutil.copytree(photos / "real", tmp_path / "photos")
    shards = ",".join(start_shard(name=f"s{n}").address for n in range(2))
    monkeypatch.chdir(tmp_path)
    return ["--embedder", embedder_server.address, "--shards", shards], tmp_path


def test_sync_review_apply_and_undo(setup):
    servers, root = setup
    shards = servers[3]
    first = imagesim("sync", "photos", "--quiet", *servers)
    files = len(list((root / "photos").iterdir()))
    assert f"added {files}, updated 0, removed 0, unchanged 0" in first.stdout
    again = imagesim("sync", "photos", "--dry-run", *servers)
    assert f"0 to add, 0 to update, 0 to remove, {files} unchanged" in again.stdout

    plan = root / "plan.json"
    found = imagesim(
        "duplicates", "--quiet", "--plan", str(plan), "--keep", "largest", *servers[2:]
    )
    assert "plan: " in found.stdout and "files to move, keep largest" in found.stdout
    data = json.loads(plan.read_text())
    moving = [m["key"] for g in data["groups"] for m in g["members"] if m["action"] == "move"]
    assert moving and all(g["keep"] for g in data["groups"])

    dry = imagesim("apply", str(plan), "--move-to", "quarantine", "--dry-run", *servers[2:])
    assert "nothing changed" in dry.stdout and not (root / "quarantine").exists()
    would = [line for line in dry.stdout.splitlines() if line.startswith("would move ")]
    assert len(would) == len(moving) and f"-> {root / 'quarantine' / 'photos'}" in would[0]

    done = imagesim("apply", str(plan), "--move-to", "quarantine", *servers[2:])
    assert f"moved {len(moving)} files" in done.stdout
    assert len(list((root / "quarantine" / "photos").iterdir())) == len(moving)
    with Collection(shards.split(","), timeout=30) as collection:
        assert sorted(collection.missing(moving)) == sorted(moving)
    manifest = next((root / "quarantine").glob("imagesim-manifest-*.json"))

    # The collection follows the folder: nothing to add back, nothing to remove.
    synced = imagesim("sync", "photos", "--dry-run", *servers)
    assert "0 to add, 0 to update, 0 to remove" in synced.stdout

    back = imagesim("undo", str(manifest), *servers[2:])
    assert f"put back {len(moving)} files" in back.stdout
    with Collection(shards.split(","), timeout=30) as collection:
        assert collection.missing(moving) == []
    assert len(list((root / "photos").iterdir())) == files

    odd = imagesim("outliers", "-n", "3", "--neighbors", "2", "--json", *servers[2:])
    report = json.loads(odd.stdout)
    assert len(report["outliers"]) == 3 and report["items"] == files
    assert report["neighbors"] == 2
    assert report["outliers"][0]["score"] >= report["outliers"][2]["score"]


def test_usage_errors_exit_2(setup):
    servers, _ = setup
    missing = imagesim("sync", "nosuchdir", *servers, check=False)
    assert missing.returncode == 2 and "no such directory: nosuchdir" in missing.stderr
    rule = imagesim("duplicates", "--keep", "biggest", *servers[2:], check=False)
    assert rule.returncode == 2 and "largest, oldest, newest, shortest-path" in rule.stderr
    both = imagesim("apply", "p.json", "--move-to", "q", "--delete", *servers[2:], check=False)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_sync_watch_follows_the_folder_until_interrupted(setup):
    servers, root = setup
    shards = servers[3].split(",")
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imagesim.client.cli",
            "sync",
            "photos",
            "--watch",
            "--quiet",
            *servers,
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watcher.stdout is not None
    lines: list[str] = []  # the watcher's summary lines, one per sync, as they come
    reader = threading.Thread(target=lambda: lines.extend(watcher.stdout), daemon=True)
    reader.start()
    err = ""
    try:
        deadline = time.monotonic() + 240  # well inside the test timeout: fail, never hang
        with Collection(shards, timeout=30) as collection:
            while collection.missing(["photos/chelsea.jpg"]) and time.monotonic() < deadline:
                assert watcher.poll() is None, "the watcher exited during its first sync"
                time.sleep(0.5)  # the first sync
            (root / "photos" / "new.jpg").write_bytes(jpeg_bytes(synthetic_image(77)))
            (root / "photos" / "chelsea.jpg").unlink()
            # Followed: the collection changed and the sync that changed it said so (Ctrl-C
            # before its summary line would interrupt it, which a later sync resumes).
            while time.monotonic() < deadline and not (
                collection.missing(["photos/new.jpg", "photos/chelsea.jpg"])
                == ["photos/chelsea.jpg"]
                and any("removed 1" in line for line in lines)
            ):
                assert watcher.poll() is None, "the watcher exited while following the folder"
                time.sleep(0.5)
    finally:
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=60)
        reader.join(10)
    assert watcher.returncode == 0, err
    assert "Traceback" not in err
    assert lines[0].startswith("added 44, updated 0, removed 0"), lines
    changes = [re.match(r"added (\d+), updated (\d+), removed (\d+)", line) for line in lines[1:]]
    added, updated, removed = (sum(int(m[i]) for m in changes if m) for i in (1, 2, 3))
    assert (added, updated, removed) == (1, 0, 1), lines
