"""What a new user meets first: --version, --help's choices, usage errors, skipped files'
reasons, a closed pipe, a wrong address, a write key indexing, and missing Ray weights."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imagesim.client.bulk import read_image_file
from imagesim.client.cli import build_parser
from imagesim.client.collection import Collection
from imagesim.client.dump import VectorDump
from imagesim.client.index_client import IndexClient
from imagesim.enums import Space
from imagesim.types import ItemToAdd
from tests.support.cli import run_cli as imagesim

DIMS = 8


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "imagesim.client.cli", *args]


@pytest.mark.parametrize(
    "prog, module",
    [
        ("imagesim-embedder", "imagesim.embedder_server.main"),
        ("imagesim-index", "imagesim.index_server.main"),
        ("imagesim-web", "imagesim.web.settings"),
    ],
)
def test_every_server_prints_its_version(prog, module, capsys):
    parse = importlib.import_module(module).parse_args
    with pytest.raises(SystemExit) as exited:
        parse(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"{prog} {importlib.metadata.version('imagesim')}\n"


def test_the_cli_prints_its_version_without_a_command():
    result = imagesim("--version")
    assert result.stdout == f"imagesim {importlib.metadata.version('imagesim')}\n"


def test_space_choices_read_as_users_type_them(capsys):
    parser = build_parser()
    for command in ("index", "query", "dump"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        shown = capsys.readouterr().out
        assert "--space {full,reduced}" in shown and "Space." not in shown
    args = parser.parse_args(["query", "x.jpg", "--space", "reduced"])
    assert args.space is Space.REDUCED
    with pytest.raises(SystemExit) as refused:
        parser.parse_args(["query", "x.jpg", "--space", "Space.FULL"])
    assert refused.value.code == 2
    assert "must be one of full, reduced, not 'Space.FULL'" in capsys.readouterr().err


def test_a_folder_that_is_not_a_directory_is_a_usage_error(tmp_path):
    not_a_folder = tmp_path / "file.jpg"
    not_a_folder.write_bytes(b"")
    for args, message in (
        (
            ("index", "nosuchdir"),
            "imagesim index: error: argument DIR: no such directory: nosuchdir",
        ),
        (
            ("dump", str(not_a_folder), "--out", "v.npz"),
            f"argument DIR: {not_a_folder} is not a directory",
        ),
        (("index",), "imagesim index: error: give a folder of images (DIR) or --from-dump FILE"),
    ):
        shards = ("--shards", "127.0.0.1:1") if args[0] == "index" else ()
        result = imagesim(*args, *shards, check=False)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[-1].endswith(message), result.stderr
        assert "INTERNAL" not in result.stderr


def test_a_skipped_file_says_what_it_is_not_a_python_repr(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("a shopping list, saved with the wrong extension")
    with pytest.raises(ValueError) as skipped:
        read_image_file(text)
    reason = str(skipped.value)
    assert reason.startswith("not a readable image: the file is not in an image format")
    assert "BytesIO" not in reason and "0x" not in reason


def test_output_to_a_closed_pipe_ends_quietly(start_shard):
    """`imagesim duplicates --json | head`: the reader is gone before the CLI writes."""
    shard = start_shard(DIMS)
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to the pipe now fails with EPIPE
    try:
        result = subprocess.run(
            cli_command("duplicates", "--json", "--quiet", "--shards", shard.address),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141  # 128 + SIGPIPE, as the shell reports `cat` in its place
    assert result.stderr == ""


def test_duplicates_text_labels_each_distance(start_shard):
    shard = start_shard(DIMS)
    base = np.arange(1, DIMS + 1, dtype=np.float32)
    with IndexClient(shard.address) as client:
        client.add([ItemToAdd("a.jpg", base), ItemToAdd("a_copy.jpg", base)])
        client.add([ItemToAdd("other.jpg", base[::-1].copy())])
    lines = imagesim("duplicates", "--quiet", "--shards", shard.address).stdout.splitlines()
    assert "closest: each image's distance to its nearest other member" in lines[0]
    assert lines[1:] == [
        "group 1: 2 images",
        "  closest 0.0000  a.jpg",
        "  closest 0.0000  a_copy.jpg",
    ]


def test_a_wrong_address_says_which_service_it_serves(embedder_server, start_shard, photos):
    shard = start_shard(DIMS)
    as_shard = imagesim("stats", "--shards", embedder_server.address, check=False)
    assert as_shard.returncode == 1
    assert as_shard.stderr.endswith(
        f"{embedder_server.address} does not serve imagesim.v1.Index "
        "(it serves imagesim.v1.Embedder)\n"
    )
    image = str(photos / "real" / "rocket.jpg")
    as_embedder = imagesim(
        "query", image, "--embedder", shard.address, "--shards", shard.address, check=False
    )
    assert as_embedder.returncode == 1
    assert as_embedder.stderr.endswith(
        f"{shard.address} does not serve imagesim.v1.Embedder (it serves imagesim.v1.Index)\n"
    )
    assert "Method not found" not in as_shard.stderr + as_embedder.stderr


@pytest.fixture
def secure_dump(start_shard, pki, tmp_path):
    """A shard with TLS and API keys, a 20-vector dump, and the CLI's flags to reach it."""
    shard = start_shard(DIMS, *pki.server_args(), security=pki.security())
    vectors = np.random.default_rng(0).random((20, DIMS), np.float32)
    dump = tmp_path / "v.npz"
    VectorDump([f"k{i}" for i in range(20)], vectors, "", "full").save(dump)
    flags = ["--from-dump", str(dump), "--shards", shard.address, "--tls-ca", str(pki.ca)]
    return shard, flags


