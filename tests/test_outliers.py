"""Outliers: the items farthest from their nearest neighbours, on real shards."""

from __future__ import annotations

import numpy as np
import pytest

from imagesim.client.collection import Collection
from imagesim.client.outliers import find_outliers
from imagesim.errors import InvalidArgument
from imagesim.types import ItemToAdd


def test_isolated_items_come_first(start_shard):
    shards = [start_shard(64, name=f"s{n}") for n in range(2)]
    rng = np.random.default_rng(3)
    centre = rng.random(64, dtype=np.float32)
    items = [
        ItemToAdd(f"crowd/{n:03d}.jpg", centre + rng.normal(0, 0.02, 64).astype(np.float32))
        for n in range(60)
    ]
    # Two odd pictures that resemble each other and nothing else, and one loner.
    odd = rng.random(64, dtype=np.float32) - 0.5
    items += [ItemToAdd("odd/1.jpg", odd), ItemToAdd("odd/2.jpg", odd * 1.001)]
    items += [ItemToAdd("loner.jpg", rng.random(64, dtype=np.float32) - 0.5)]
    with Collection([s.address for s in shards], timeout=30) as collection:
        collection.record_layout()
        collection.add(items)
        report = find_outliers(collection, count=3)
        assert report.items == 63 and report.neighbors == 3
        assert {o.key for o in report.outliers} == {"odd/1.jpg", "odd/2.jpg", "loner.jpg"}
        first = report.outliers[0]
        assert len(first.nearest) == 3 and first.score >= report.outliers[-1].score
        nearest_only = find_outliers(collection, count=3, neighbors=1)
        assert nearest_only.outliers[0].key == "loner.jpg"  # the pair hides with one neighbour
        assert "odd/1.jpg" not in {o.key for o in nearest_only.outliers[:1]}
        with pytest.raises(InvalidArgument, match="count must be between"):
            find_outliers(collection, count=0)
