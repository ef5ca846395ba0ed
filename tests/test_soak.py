"""The soak test with faults, in short form (`make soak` runs it for minutes): an embedder and
3 shards, 8 clients with hostile calls, a shard killed and restarted, a build interrupted;
then every acknowledged write must be exactly what the shards hold and what searches find."""

from __future__ import annotations

import pytest

from tests.support.soak import Soak

pytestmark = pytest.mark.slow


def test_short_soak_keeps_every_acknowledged_write_and_serves_hostile_callers(tmp_path):
    report = Soak(tmp_path / "soak", clients=8, seconds=40).run()
    summary = report.summary()
    assert not report.unexpected, summary["unexpected"]
    assert not report.violations, summary["violations"]
    assert summary["total_operations"] > 150 and report.items_checked > 300
    assert {"shard2 SIGKILL", "shard2 restarted", "shard1 restarted"} <= set(report.faults)
    hostile = ("huge-key", "huge-metadata", "nan", "huge-trees", "too-many-items", "idle-stream")
    assert sum(summary["operations"].get(name, 0) for name in hostile) > 10
    # Memory, for the processes that were never restarted (a restarted shard spends a short
    # run catching up): a smoke check against gross leaks, e.g. a shard keeping the messages it
    # was sent. glibc keeps the high-water mark of what hostile
    # 64 MiB requests made it allocate, so a shard's settled anonymous memory varies from run
    # to run on a loaded machine (48 -> 58 and 48 -> 167 MB in two runs of one commit);
    # `make soak` watches every process for minutes, where a leak keeps rising.
    steady = {n for n in report.rss_mb if f"{n} restarted" not in report.faults}
    assert {"embedder", "shard0"} <= steady
    for name in steady:
        warm, end = report.rss_mb[name]
        assert end <= warm * 1.10 + 200, f"{name} grew from {warm:.0f} to {end:.0f} MB"