def test_a_write_key_indexes_and_leaves_the_build_to_the_shards(secure_dump, pki):
    shard, flags = secure_dump
    with Collection([shard.address], security=pki.security("admin")) as admin:
        admin.record_layout()  # the first write, as an admin's first `imagesim index` does
    for _ in range(2):  # the second run adds nothing new
        result = imagesim("index", *flags, "--api-key", pki.keys["write"])
        assert "indexed 20 of 20 images" in result.stdout
        assert (
            "not built (Build needs the 'admin' role; this key has 'write'): the items are "
            "searchable now" in result.stdout
        )
    with IndexClient(shard.address, security=pki.security("read")) as reader:
        stats = reader.stats()
        assert stats.count == 20 and stats.staged == 20 and stats.generation == 0
        assert len(reader.search(np.ones(DIMS), timeout=30)[0]) == 10  # searchable
    built = imagesim("index", *flags, "--api-key", pki.keys["admin"])
    assert "not built" not in built.stdout
    with IndexClient(shard.address, security=pki.security("read")) as reader:
        assert reader.stats().generation == 1


def test_a_write_key_cannot_start_a_collection_and_is_told_why(secure_dump, pki):
    _, flags = secure_dump
    fresh = imagesim("index", *flags, "--api-key", pki.keys["write"], check=False)
    assert fresh.returncode == 1
    assert fresh.stderr.endswith(
        "SetLayout needs the 'admin' role; this key has 'write': a new collection's layout is "
        "recorded once, by its first write with an admin key; later writes need only write\n"
    )


def ray_dump_without_weights(tmp_path: Path, weights: str, env: dict[str, str]):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    ray_tmp = tmp_path / "ray"
    ray_tmp.mkdir()
    out = tmp_path / "v.parquet"
    args = ("dump", str(folder), "--engine", "ray", "--out", str(out), "--weights", weights)
    result = imagesim(*args, "--quiet", check=False, env={"RAY_TMPDIR": str(ray_tmp), **env})
    assert list(ray_tmp.iterdir()) == []  # Ray never started
    return result


def test_ray_dump_checks_a_weights_file_before_ray_starts(tmp_path):
    result = ray_dump_without_weights(tmp_path, str(tmp_path / "absent.h5"), {})
    assert result.returncode == 1
    assert result.stderr == (
        f"imagesim: error: FAILED_PRECONDITION: weights file {tmp_path / 'absent.h5'} does not "
        "exist. Pass --weights imagenet (downloads "
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 once), a path to that file, "
        "or --weights none.\n"
    )


def test_ray_dump_gets_the_imagenet_weights_before_ray_starts(tmp_path):
    """No weights cached and no way to download them (a proxy that refuses: nothing leaves
    the machine): the one error that says how to fix it, and no Ray."""
    refused = "http://127.0.0.1:9"
    env = {
        "KERAS_HOME": str(tmp_path / "keras"),
        **{name: refused for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")},
        "no_proxy": "",
        "NO_PROXY": "",
    }
    result = ray_dump_without_weights(tmp_path, "imagenet", env)
    assert result.returncode == 1
    error = result.stderr[result.stderr.index("imagesim: error:") :]
    assert error.startswith(
        "imagesim: error: FAILED_PRECONDITION: cannot get the ImageNet weights for InceptionV3"
    )
    assert "--weights /path/to/" in error and "Traceback" not in result.stderr
