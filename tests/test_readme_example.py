"""The README's Python example, run as written against real servers, so the README and the
library cannot drift apart; and the public API it uses (`from imagesim import ...`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import imagesim
from imagesim.samples import write_held_out_cat, write_sample_photos

ROOT = Path(__file__).resolve().parent.parent
# The addresses the README uses (those of its quick start); the test's servers replace them.
README_EMBEDDER = "127.0.0.1:50051"
README_SHARDS = ("127.0.0.1:50061", "127.0.0.1:50062")


def readme_python_example() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```$", (ROOT / "README.md").read_text(), re.S | re.M)
    assert len(blocks) == 1, "the README has one Python example (the one this test runs)"
    return blocks[0]


def test_the_readme_example_indexes_and_queries_real_servers(
    tmp_path, embedder_server, start_shard
):
    code = readme_python_example()
    assert "from imagesim import " in code and "imagesim." not in code.replace("from imagesim", "")
    assert len(code.strip().splitlines()) <= 16, "a short example"
    shards = [start_shard(name=f"shard-{n}") for n in range(2)]
    for readme_address, server in zip(
        (README_EMBEDDER, *README_SHARDS), (embedder_server, *shards), strict=True
    ):
        assert code.count(f'"{readme_address}"') == 1, readme_address
        code = code.replace(f'"{readme_address}"', f'"{server.address}"')
    # What the quick start leaves behind: the demo's photos and its held-out query.
    write_sample_photos(tmp_path / ".demo" / "photos")
    write_held_out_cat(tmp_path / ".demo" / "query" / "cat_recropped.jpg")

    def run() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    first = run()
    photos = len(list((tmp_path / ".demo" / "photos").iterdir()))
    assert first[0] == f"{photos} indexed, 0 already there, 0 failed"
    hits = first[1:]
    assert len(hits) == 5
    distances = [float(line.split()[0]) for line in hits]
    assert distances == sorted(distances)
    # the cat (re-cropped, brighter) finds the cat and its near-duplicates first
    assert hits[0].split()[1].startswith(".demo/photos/chelsea")
    # run again: nothing is embedded twice, the answer is the same
    again = run()
    assert again[0] == f"0 indexed, {photos} already there, 0 failed"
    assert again[1:] == hits


def test_the_public_api_names_resolve():
    assert sorted(imagesim.__all__) == sorted(imagesim._EXPORTS)
    for name in imagesim.__all__:
        value = getattr(imagesim, name)
        assert value.__module__ == imagesim._EXPORTS[name], name
        assert name in dir(imagesim)
    from imagesim import Collection, EmbedderClient, SearchParams, index_paths, list_images

    assert SearchParams(k=5).k == 5
    assert callable(index_paths) and callable(list_images)
    assert Collection.search and EmbedderClient.embed


def test_importing_imagesim_stays_cheap():
    # The servers import this package too, and the client install has no TensorFlow or Annoy:
    # the public names load their modules only when first used.
    probe = (
        "import sys, imagesim\n"
        "heavy = ('grpc', 'numpy', 'PIL', 'tqdm', 'imagesim.client')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == ""
