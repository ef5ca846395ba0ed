"""The Parquet vector dump on its own (no servers): schema and file metadata, checkpointed parts
that a later run resumes from, atomic replacement, refusal to mix models, and reading a file
larger than a memory bound as a stream."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imagesim.bulk.parquet_dump import (
    DumpHeader,
    ParquetDumpWriter,
    read_header,
    read_keys,
    read_rows,
    row_count,
)
from imagesim.errors import FailedPrecondition

HEADER = DumpHeader("f" * 64, "full", "openvino", "float32", 16)


def rows(start: int, count: int, dims: int = 16) -> list[tuple[str, np.ndarray, dict[str, str]]]:
    """Rows whose content depends on their number alone."""
    return [
        (
            f"photos/{n:05d}.jpg",
            np.random.default_rng(n).random(dims, dtype=np.float32),
            {"width": str(n), "n": "x"},
        )
        for n in range(start, start + count)
    ]


def test_schema_types_and_file_metadata(tmp_path: Path):
    out = tmp_path / "v.parquet"
    writer = ParquetDumpWriter(out)
    writer.start(HEADER)
    written = rows(0, 5)
    writer.add_many(written)
    writer.finish()
    schema = pq.read_schema(out)
    assert schema.field("key").type == pa.string()
    assert schema.field("vector").type == pa.list_(pa.float32(), 16)
    assert schema.field("metadata").type == pa.map_(pa.string(), pa.string())
    assert {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()} == {
        "imagesim.format": "1",
        "imagesim.model_fingerprint": "f" * 64,
        "imagesim.space": "full",
        "imagesim.runtime": "openvino",
        "imagesim.precision": "float32",
        "imagesim.dims": "16",
    }
    assert read_header(out) == HEADER
    back = list(read_rows(out))
    assert [k for k, _, _ in back] == [k for k, _, _ in written]
    for (_, v, m), (_, v0, m0) in zip(back, written, strict=True):
        assert v.dtype == np.float32 and np.array_equal(v, v0) and m == m0
    assert not writer.parts_dir.exists()


def test_an_interrupted_run_keeps_the_output_whole_and_the_next_run_resumes(tmp_path: Path):
    out = tmp_path / "v.parquet"
    first = ParquetDumpWriter(out)
    first.start(HEADER)
    first.add_many(rows(0, 10))
    first.finish()
    before = out.read_bytes()

    # A second run checkpoints 7 rows, then dies before finish().
    interrupted = ParquetDumpWriter(out, checkpoint_rows=4)
    interrupted.start(HEADER)
    interrupted.add_many(rows(10, 7))  # one part of 4 rows written on its own
    interrupted.checkpoint()  # and one of 3 (a timed checkpoint)
    assert out.read_bytes() == before  # the output is only ever replaced whole
    assert len(list(interrupted.parts_dir.glob("part-*.parquet"))) == 2

    resumed = ParquetDumpWriter(out)
    assert (resumed.previous, resumed.resumed) == (10, 7)
    assert resumed.known == {k for k, _, _ in rows(0, 17)}
    resumed.start(HEADER)
    resumed.add_many(rows(15, 5))  # 15, 16 are known: skipped; 17..19 are new
    resumed.finish()
    keys = list(read_keys(out))
    assert keys == [k for k, _, _ in rows(0, 20)]
    assert row_count(out) == 20
    expected = {k: v for k, v, _ in rows(0, 20)}
    assert all(np.array_equal(v, expected[k]) for k, v, _ in read_rows(out))
    assert not resumed.parts_dir.exists()
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    "other",
    [
        DumpHeader("e" * 64, "full", "openvino", "float32", 16),
        DumpHeader("f" * 64, "full", "openvino", "bfloat16", 16),
        DumpHeader("f" * 64, "reduced", "openvino", "float32", 16),
    ],
)
def test_vectors_of_another_model_precision_or_space_are_never_mixed_in(tmp_path, other):
    out = tmp_path / "v.parquet"
    writer = ParquetDumpWriter(out)
    writer.start(HEADER)
    writer.add_many(rows(0, 3))
    writer.finish()
    with pytest.raises(FailedPrecondition, match="never mixed"):
        ParquetDumpWriter(out).start(other)


def test_a_parquet_file_that_is_not_a_dump_is_refused(tmp_path: Path):
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"key": ["a"]}), path)
    with pytest.raises(FailedPrecondition, match="not an imagesim vector dump"):
        read_header(path)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(FailedPrecondition):
        ParquetDumpWriter(tmp_path / "junk.parquet")


READER = """
import sys
import pyarrow as pa
from imagesim.bulk.parquet_dump import read_rows
count = 0
for key, vector, meta in read_rows(sys.argv[1]):
    count += 1
print(count, pa.default_memory_pool().max_memory())
"""


def test_reading_streams_a_file_larger_than_the_memory_bound(tmp_path: Path):
    """An 84 MB dump read in a fresh process whose Arrow memory never exceeds 48 MB at once
    (reading it whole, pq.read_table, takes at least the file; pyarrow's default read-ahead
    alone took 110 MB)."""
    dims, count, bound = 2048, 10_000, 48 * 2**20
    out = tmp_path / "big.parquet"
    writer = ParquetDumpWriter(out, checkpoint_rows=2048)
    writer.start(DumpHeader("f" * 64, "full", "openvino", "float32", dims))
    rng = np.random.default_rng(0)
    for n in range(count):
        writer.add(f"k{n}", rng.random(dims, dtype=np.float32), {"n": str(n)})
    writer.finish()
    assert out.stat().st_size > bound * 1.5
    result = subprocess.run(
        [sys.executable, "-c", READER, str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    read, peak = (int(x) for x in result.stdout.split())
    assert read == count
    assert peak < bound, json.dumps({"file_bytes": out.stat().st_size, "arrow_peak": peak})
