"""Soak test with faults: an Embedder and 3 shards under 8 concurrent clients for a fixed time,
then a model-based consistency check.

    python -m tests.support.soak [--seconds 180] [--clients 8] [--work .soak] [--json F]

Clients mix Add (new keys and replacements), Remove, Search (thresholds, filters, batches),
Get/Contains, Scan, Embed and Build with random sizes, plus hostile calls (oversized keys and
metadata, NaN and mis-sized vectors, absurd k/trees/page sizes, too many items, undecodable and
huge-pixel images, idle streams). Meanwhile one shard is killed with SIGKILL and restarted, and
another is killed in the middle of a build and restarted.

Each client owns its keys, so the model of what the collection must hold is exact: a write
whose outcome is unknown (its shard died under it) leaves the key in one of two states until
the next acknowledged write. At the end: every acknowledged Add is present with its last
acknowledged vector and metadata, every acknowledged Remove is absent, no key is on two shards
(nor off its home shard), and a search for each item's own vector returns it first. The report
gives operations, errors by code and reason, p50/p99 per operation, and each server's RSS after
warm-up and at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import shutil
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imagesim.channel import RECONNECT_BACKOFF_MAX_MS
from imagesim.client.collection import Collection
from imagesim.client.embedder_client import EmbedderClient
from imagesim.client.index_client import IndexClient
from imagesim.errors import ImagesimError, Unavailable
from imagesim.params import SearchParams
from imagesim.routing import home
from imagesim.samples import photo
from imagesim.types import ItemToAdd
from imagesim.v1 import index_pb2
from tests.support.launch import ServerProcess, start_embedder, start_index

DIMS = 2048
KEYS_PER_CLIENT = 240
# A (re)started process's RSS is judged only from this long after it serves: a restarted
# shard maps its index, reloads its staged items and takes the writes it missed for a while
# (8 s was too short on a loaded machine: 94 -> 157 MB in a 40 s run, no leak in 180 s).
RSS_SETTLE_SECONDS = 20.0
# How long after a restarted shard serves every client's channel must be connected to it: the
# channels' backoff (at most RECONNECT_BACKOFF_MAX_MS, plus 20% jitter) and a loaded machine.
RECONNECT_GRACE_SECONDS = RECONNECT_BACKOFF_MAX_MS / 1000 * 1.2 + 5.0
# Codes an operation may end with while a shard is down or restarting.
OUTAGE_CODES = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"}


@dataclass
class KeyState:
    """What a key must look like: each possible (vector, metadata); None = absent."""

    possible: list[tuple[np.ndarray, dict[str, str]] | None] = field(default_factory=lambda: [None])


@dataclass
class Report:
    seconds: float = 0.0
    operations: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # "op CODE REASON"
    unexpected: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    rss_mb: dict[str, tuple[float, float]] = field(default_factory=dict)  # warm, end
    rss_not_judged: list[str] = field(default_factory=list)  # too few settled samples
    faults: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    items_checked: int = 0

    @property
    def passed(self) -> bool:
        return not self.unexpected and not self.violations

    def summary(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "seconds": round(self.seconds, 1),
            "operations": dict(self.operations),
            "total_operations": sum(self.operations.values()),
            "errors": dict(self.errors),
            "unexpected": self.unexpected[:50],
            "latency_ms": {
                op: {
                    "p50": round(float(np.percentile(v, 50)) * 1000, 2),
                    "p99": round(float(np.percentile(v, 99)) * 1000, 2),
                    "n": len(v),
                }
                for op, v in sorted(self.latencies.items())
            },
            "rss_mb_warm_end": {k: [round(a), round(b)] for k, (a, b) in self.rss_mb.items()},
            "rss_not_judged": self.rss_not_judged,
            "faults": self.faults,
            "items_checked": self.items_checked,
            "violations": self.violations[:50],
        }


def jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def huge_pixel_png() -> bytes:
    """A 16-bit greyscale PNG of 8944x8944: ~150 KiB that decodes to 160 MB of pixels."""
    buffer = io.BytesIO()
    Image.new("I;16", (8944, 8944)).save(buffer, "PNG")
    return buffer.getvalue()


class Soak:
    def __init__(self, work: Path, clients: int, seconds: float, seed: int = 0) -> None:
        self.work = work
        self.clients = clients
        self.seconds = seconds
        self.seed = seed
        self.report = Report()
        self.lock = threading.Lock()
        self.model: dict[str, KeyState] = {}
        self.shards: list[ServerProcess] = []
        self.ports: list[int] = []
        self.down: set[int] = set()  # shards being killed / restarted / reconnected to
        self.collections: list[Collection] = []  # the clients' long-lived channels
        self.faults_done = threading.Event()
        self.serving_since: dict[str, float] = {}  # process name -> when it (re)started serving
        self.stop = threading.Event()
        self.photos = [jpeg(photo(name).resize((320, 240))) for name in ("chelsea", "coffee")]
        self.bomb = huge_pixel_png()

    # ---- servers -------------------------------------------------------------------------

    def start(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.embedder = start_embedder(
            self.work / "embedder.log", "--weights", "none", "--precision", "float32"
        )
        for n in range(3):
            shard = start_index(
                self.work / f"shard{n}.log", self.work / f"shard{n}", DIMS, "--auto-build", "400"
            )
            self.shards.append(shard)
            self.ports.append(int(shard.address.rsplit(":", 1)[1]))
        self.addresses = [s.address for s in self.shards]
        now = time.monotonic()
        self.serving_since = {name: now for name in self.pids()}
        with Collection(self.addresses) as collection:
            collection.record_layout()
            self.ids = {a: IndexClient(a).stats().shard_id for a in self.addresses}

    def restart(self, n: int) -> None:
        self.shards[n] = start_index(
            self.work / f"shard{n}-again.log",
            self.work / f"shard{n}",
            DIMS,
            "--auto-build",
            "400",
            port=self.ports[n],
        )
        self.serving_since[f"shard{n}"] = time.monotonic()

    def pids(self) -> dict[str, int]:
        named = {"embedder": self.embedder, **{f"shard{n}": s for n, s in enumerate(self.shards)}}
        return {name: s.process.pid for name, s in named.items()}

    def stop_all(self) -> None:
        for server in [self.embedder, *self.shards]:
            server.stop()

    def rss(self) -> dict[str, float]:
        import psutil

        named = {"embedder": self.embedder, **{f"shard{n}": s for n, s in enumerate(self.shards)}}
        # Anonymous resident memory (RSS less its file-backed pages): a shard's memory-mapped
        # index grows with the items written, which is data, not a leak.
        out = {}
        for name, s in named.items():
            if s.process.poll() is None:
                info = psutil.Process(s.process.pid).memory_info()
                out[name] = (info.rss - info.shared) / 1e6
        return out

    def settled_rss(self, seconds: float = 60.0, samples: int = 5) -> dict[str, float]:
        """After the load has stopped: wait (up to `seconds`) until no shard is building, then
        the lowest of a few samples half a second apart. A build swings a shard's memory by 2x
        within seconds, so memory taken under load says more about when a build ran than about
        a leak."""
        deadline = time.monotonic() + seconds
        for address in self.addresses:
            with IndexClient(address, timeout=10) as shard:
                while time.monotonic() < deadline:
                    try:
                        if not shard.stats().building:
                            break
                    except ImagesimError:  # a shard that cannot answer is judged as it is
                        break
                    time.sleep(0.2)
        lowest: dict[str, float] = {}
        for n in range(samples):
            if n:
                time.sleep(0.5)
            for name, mb in self.rss().items():
                lowest[name] = min(mb, lowest.get(name, mb))
        return lowest

    # ---- bookkeeping ---------------------------------------------------------------------

    def timed(
        self,
        op: str,
        fn: Callable[[], Any],
        expect: set[str] | None = None,
        allow: set[str] | None = None,
    ) -> Any:
        """Run one operation; record its latency and its error. `expect`: the codes a
        hostile call must get (anything else is unexpected); `allow`: codes a normal call may
        also end with."""
        started = time.perf_counter()
        try:
            result = fn()
        except ImagesimError as exc:
            with self.lock:
                self.report.operations[op] += 1
                self.report.errors[f"{op} {exc.code} {exc.reason}"] += 1
                allowed = (expect or set()) | (allow or set())
                if exc.code not in allowed and not (exc.code in OUTAGE_CODES and self.down):
                    self.report.unexpected.append(f"{op}: {exc}")
            raise
        with self.lock:
            self.report.operations[op] += 1
            self.report.latencies[op].append(time.perf_counter() - started)
            if expect:
                self.report.unexpected.append(f"{op}: succeeded but should have failed")
        return result

    def shard_index(self, key: str) -> int:
        owner = home(key, list(self.ids.values()))
        return next(n for n, a in enumerate(self.addresses) if self.ids[a] == owner)

    # ---- the clients ---------------------------------------------------------------------

    def client(self, number: int) -> None:
        rng = random.Random(self.seed * 1000 + number)
        keys = [f"c{number}/k{i:04d}" for i in range(KEYS_PER_CLIENT)]
        by_shard: dict[int, list[str]] = defaultdict(list)
        for key in keys:
            by_shard[self.shard_index(key)].append(key)
            with self.lock:
                self.model[key] = KeyState()
        with (
            EmbedderClient(self.embedder.address, timeout=60) as embedder,
            Collection(self.addresses, timeout=15) as collection,
        ):
            collection.connect()
            with self.lock:
                self.collections.append(collection)
            try:
                while not self.stop.is_set():
                    self.act(number, rng, by_shard, keys, collection, embedder)
            finally:
                self.faults_done.wait(120)  # recovered() may be waiting on this channel
                with self.lock:
                    self.collections.remove(collection)

    def act(
        self,
        number: int,
        rng: random.Random,
        by_shard: dict[int, list[str]],
        keys: list[str],
        collection: Collection,
        embedder: EmbedderClient,
    ) -> None:
        """One operation, chosen at random in the soak's mix."""
        roll = rng.random()
        try:
            if roll < 0.28:
                self.add(collection, rng, by_shard, number)
            elif roll < 0.38:
                self.remove(collection, rng, by_shard)
            elif roll < 0.60:
                self.search(collection, rng, keys)
            elif roll < 0.68:
                self.embed(embedder, rng)
            elif roll < 0.70:
                self.build(rng)
            elif roll < 0.75:
                self.read(collection, rng, keys)
            else:
                self.hostile(collection, embedder, rng)
        except ImagesimError:
            pass  # recorded by `timed`

    def add(self, collection: Collection, rng: random.Random, by_shard, number: int) -> None:
        shard = rng.randrange(3)
        pool = by_shard[shard]
        chosen = rng.sample(pool, min(len(pool), rng.randint(1, 20)))
        items = [
            ItemToAdd(
                key,
                np.random.default_rng(rng.getrandbits(32)).random(DIMS, dtype=np.float32) + 0.01,
                {"client": str(number), "v": str(rng.getrandbits(16))},
            )
            for key in chosen
        ]
        try:
            self.timed("add", lambda: collection.add(items))
        except ImagesimError:
            with self.lock:  # unknown outcome: either the old or the new state
                for item in items:
                    state = self.model[item.key]
                    state.possible.append((item.vector, dict(item.metadata or {})))
            raise
        with self.lock:
            for item in items:
                self.model[item.key] = KeyState([(item.vector, dict(item.metadata or {}))])

    def remove(self, collection: Collection, rng: random.Random, by_shard) -> None:
        pool = by_shard[rng.randrange(3)]
        chosen = rng.sample(pool, min(len(pool), rng.randint(1, 5)))
        try:
            self.timed("remove", lambda: collection.remove(chosen))
        except ImagesimError:
            with self.lock:
                for key in chosen:
                    self.model[key].possible.append(None)
            raise
        with self.lock:
            for key in chosen:
                self.model[key] = KeyState([None])

    def search(self, collection: Collection, rng: random.Random, keys: list[str]) -> None:
        queries = np.random.default_rng(rng.getrandbits(32)).random(
            (rng.choice([1, 1, 1, 4, 16]), DIMS), dtype=np.float32
        )
        params = SearchParams(
            k=rng.randint(1, 50),
            rerank_factor=rng.choice([1, 1, 4]),
            max_distance=rng.choice([None, None, 0.3]),
            where={"client": str(rng.randrange(self.clients))} if rng.random() < 0.3 else {},
            include_metadata=rng.random() < 0.3,
        )
        self.timed("search", lambda: collection.search_many(queries, params))

    def embed(self, embedder: EmbedderClient, rng: random.Random) -> None:
        if rng.random() < 0.2:
            bad = rng.choice([b"", b"GIF89a garbage", self.photos[0][:300]])
            self.timed("embed-bad", lambda: embedder.embed(bad), expect={"INVALID_ARGUMENT"})
        else:
            self.timed("embed", lambda: embedder.embed(rng.choice(self.photos)))

    def build(self, rng: random.Random) -> None:
        n = rng.randrange(3)
        if n in self.down:
            return
        with IndexClient(self.addresses[n], timeout=120) as shard:
            self.timed("build", lambda: shard.build(trees=rng.randint(1, 20)))

    def read(self, collection: Collection, rng: random.Random, keys: list[str]) -> None:
        key = rng.choice(keys)
        if rng.random() < 0.5:
            self.timed("contains", lambda: collection.missing([key]))
        else:
            n = rng.randrange(3)
            if n in self.down:
                return
            with IndexClient(self.addresses[n], timeout=15) as shard:
                self.timed(  # idle-stream attacks may hold every stream slot: refused, not hung
                    "scan",
                    lambda: sum(len(p) for p in shard.scan(page_size=rng.randint(1, 300))),
                    allow={"RESOURCE_EXHAUSTED"},
                )

    def hostile(self, collection: Collection, embedder: EmbedderClient, rng: random.Random) -> None:
        n = rng.randrange(3)
        if n in self.down:
            return
        vector = np.ones(DIMS, np.float32)
        invalid = {"INVALID_ARGUMENT"}
        with IndexClient(self.addresses[n], timeout=30) as shard:
            attacks: list[tuple[str, Callable[[], Any], set[str]]] = [
                ("huge-key", lambda: shard.add([ItemToAdd("k" * 5000, vector)]), invalid),
                (
                    "huge-metadata",
                    lambda: shard.add([ItemToAdd("m", vector, {"x": "y" * 100_000})]),
                    invalid,
                ),
                ("nan", lambda: shard.add([ItemToAdd("n", np.full(DIMS, np.nan))]), invalid),
                ("wrong-dims", lambda: shard.search(np.ones(DIMS + 1)), invalid),
                ("extreme", lambda: shard.add([ItemToAdd("e", np.full(DIMS, 3e38))]), invalid),
                ("huge-k", lambda: shard.search(vector, SearchParams(k=10**6)), invalid),
                ("huge-trees", lambda: shard.build(trees=10_000_000), invalid),
                (
                    "too-many-items",
                    lambda: shard.add([ItemToAdd(f"t{i}", vector) for i in range(5000)]),
                    invalid,
                ),
                (
                    "huge-page",
                    lambda: list(shard.scan(page_size=10**7)),
                    {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"},
                ),
                (
                    "huge-pixels",
                    lambda: embedder.embed(self.bomb),
                    {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"},
                ),
                ("idle-stream", lambda: self.idle_stream(shard), set()),
            ]
            name, attack, expect = rng.choice(attacks)
            with contextlib.suppress(ImagesimError):  # recorded by `timed`
                self.timed(name, attack, expect=expect or None)

    def idle_stream(self, shard: IndexClient) -> None:
        """Open an AddStream and send nothing for a while (the client gives up after 3 s)."""
        idle = threading.Event()

        def nothing():
            idle.wait(3)
            return
            yield  # a generator that never yields

        call = shard.stub.AddStream.future(nothing(), timeout=3.5)
        with contextlib.suppress(Exception):  # ended by the server's idle limit or our deadline
            call.result()

    # ---- faults --------------------------------------------------------------------------

    def faults(self) -> None:
        try:
            self.inject_faults()
        finally:
            self.faults_done.set()

    def inject_faults(self) -> None:
        if self.stop.wait(self.seconds * 0.3):
            return
        self.down.add(2)
        self.shards[2].kill()
        self.report.faults.append("shard2 SIGKILL")
        time.sleep(1.0)
        self.restart(2)
        self.report.faults.append("shard2 restarted")
        self.recovered(2)
        if self.stop.wait(self.seconds * 0.25):
            return
        with IndexClient(self.addresses[1], timeout=120) as shard:
            build = shard.stub.Build.future(index_pb2.BuildRequest(trees=1000), timeout=120)
            deadline = time.monotonic() + 20
            while not shard.stats().building and time.monotonic() < deadline:
                time.sleep(0.005)
            building = shard.stats().building
            self.down.add(1)
            self.shards[1].kill()
            build.cancel()
        self.report.faults.append(
            f"shard1 SIGKILL {'during a build' if building else '(build not seen)'}"
        )
        time.sleep(1.0)
        self.restart(1)
        self.report.faults.append("shard1 restarted")
        self.recovered(1)

    def recovered(self, n: int) -> None:
        """The clients' channels to shard `n` must reconnect within RECONNECT_GRACE_SECONDS of
        its serving again (their backoff is at most RECONNECT_BACKOFF_MAX_MS plus jitter);
        outage errors are expected until they have (and for a second more, for calls that
        failed just before). A channel slower than that is an unexpected result."""
        deadline = self.serving_since[f"shard{n}"] + RECONNECT_GRACE_SECONDS
        with self.lock:
            collections = list(self.collections)
        for collection in collections:
            while not self.stop.is_set():
                left = deadline - time.monotonic()
                try:
                    collection.shards[n].wait_connected(timeout=min(1.0, max(left, 0.05)))
                    break
                except Unavailable:
                    if left <= 0:
                        with self.lock:
                            self.report.unexpected.append(
                                f"a client's channel to shard{n} was not connected "
                                f"{RECONNECT_GRACE_SECONDS:g} s after the shard served again"
                            )
                        break
        self.stop.wait(1.0)
        self.down.discard(n)

    # ---- the run -------------------------------------------------------------------------

    def run(self) -> Report:
        self.start()
        try:
            started = time.monotonic()
            threads = [
                threading.Thread(target=self.client, args=(n,), name=f"soak-client-{n}")
                for n in range(self.clients)
            ]
            for thread in threads:
                thread.start()
            fault_thread = threading.Thread(target=self.faults, name="soak-faults")
            fault_thread.start()
            # Warm: after the key pools have filled and the first restart is over. Memory is
            # sampled every second from then on; "warm" is the floor (lowest) of the first third
            # of the samples, "end" the floor once the load has stopped and builds have ended: a
            # shard's builds swing its memory by 2x within seconds (anonymous memory 60-196 MB in
            # a 180 s run, builds back to back near the end), and a leak shows as a rising floor.
            self.stop.wait(self.seconds * 0.45)
            warm_pids = self.pids()
            samples: list[tuple[float, dict[str, float]]] = []
            while not self.stop.wait(1.0):
                samples.append((time.monotonic(), self.rss()))
                if time.monotonic() - started >= self.seconds:
                    break
            self.stop.set()
            for thread in [*threads, fault_thread]:
                thread.join(120)
            self.report.seconds = time.monotonic() - started
            end = self.settled_rss()
            end_pids = self.pids()
            for name in warm_pids:
                if warm_pids[name] != end_pids[name]:
                    continue  # restarted after warm-up: its growth is a new process's
                self.judge_rss(name, samples, end)
            self.check()
        finally:
            self.stop_all()
        return self.report

    def judge_rss(
        self, name: str, samples: list[tuple[float, dict[str, float]]], end: dict[str, float]
    ) -> None:
        """Warm and end memory of one process, warm from samples taken at least RSS_SETTLE_SECONDS
        after it (re)started serving: a restarted shard grows while it maps its index and
        reloads its staged items, which is not growth under load. Too few samples (a slow
        machine restarted it late in a short run): not judged, and said so."""
        since = self.serving_since[name] + RSS_SETTLE_SECONDS
        mine = [rss[name] for at, rss in samples if at >= since and name in rss]
        if len(mine) < 10 or len(mine) < sum(1 for at, _ in samples if at >= since):
            self.report.rss_not_judged.append(name)
            return
        third = max(5, len(mine) // 3)
        if name not in end:
            self.report.rss_not_judged.append(name)
            return
        self.report.rss_mb[name] = (min(mine[:third]), end[name])

    def check(self) -> None:
        """The model-based consistency check."""
        violations = self.report.violations
        with Collection(self.addresses, timeout=120) as collection:
            collection.connect()
            for shard in collection.shards:  # staged and built alike
                shard.build(trees=10)
            seen: dict[str, list[str]] = defaultdict(list)
            stored: dict[str, tuple[np.ndarray, dict[str, str]]] = {}
            for shard in collection.shards:
                for page in shard.scan(include_vectors=True, timeout=300):
                    for item in page:
                        seen[item.key].append(shard.address)
                        stored[item.key] = (item.vector, item.metadata)
            for key, places in seen.items():
                if len(places) > 1:
                    violations.append(f"{key} is on {len(places)} shards: {places}")
                elif places[0] != collection.shard_for(key).address:
                    violations.append(f"{key} is on {places[0]}, not on its home shard")
            for key, state in self.model.items():
                found = stored.get(key)
                if not any(self._matches(found, p) for p in state.possible):
                    expected = "absent" if state.possible == [None] else "present"
                    violations.append(
                        f"{key}: {'present' if found else 'absent'}, expected {expected}"
                    )
            strays = set(stored) - set(self.model)
            violations.extend(f"{key}: stored but never written" for key in sorted(strays))
            keys = sorted(stored)
            self.report.items_checked = len(keys)
            for start in range(0, len(keys), 64):
                batch = keys[start : start + 64]
                results = collection.search_many(
                    np.stack([stored[k][0] for k in batch]), SearchParams(k=3)
                )
                for key, result in zip(batch, results, strict=True):
                    if not result.neighbors or result.neighbors[0].key != key:
                        first = result.neighbors[0].key if result.neighbors else None
                        violations.append(f"search for {key}'s own vector returned {first} first")

    @staticmethod
    def _matches(found: tuple[np.ndarray, dict[str, str]] | None, possible) -> bool:
        if possible is None or found is None:
            return possible is None and found is None
        return bool(np.array_equal(found[0], possible[0])) and found[1] == possible[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--work", type=Path, default=Path(".soak"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = Soak(args.work, args.clients, args.seconds, args.seed).run()
    summary = report.summary()
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    growth = {name: (end - warm) / warm for name, (warm, end) in report.rss_mb.items() if warm}
    print(
        f"soak {'PASSED' if report.passed else 'FAILED'}: {summary['total_operations']} "
        f"operations in {summary['seconds']} s, {report.items_checked} items checked, "
        f"{len(report.violations)} violations, {len(report.unexpected)} unexpected errors; "
        "RSS growth " + ", ".join(f"{k} {v:+.0%}" for k, v in growth.items())
    )
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
