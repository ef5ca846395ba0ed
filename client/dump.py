"""A vector dump: keys, float32 vectors and metadata in one .npz, embedded once (`imagesim
dump`) or exported from a collection (`imagesim export`); or, for large runs, one Parquet file
(bulk.parquet_dump: written in checkpoints and read as a stream).

Re-running a dump on a grown folder embeds only the files not in the dump yet. The dump records
the embedding model's fingerprint (empty for an export: shards do not know it) and the space,
and refuses to mix vectors of another model.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagesim.atomic import write_atomic
from imagesim.bulk.common import BulkReport
from imagesim.client.bulk import embed_files
from imagesim.client.embedder_client import EmbedderClient, ModelIdentity
from imagesim.enums import Space
from imagesim.errors import FailedPrecondition, Reason
from imagesim.images import list_images


@dataclass
class VectorDump:
    keys: list[str]
    vectors: np.ndarray  # (n, dims) float32
    model_fingerprint: str
    space: str
    metadata: list[dict[str, str]] | None = None  # one per key, if kept

    @property
    def dims(self) -> int:
        return int(self.vectors.shape[1])

    @classmethod
    def load(cls, path: Path) -> VectorDump:
        try:
            with np.load(path, allow_pickle=False) as data:
                metadata = None
                if "metadata" in data.files:
                    metadata = [json.loads(str(m)) for m in data["metadata"]]
                return cls(
                    keys=[str(k) for k in data["keys"]],
                    vectors=data["vectors"].astype(np.float32, copy=False),
                    model_fingerprint=str(data["model_fingerprint"]),
                    space=str(data["space"]),
                    metadata=metadata,
                )
        except (OSError, KeyError, ValueError) as exc:
            raise FailedPrecondition(f"{path} is not a vector dump: {exc}") from exc

    def save(self, path: Path) -> None:
        """Write atomically: a crash never leaves a half-written dump in place."""
        arrays = {
            "keys": np.array(self.keys, dtype=np.str_),
            "vectors": self.vectors.astype(np.float32, copy=False),
            "model_fingerprint": np.array(self.model_fingerprint),
            "space": np.array(self.space),
        }
        if self.metadata is not None:
            arrays["metadata"] = np.array([json.dumps(m) for m in self.metadata], dtype=np.str_)
        write_atomic(Path(path), lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def dump_folder(
    folder: Path,
    embedder: EmbedderClient,
    out: Path,
    space: Space = Space.FULL,
    progress: bool = True,
    checkpoint_seconds: float = 60.0,
    streams: int | None = None,
) -> tuple[VectorDump, BulkReport]:
    """Embed the images under `folder` not yet in `out` and save the grown dump (also every
    `checkpoint_seconds`, atomically). Returns the dump and this run's report."""
    started = time.monotonic()
    space = Space(space)
    fingerprint = embedder.info().model_fingerprint
    dims = embedder.dimension(space)
    if out.exists():
        dump = VectorDump.load(out)
        if dump.model_fingerprint != fingerprint or dump.space != space.value:
            raise FailedPrecondition(
                f"{out} holds {dump.space} vectors of model {dump.model_fingerprint[:12]}; the "
                f"embedder makes {space.value} vectors of model {fingerprint[:12]}: use another "
                "--out",
                reason=Reason.SPACE_MISMATCH,
            )
    else:
        empty = np.empty((0, dims), dtype=np.float32)
        dump = VectorDump([], empty, fingerprint, space.value, [])
    known = set(dump.keys)
    paths = [p for p in list_images(folder) if str(p) not in known]
    report = BulkReport(already=len(known))
    keys: list[str] = []
    vectors: list[np.ndarray] = []
    metadata: list[dict[str, str]] = []
    saved_at = time.monotonic()

    def grown() -> VectorDump:
        if not keys:
            return dump
        stacked = np.concatenate([dump.vectors, np.stack(vectors)])
        kept = None if dump.metadata is None else dump.metadata + metadata
        return VectorDump(dump.keys + keys, stacked, fingerprint, space.value, kept)

    embedded = embed_files(paths, embedder, report, space, progress=progress, streams=streams)
    for key, vector, meta in embedded:
        keys.append(key)
        vectors.append(vector)
        metadata.append(meta)
        report.done += 1
        if time.monotonic() - saved_at > checkpoint_seconds:  # an interruption loses little
            dump = grown()
            dump.save(out)
            keys, vectors, metadata, saved_at = [], [], [], time.monotonic()
    if keys or not out.exists():
        dump = grown()
        dump.save(out)
    report.seconds = time.monotonic() - started
    return dump, report


def dump_folder_parquet(
    folder: Path,
    embedder: EmbedderClient,
    out: Path,
    space: Space = Space.FULL,
    progress: bool = True,
    streams: int | None = None,
) -> tuple[int, BulkReport]:
    """`dump_folder` into a Parquet dump (checkpointed, atomic, resumable: see
    bulk.parquet_dump). Returns the dump's row count and this run's report."""
    from imagesim.bulk.parquet_dump import DumpHeader, ParquetDumpWriter

    started = time.monotonic()
    space = Space(space)
    model = ModelIdentity.of(embedder.info())
    header = DumpHeader(
        model.fingerprint, space.value, model.runtime, model.precision, embedder.dimension(space)
    )
    writer = ParquetDumpWriter(out)
    writer.start(header)
    paths = [p for p in list_images(folder) if str(p) not in writer.known]
    report = BulkReport(already=len(writer.known))
    try:
        embedded = embed_files(paths, embedder, report, space, progress=progress, streams=streams)
        for key, vector, meta in embedded:
            writer.add(key, vector, meta)
            report.done += 1
    finally:
        writer.checkpoint()  # what was embedded is kept, even if the run failed
    writer.finish()
    report.seconds = time.monotonic() - started
    return writer.total, report
