"""The whole product end to end: start an Embedder and two Index shards, index real sample
photos with the `imagesim` CLI, query one photo and print the result, stop the servers.

    python examples/demo.py [--weights imagenet|none|PATH]      (make demo [WEIGHTS=none])
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from imagesim.testing.launch import start_embedder, start_index
from imagesim.testing.samples import write_held_out_cat, write_sample_photos

WORK = Path(".demo")


def run(*args: str) -> None:
    print("$ imagesim " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "imagesim.client.cli", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args()

    shutil.rmtree(WORK, ignore_errors=True)
    photos = WORK / "photos"
    written = write_sample_photos(photos)
    print(f"wrote {len(written)} sample photos (scikit-image data + near-duplicates) to {photos}")
    # The query is a photo the index has not seen (the cat, re-cropped and brighter).
    query = write_held_out_cat(WORK / "query" / "cat_recropped.jpg")

    print(f"starting the embedder (weights={args.weights}) ...", flush=True)
    try:
        embedder = start_embedder(WORK / "embedder.log", "--weights", args.weights)
    except RuntimeError as exc:
        sys.exit(f"the embedder did not start:\n{exc}\n(no internet? try: make demo WEIGHTS=none)")
    shards = []
    try:
        for n in range(args.shards):
            shards.append(start_index(WORK / f"index-{n}.log", WORK / f"shard-{n}", 2048))
        addresses = ",".join(s.address for s in shards)
        print(f"embedder at {embedder.address}; index shards at {addresses}\n")
        common = ["--embedder", embedder.address, "--shards", addresses]
        run("index", str(photos), *common, "--quiet")
        run("query", str(query), *common, "-k", "5")
        run("stats", "--shards", addresses)
    finally:
        for server in (*shards, embedder):
            server.stop()
    print(f"\nservers stopped; logs in {WORK}/")


if __name__ == "__main__":
    main()
