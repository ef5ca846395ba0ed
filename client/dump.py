"""A vector dump: a folder's keys and float32 vectors in one .npz, embedded once.

Re-running on a grown folder embeds only the files not in the dump yet. The dump records the
embedding model's fingerprint and the space, and refuses to mix vectors of another model.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagesim.client.bulk import BulkReport, embed_files, list_images
from imagesim.client.embedder_client import EmbedderClient
from imagesim.errors import FailedPrecondition


@dataclass
class VectorDump:
    keys: list[str]
    vectors: np.ndarray  # (n, dims) float32
    model_fingerprint: str
    space: str

    @property
    def dims(self) -> int:
        return int(self.vectors.shape[1])

    @classmethod
    def load(cls, path: Path) -> VectorDump:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    keys=[str(k) for k in data["keys"]],
                    vectors=data["vectors"].astype(np.float32, copy=False),
                    model_fingerprint=str(data["model_fingerprint"]),
                    space=str(data["space"]),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise FailedPrecondition(f"{path} is not a vector dump: {exc}") from exc

    def save(self, path: Path) -> None:
        """Write atomically: a crash never leaves a half-written dump in place."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            np.savez(
                f,
                keys=np.array(self.keys, dtype=np.str_),
                vectors=self.vectors.astype(np.float32, copy=False),
                model_fingerprint=np.array(self.model_fingerprint),
                space=np.array(self.space),
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def dump_folder(
    folder: Path,
    embedder: EmbedderClient,
    out: Path,
    space: str = "full",
    progress: bool = True,
    checkpoint_seconds: float = 60.0,
) -> tuple[VectorDump, BulkReport]:
    """Embed the images under `folder` not yet in `out` and save the grown dump (also every
    `checkpoint_seconds`, atomically). Returns the dump and this run's report."""
    started = time.monotonic()
    fingerprint = embedder.info().model_fingerprint
    dims = embedder.dimension(space)
    if out.exists():
        dump = VectorDump.load(out)
        if dump.model_fingerprint != fingerprint or dump.space != space:
            raise FailedPrecondition(
                f"{out} holds {dump.space} vectors of model {dump.model_fingerprint[:12]}; the "
                f"embedder makes {space} vectors of model {fingerprint[:12]}: use another --out"
            )
    else:
        dump = VectorDump([], np.empty((0, dims), dtype=np.float32), fingerprint, space)
    known = set(dump.keys)
    paths = [p for p in list_images(folder) if str(p) not in known]
    report = BulkReport(already=len(known))
    keys: list[str] = []
    vectors: list[np.ndarray] = []
    saved_at = time.monotonic()

    def grown() -> VectorDump:
        if not keys:
            return dump
        stacked = np.concatenate([dump.vectors, np.stack(vectors)])
        return VectorDump(dump.keys + keys, stacked, fingerprint, space)

    for key, vector in embed_files(paths, embedder, report, space, progress=progress):
        keys.append(key)
        vectors.append(vector)
        report.done += 1
        if time.monotonic() - saved_at > checkpoint_seconds:  # an interruption loses little
            dump = grown()
            dump.save(out)
            keys, vectors, saved_at = [], [], time.monotonic()
    if keys or not out.exists():
        dump = grown()
        dump.save(out)
    report.seconds = time.monotonic() - started
    return dump, report
