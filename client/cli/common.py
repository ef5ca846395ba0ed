"""Helpers the CLI's command modules share: warnings on stderr, a bulk run's report, and the
Parquet extra's module (or an error naming the extra)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from imagesim.bulk.common import BulkReport, write_failures
from imagesim.client.embedder_client import ModelIdentity
from imagesim.errors import FailedPrecondition
from imagesim.types import EmbedderInfo


def model_of(info: EmbedderInfo) -> tuple[str, str, str]:
    """(fingerprint, runtime, precision) of what an embedder runs."""
    identity = ModelIdentity.of(info)
    return identity.fingerprint, identity.runtime, identity.precision


def warn(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr)


def parquet_module() -> Any:
    """bulk.parquet_dump, or an error naming the extra that brings pyarrow."""
    try:
        from imagesim.bulk import parquet_dump
    except ImportError as exc:
        raise FailedPrecondition(str(exc)) from None
    return parquet_dump


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() == ".parquet"


def print_report(report: BulkReport, done: str, total: int, failures: Path | None = None) -> None:
    for path, reason in report.failed[:20]:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if len(report.failed) > 20:
        print(f"... and {len(report.failed) - 20} more", file=sys.stderr)
    if report.failed and failures is not None:
        write_failures(report, failures)
        print(f"failed files listed in {failures}", file=sys.stderr)
    if report.already:
        print(f"{report.already} images were already done (previous run)")
    if report.streams_broken:
        print(
            f"{report.streams_broken} embed streams broke and were replaced; "
            f"{report.resent} images were sent again (none lost)"
        )
    shards = ", ".join(f"{address}: {n}" for address, n in report.per_shard.items())
    shards = f"; per shard: {shards}" if shards else ""
    print(
        f"{done} {report.done} of {total} images in {report.seconds:.1f} s "
        f"({report.rate:.1f} img/s); {len(report.failed)} skipped{shards}"
    )
    if report.build_skipped:
        print(
            f"not built ({report.build_skipped}): the items are searchable now (staged, searched "
            "exactly); each shard builds them in the background once enough are staged "
            "(imagesim-index --auto-build), or an admin key runs `imagesim build`"
        )
