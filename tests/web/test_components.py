"""The web server's parts without HTTP: the thumbnail cache (bounded, made once, one decode
per file however many ask at once) and the duplicate finder's job control (one computation
at a time, results reused until the collection changes)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from imagesim.client.collection import Collection
from imagesim.client.duplicates import DuplicateReport
from imagesim.client.images_root import ImagesRoot
from imagesim.errors import PermissionDenied, Unavailable
from imagesim.samples import write_sample_photos
from imagesim.types import ItemToAdd
from imagesim.web.backend import Backend
from imagesim.web.backend import collection_signature as _signature
from imagesim.web.duplicate_jobs import DuplicateJobs, Progress
from imagesim.web.origin import foreign
from imagesim.web.thumbnails import ThumbnailCache
from tests.support.vectors import structured


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("thumbs")
    write_sample_photos(folder, with_variants=False)
    return folder


def cache_of(root: Path, max_bytes: int) -> ThumbnailCache:
    return ThumbnailCache(
        ImagesRoot(root), 128, max_bytes, 2, lambda: (10**8, 80_000_000, 128 * 2**20)
    )


def test_the_cache_keeps_what_fits_and_makes_each_thumbnail_once(root):
    names = sorted(p.name for p in root.iterdir())
    cache = cache_of(root, max_bytes=10**7)
    first = {n: cache.get(n) for n in names}
    assert cache.made == len(names)
    assert {n: cache.get(n) for n in names} == first and cache.made == len(names)  # all hits
    assert cache.cached_bytes == sum(len(t.data) for t in first.values())
    # A cache smaller than all of them keeps the most recent under its bound.
    small = cache_of(root, max_bytes=3 * max(len(t.data) for t in first.values()))
    for n in names:
        small.get(n)
        assert small.cached_bytes <= small.max_bytes
    made = small.made
    small.get(names[-1])  # the last one made is still there
    assert small.made == made
    small.get(names[0])  # the first was evicted long ago
    assert small.made == made + 1


def test_a_changed_file_gets_a_new_thumbnail(root, tmp_path):
    (tmp_path / "a.jpg").write_bytes((root / "coffee.jpg").read_bytes())
    cache = cache_of(tmp_path, 10**7)
    before = cache.get("a.jpg")
    (tmp_path / "a.jpg").write_bytes((root / "rocket.jpg").read_bytes())
    os.utime(tmp_path / "a.jpg", ns=(1, 1))
    after = cache.get("a.jpg")
    assert after.etag != before.etag and after.data != before.data and cache.made == 2
    assert cache.get("a.jpg", if_none_match=after.etag) is None  # caller's copy is current


def test_many_callers_for_one_file_share_one_decode(root):
    cache = cache_of(root, 10**7)
    start = threading.Barrier(12)
    results = []

    def ask() -> None:
        start.wait()
        results.append(cache.get("astronaut.jpg"))

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12 and len({r.etag for r in results}) == 1
    assert cache.made == 1


def test_requests_waiting_for_a_decoder_are_bounded(root):
    cache = ThumbnailCache(
        ImagesRoot(root), 128, 10**7, 1, lambda: (10**8, 80_000_000, 128 * 2**20), max_waiting=1
    )
    cache._waiting_room.acquire()  # the one decoder is busy (as with a huge PNG) ...
    cache._decoders.acquire()
    waiting = threading.Thread(target=cache.get, args=("coffee.jpg",))
    try:
        waiting.start()
        while cache._waiting_room._value:  # the waiting request has taken the other seat
            time.sleep(0.01)
        with pytest.raises(Unavailable) as busy:
            cache.get("rocket.jpg")  # the room (1 decoding + 1 waiting) is full
        assert busy.value.reason == "BUSY"
    finally:
        cache._decoders.release()  # ... and done
        cache._waiting_room.release()
        waiting.join()
    assert cache.made == 1 and cache.get("rocket.jpg") is not None


def test_the_root_refuses_keys_before_touching_files(root):
    images = ImagesRoot(root)
    for key in ("../x.jpg", "a/../../x.jpg", "/etc/hostname", "x\0.jpg", str(root.parent)):
        with pytest.raises(PermissionDenied) as refused:
            images.path_of(key)
        assert refused.value.reason == "OUTSIDE_IMAGES_ROOT"
    assert images.path_of("coffee.jpg") == os.path.realpath(root / "coffee.jpg")
    assert images.path_of(str(root / "coffee.jpg")) == os.path.realpath(root / "coffee.jpg")


def test_one_duplicate_search_at_a_time_and_results_reused_until_the_collection_changes(
    start_shard, embedder_server
):
    shard = start_shard(256)
    vectors = structured(4000, 256, seed=2)
    with Collection([shard.address]) as collection:
        collection.add([ItemToAdd(f"v{i:05d}", v) for i, v in enumerate(vectors)])
    backend = Backend(embedder_server.address, (shard.address,), timeout=60)
    jobs = DuplicateJobs(backend.collection, lambda: _signature(backend), 10, 60)
    try:
        started = jobs.get(0.5, wait=0)  # 4,000 searches: not done at once
        assert isinstance(started, Progress) and started.total == 4000
        busy = jobs.get(0.6, wait=0)  # another threshold waits for the finder
        assert isinstance(busy, Progress) and busy.max_distance == 0.5  # that one's progress
        report = jobs.get(0.5, wait=120)
        assert isinstance(report, DuplicateReport) and report.items == 4000
        assert jobs.get(0.5, wait=0) is report  # reused
        assert jobs.get(0.50000001, wait=0) is report  # rounded to the same threshold
        backend.collection.add([ItemToAdd("late", vectors[0])])
        changed = jobs.get(0.5, wait=120)
        assert isinstance(changed, DuplicateReport) and changed is not report
        assert changed.items == 4001
        assert any("late" in g.keys and "v00000" in g.keys for g in changed.groups)
        # Waiting is for a few requests at a time: the others get the progress at once.
        crowded = DuplicateJobs(
            backend.collection, lambda: _signature(backend), 10, 60, max_waiting=1
        )
        first = threading.Thread(target=crowded.get, args=(0.8, 120))
        first.start()
        while crowded._waiting._value:  # the first request waits
            time.sleep(0.01)
        assert isinstance(crowded.get(0.8, wait=120), Progress)  # did not wait for the result
        first.join()
        assert isinstance(crowded.get(0.8, wait=120), DuplicateReport)
        crowded.close()
        # Shutting down stops a search under way between two batches.
        assert isinstance(jobs.get(0.7, wait=0), Progress)
    finally:
        jobs.close()
        backend.close()
    assert not jobs._thread.is_alive()
    assert np.isfinite(report.seconds)


@pytest.mark.parametrize(
    "scheme, host, headers, refused",
    [
        ("http", "127.0.0.1:8080", {}, False),  # a program
        ("http", "127.0.0.1:8080", {"sec-fetch-site": "same-origin"}, False),
        ("http", "127.0.0.1:8080", {"sec-fetch-site": "none"}, False),  # typed in
        ("http", "127.0.0.1:8080", {"sec-fetch-site": "same-site"}, True),
        ("http", "127.0.0.1:8080", {"sec-fetch-site": "Cross-Site"}, True),
        ("http", "127.0.0.1:8080", {"origin": "http://127.0.0.1:8080"}, False),
        ("http", "127.0.0.1:8080", {"origin": "HTTP://127.0.0.1:8080"}, False),
        ("http", "127.0.0.1:8080", {"origin": "http://127.0.0.1:8081"}, True),
        ("http", "127.0.0.1:8080", {"origin": "https://127.0.0.1:8080"}, True),
        ("http", "127.0.0.1:8080", {"origin": "null"}, True),
        ("http", "127.0.0.1:8080", {"origin": ""}, True),
        ("https", "imagesim.example", {"origin": "https://imagesim.example"}, False),
        ("https", "imagesim.example:443", {"origin": "https://imagesim.example"}, False),
        ("https", "imagesim.example", {"origin": "https://imagesim.example:443"}, False),
        ("https", "imagesim.example", {"origin": "https://imagesim.example.evil"}, True),
        ("http", "[::1]:8080", {"origin": "http://[::1]:8080"}, False),
    ],
)
def test_the_origin_rule(scheme, host, headers, refused):
    scope = {
        "scheme": scheme,
        "headers": [(b"host", host.encode())]
        + [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    assert (foreign(scope) is not None) == refused
