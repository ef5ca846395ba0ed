"""The whole product end to end: start an Embedder and two Index shards, index real sample
photos with the `imagesim` CLI, query one photo (results printed and drawn on a contact sheet),
list the near-duplicate groups, stop the servers. With --web, also start imagesim-web on the
collection and keep everything running until Ctrl-C.

    python -m examples.demo [--weights imagenet|none|PATH]       (make demo [WEIGHTS=none])
    python -m examples.demo --web [--port 8080] [--weights ...]  (make web [WEIGHTS=none])
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imagesim.samples import write_held_out_cat, write_sample_photos
from tests.support.launch import ServerProcess, start_embedder, start_index

WORK = Path(".demo")


def run(*args: str) -> None:
    print("$ imagesim " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "imagesim.client.cli", *args], check=True)


@dataclass
class Demo:
    photos: Path  # absolute: the keys are absolute paths, and the web server's images root
    query: Path
    embedder: ServerProcess
    shards: list[ServerProcess]

    @property
    def addresses(self) -> str:
        return ",".join(s.address for s in self.shards)

    @property
    def common(self) -> list[str]:
        return ["--embedder", self.embedder.address, "--shards", self.addresses]


@contextmanager
def services(weights: str, shard_count: int = 2):
    """Sample photos written and indexed into a fresh Embedder and shards (stopped on exit)."""
    shutil.rmtree(WORK, ignore_errors=True)
    photos = (WORK / "photos").resolve()
    written = write_sample_photos(photos)
    print(f"wrote {len(written)} sample photos (scikit-image data + near-duplicates) to {photos}")
    # The query is a photo the index has not seen (the cat, re-cropped and brighter).
    query = write_held_out_cat(WORK / "query" / "cat_recropped.jpg")
    print(f"starting the embedder (weights={weights}) ...", flush=True)
    try:
        embedder = start_embedder(WORK / "embedder.log", "--weights", weights)
    except RuntimeError as exc:
        sys.exit(f"the embedder did not start:\n{exc}\n(no internet? try: make demo WEIGHTS=none)")
    shards: list[ServerProcess] = []
    try:
        for n in range(shard_count):
            shards.append(start_index(WORK / f"index-{n}.log", WORK / f"shard-{n}", 2048))
        demo = Demo(photos, query, embedder, shards)
        print(f"embedder at {embedder.address}; index shards at {demo.addresses}\n")
        run("index", str(photos), *demo.common, "--quiet")
        yield demo
    finally:
        for server in (*shards, embedder):
            server.stop()
        print(f"\nservers stopped; logs in {WORK}/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--web", action="store_true", help="run imagesim-web until Ctrl-C")
    parser.add_argument("--port", type=int, default=8080, help="imagesim-web port (--web)")
    args = parser.parse_args()

    with services(args.weights, args.shards) as demo:
        sheet = WORK / "result.png"
        run("query", str(demo.query), *demo.common, "-k", "5", "--sheet", str(sheet))
        run("duplicates", "--shards", demo.addresses, "--quiet")
        run("stats", "--shards", demo.addresses)
        print(f"\ncontact sheet of the query's results: {sheet}")
        if not args.web:
            print("to look at the collection in a browser: make web (same WEIGHTS)")
            return
        from tests.support.web import start_web

        web = start_web(
            WORK / "web.log",
            demo.embedder.address,
            demo.addresses,
            demo.photos,
            "--port",
            str(args.port),
        )
        print(f"\nthe web page: {web.url}/")
        print(f"duplicates: {web.url}/duplicates   API docs: {web.url}/docs")
        print("Ctrl-C stops the web server and the services", flush=True)
        # Ctrl-C (even where a shell started us with SIGINT ignored) and SIGTERM both stop.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            while web.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            web.stop()


if __name__ == "__main__":
    main()
