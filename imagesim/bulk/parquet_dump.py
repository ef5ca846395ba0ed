"""A vector dump as one Parquet file: a row per image (key, vector, metadata), the model that
made the vectors in the file's metadata, written resumably and read as a stream.

Schema: `key` string, `vector` fixed-size list of float32 (the space's dimension), `metadata`
map<string, string> (file_size, width, height, mtime, ...). The file's key-value metadata holds
`imagesim.model_fingerprint`, `imagesim.space`, `imagesim.runtime`, `imagesim.precision`,
`imagesim.dims` and `imagesim.format`. Row groups hold at most ROWS_PER_GROUP rows (~8 MB at
2048-d), so a reader never needs more than one of them in memory.

Writing is resumable and atomic: rows are checkpointed into complete Parquet part files under
`.NAME.parts/` beside the output (each written to a temporary name, fsynced, then renamed); the
output itself is replaced only by `finish()`, which streams the previous output and the parts
into a temporary file, fsyncs and renames it. An interrupted run leaves the previous output
whole and its parts in place: the next run counts both as done and embeds only the rest.

Needs pyarrow (`pip install 'imagesim[parquet]'`); nothing here knows how vectors are made.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError as exc:  # the client base install has no pyarrow
    raise ImportError(
        "Parquet dumps need pyarrow: pip install 'imagesim[parquet]' (or 'imagesim[ray]')"
    ) from exc

from imagesim.atomic import fsync_path
from imagesim.errors import FailedPrecondition, Reason

FORMAT = "1"
PREFIX = "imagesim."
ROWS_PER_GROUP = 1024  # rows per row group (and per read batch): ~8 MB of 2048-d float32
CHECKPOINT_ROWS = 4096  # a part file at least this often (rows) ...
CHECKPOINT_SECONDS = 60.0  # ... or this often (seconds), whichever comes first


@dataclass(frozen=True)
class DumpHeader:
    """What made the vectors: kept in the file's metadata, checked before rows are mixed."""

    model_fingerprint: str
    space: str
    runtime: str
    precision: str
    dims: int

    def to_metadata(self) -> dict[bytes, bytes]:
        fields = {
            "format": FORMAT,
            "model_fingerprint": self.model_fingerprint,
            "space": self.space,
            "runtime": self.runtime,
            "precision": self.precision,
            "dims": str(self.dims),
        }
        return {f"{PREFIX}{k}".encode(): v.encode() for k, v in fields.items()}

    @classmethod
    def from_metadata(cls, metadata: Mapping[bytes, bytes] | None, where: Path) -> DumpHeader:
        fields = {
            k.decode().removeprefix(PREFIX): v.decode()
            for k, v in (metadata or {}).items()
            if k.startswith(PREFIX.encode())
        }
        if fields.get("format") != FORMAT:
            raise FailedPrecondition(
                f"{where} is not an imagesim vector dump (format {fields.get('format')!r})"
            )
        try:
            return cls(
                fields["model_fingerprint"],
                fields["space"],
                fields["runtime"],
                fields["precision"],
                int(fields["dims"]),
            )
        except (KeyError, ValueError) as exc:
            raise FailedPrecondition(f"{where}: incomplete dump metadata ({exc})") from None

    def describe(self) -> str:
        return (
            f"{self.dims}-d {self.space} vectors of model {self.model_fingerprint[:12]} on "
            f"{self.runtime}/{self.precision}"
        )

    def check_same(self, other: DumpHeader, where: Path) -> None:
        """FailedPrecondition unless `other` made the same kind of vectors."""
        if other != self:
            raise FailedPrecondition(
                f"{where} holds {self.describe()}; this run makes {other.describe()}: use "
                "another --out (vectors of different models, spaces or runtimes are never mixed "
                "in one dump)",
                reason=Reason.SPACE_MISMATCH,
            )


def schema(header: DumpHeader) -> pa.Schema:
    return pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), header.dims), nullable=False),
            pa.field("metadata", pa.map_(pa.string(), pa.string())),
        ],
        metadata=header.to_metadata(),
    )


