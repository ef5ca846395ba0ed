"""`imagesim-index` settings, declared once (imagesim.settings_base): the shard's configuration
and, nested in it, its request limits (limits.IndexLimits). Each field is a flag and an
IMAGESIM_INDEX_* variable. Light on purpose: --help imports neither numpy nor Annoy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imagesim.enums import Metric
from imagesim.limits import IndexLimits
from imagesim.settings_base import setting


@dataclass(frozen=True)
class ShardConfig:
    data_dir: Path = setting(
        help="directory holding this shard's items and index generations", flag="--data"
    )
    dims: int | None = setting(  # None: take it from the existing data directory
        None, "vector dimension (2048 full, 256 reduced); required for a new shard"
    )
    metric: Metric = setting(Metric.ANGULAR, "distance metric")
    trees: int = setting(100, "Annoy trees per build")
    auto_build: int = setting(  # staged + hidden items that start a background build
        20_000,
        "build in the background once this many items are staged or removed since the last "
        "build (0 = only on request)",
    )
    shard_id: str | None = setting(
        None,
        "stable id of this shard, recorded at creation (default: generated); routing places "
        "keys by these ids, e.g. the pod name in a StatefulSet",
    )
    project_dims: int = setting(
        0,
        "build Annoy over a PCA projection of the vectors to this many dims and re-rank its "
        "candidates exactly in the full space (0 = off; e.g. 256 for 2048-d vectors)",
    )
    limits: IndexLimits = field(default_factory=IndexLimits)
