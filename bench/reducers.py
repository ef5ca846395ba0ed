"""Compare PCA, whitened PCA and the autoencoder on real-photo vectors (issue: reduction).

Writes `count` crops of the scikit-image sample photos, embeds them once with an Embedder
(untrained weights unless --weights says otherwise) into a dump, trains each reducer on the
dump and prints `imagesim reducer eval`'s table.

    python -m bench.reducers --count 3000 [--weights none] [--work .bench/reducers]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from imagesim.samples import write_photo_crops
from tests.support.launch import start_embedder


def imagesim(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "imagesim.client.cli", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--weights", default="none")
    parser.add_argument("--work", type=Path, default=Path(".bench/reducers"))
    args = parser.parse_args()

    photos = args.work / "photos"
    if len(list(photos.glob("*.jpg"))) < args.count:
        write_photo_crops(photos, args.count)
    dump = args.work / "vectors.npz"
    embedder = start_embedder(args.work / "embedder.log", "--weights", args.weights)
    try:
        print(
            imagesim(
                "dump", str(photos), "--embedder", embedder.address, "--out", str(dump), "--quiet"
            ),
            flush=True,
        )
    finally:
        embedder.stop()
    reducers = []
    for name, extra in (
        ("pca", ["--method", "pca"]),
        ("pca-whitened", ["--method", "pca", "--whiten"]),
        ("autoencoder", ["--method", "autoencoder"]),
    ):
        out = args.work / name
        print(
            imagesim("reducer", "train", str(dump), *extra, "--dims", "256", "--out", str(out)),
            flush=True,
        )
        reducers.append(str(out))
    print(imagesim("reducer", "eval", str(dump), *reducers))


if __name__ == "__main__":
    main()