def record_batch(
    header: DumpHeader,
    keys: list[str],
    vectors: np.ndarray,
    metadata: list[Mapping[str, str]],
) -> pa.RecordBatch:
    """Rows as one record batch of the dump's schema (vectors: (n, dims) float32)."""
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return pa.RecordBatch.from_arrays(
        [
            pa.array(keys, pa.string()),
            pa.FixedSizeListArray.from_arrays(flat, header.dims),
            pa.array([list(m.items()) for m in metadata], pa.map_(pa.string(), pa.string())),
        ],
        schema=schema(header),
    )


def read_header(path: Path) -> DumpHeader:
    try:
        metadata = pq.read_schema(path).metadata
    except (OSError, pa.ArrowException) as exc:
        raise FailedPrecondition(f"{path} is not a Parquet vector dump: {exc}") from None
    return DumpHeader.from_metadata(metadata, path)


def _batches(path: Path, columns: list[str], rows: int) -> Iterator[pa.RecordBatch]:
    """Record batches of `rows` rows, a row group at a time. (pyarrow's pre-buffering is off:
    it reads ahead across row groups, 110 MB of Arrow memory for an 84 MB file, against 36 MB
    without it, measured.)"""
    try:
        with pq.ParquetFile(path, pre_buffer=False) as file:
            yield from file.iter_batches(batch_size=rows, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise FailedPrecondition(f"cannot read {path}: {exc}") from None


def read_keys(path: Path) -> Iterator[str]:
    """Every key, reading only the key column, a row group at a time."""
    for batch in _batches(path, ["key"], ROWS_PER_GROUP):
        yield from batch.column(0).to_pylist()


def vectors_of(batch: pa.RecordBatch, dims: int) -> np.ndarray:
    """The `vector` column of a batch as (n, dims) float32, without a copy."""
    column = batch.column(batch.schema.get_field_index("vector"))
    values: np.ndarray = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(-1, dims)


def read_rows(
    path: Path, rows: int = ROWS_PER_GROUP
) -> Iterator[tuple[str, np.ndarray, dict[str, str]]]:
    """(key, vector, metadata) of every row, streaming: at most one batch of `rows` rows (and
    the row group it comes from) is in memory at a time."""
    header = read_header(path)
    for batch in _batches(path, ["key", "vector", "metadata"], rows):
        keys = batch.column(0).to_pylist()
        vectors = vectors_of(batch, header.dims)
        metadata = batch.column(2).to_pylist()
        for n, key in enumerate(keys):
            yield key, vectors[n], dict(metadata[n] or ())


class _Writer:
    """A Parquet file written to a temporary name and renamed into place by `commit()`."""

    def __init__(self, path: Path, header: DumpHeader) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.header = header
        self.rows = 0
        self._writer = pq.ParquetWriter(self.tmp, schema(header))

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._writer.write_batch(batch, row_group_size=ROWS_PER_GROUP)
            self.rows += batch.num_rows

    def commit(self) -> None:
        self._writer.close()
        with open(self.tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)
        fsync_path(self.path.parent)

    def abort(self) -> None:
        self._writer.close()
        self.tmp.unlink(missing_ok=True)


class ParquetDumpWriter:
    """Grows the dump at `out` resumably (see the module docstring).

    `known` holds the keys already in the output or in parts left by an interrupted run; the
    caller embeds only the others, `add`s their rows, and calls `finish()` at the end."""

    def __init__(
        self,
        out: Path,
        checkpoint_rows: int = CHECKPOINT_ROWS,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
    ) -> None:
        self.out = Path(out)
        self.parts_dir = self.out.with_name(f".{self.out.name}.parts")
        self.checkpoint_rows = checkpoint_rows
        self.checkpoint_seconds = checkpoint_seconds
        self.header: DumpHeader | None = None
        self.known: set[str] = set()
        self.previous = 0  # rows already in the output
        self.resumed = 0  # rows found in parts of an interrupted run
        self.added = 0  # rows added by this run
        self._pending: list[tuple[str, np.ndarray, Mapping[str, str]]] = []
        self._saved_at = time.monotonic()
        if self.out.exists():
            self.header = read_header(self.out)
            for key in read_keys(self.out):
                self.known.add(key)
                self.previous += 1
        for part in self._parts():
            part_header = read_header(part)
            if self.header is None:
                self.header = part_header
            self.header.check_same(part_header, part)
            for key in read_keys(part):
                if key not in self.known:
                    self.known.add(key)
                    self.resumed += 1

    @property
    def total(self) -> int:
        return self.previous + self.resumed + self.added

    def _parts(self) -> list[Path]:
        if not self.parts_dir.is_dir():
            return []
        return sorted(self.parts_dir.glob("part-*.parquet"))

    def start(self, header: DumpHeader) -> None:
        """Declare what makes this run's vectors; refused if the dump holds other vectors."""
        if self.header is None:
            self.header = header
        else:
            self.header.check_same(header, self.out)

    def add(self, key: str, vector: np.ndarray, metadata: Mapping[str, str]) -> None:
        """One row (a key already known is skipped); checkpoints when due."""
        if self.header is None:
            raise RuntimeError("start() the writer with the run's header before adding rows")
        if key in self.known:
            return
        self.known.add(key)
        self._pending.append((key, vector, metadata))
        self.added += 1
        due = time.monotonic() - self._saved_at >= self.checkpoint_seconds
        if len(self._pending) >= self.checkpoint_rows or due:
            self.checkpoint()

    def add_many(self, rows: Iterable[tuple[str, np.ndarray, Mapping[str, str]]]) -> None:
        for key, vector, metadata in rows:
            self.add(key, vector, metadata)

    def checkpoint(self) -> None:
        """Write the rows added since the last checkpoint as a new part file (atomically)."""
        self._saved_at = time.monotonic()
        if not self._pending or self.header is None:
            return
        self.parts_dir.mkdir(exist_ok=True)
        existing = self._parts()
        number = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        part = _Writer(self.parts_dir / f"part-{number:06d}.parquet", self.header)
        try:
            for start in range(0, len(self._pending), ROWS_PER_GROUP):
                chunk = self._pending[start : start + ROWS_PER_GROUP]
                part.write(
                    record_batch(
                        self.header,
                        [k for k, _, _ in chunk],
                        np.stack([v for _, v, _ in chunk]),
                        [m for _, _, m in chunk],
                    )
                )
            part.commit()
        except BaseException:
            part.abort()
            raise
        self._pending = []

    def finish(self) -> None:
        """Checkpoint, then merge the output and every part into a new output (streamed,
        atomic) and remove the parts. Without any rows and no output yet, writes an empty
        dump if the header is known."""
        self.checkpoint()
        parts = self._parts()
        if self.header is None or (not parts and self.out.exists()):
            return
        merged = _Writer(self.out, self.header)
        try:
            for source in ([self.out] if self.out.exists() else []) + parts:
                for batch in _batches(source, ["key", "vector", "metadata"], ROWS_PER_GROUP):
                    merged.write(_as_schema(batch, self.header))
            merged.commit()
        except BaseException:
            merged.abort()
            raise
        shutil.rmtree(self.parts_dir, ignore_errors=True)


def _as_schema(batch: pa.RecordBatch, header: DumpHeader) -> pa.RecordBatch:
    """The batch with the dump's schema (and its metadata) attached."""
    return pa.RecordBatch.from_arrays(batch.columns, schema=schema(header))


def row_count(path: Path) -> int:
    """Rows in a dump, from its footer alone."""
    try:
        with pq.ParquetFile(path) as file:
            return int(file.metadata.num_rows)
    except (OSError, pa.ArrowException) as exc:
        raise FailedPrecondition(f"cannot read {path}: {exc}") from None
