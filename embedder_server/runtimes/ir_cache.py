"""On-disk cache of the OpenVINO IR converted from the Keras model.

An entry is a directory `<root>/<key digest>/` holding `model.xml`, `model.bin` and
`manifest.json`. The key is what makes the IR what it is, all computable without TensorFlow:
the architecture, the weights' identity (sha256 of the weights file, or the seed and Keras
version of the untrained network), the OpenVINO version and this cache's format; an INT8 entry
(the float IR quantized by NNCF, see quantize) adds its quantization: the NNCF version, a hash
of the calibration photos and the number used. The manifest
records the key, the model fingerprint computed from the Keras weights at conversion, the
agreement with TensorFlow float32 measured then, and the size and sha256 of each file.

An entry is used only when its manifest names the same key and every file matches its
checksum; anything else (stale, truncated, edited, half-written) is reported and rebuilt, never
trusted. Entries are written to a temporary directory and renamed into place, so a crash or a
concurrent writer never leaves a half-entry under the final name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imagesim.embedder_server.model import file_sha256

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
IR_FILES = ("model.xml", "model.bin")


@dataclass(frozen=True)
class CacheKey:
    architecture: str
    weights: str  # identity: "sha256=..." or "untrained seed=0 keras=3.15.1"
    openvino: str
    format: int = FORMAT
    # "" for the float IR; "int8 nncf=3.4.0 calibration=<sha256> subset=300" when quantized
    quantization: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The key as stored in the manifest (a float IR's key has no quantization field, as
        before INT8 entries existed, so those entries stay valid)."""
        fields = asdict(self)
        if not self.quantization:
            del fields["quantization"]
        return fields

    @property
    def digest(self) -> str:
        text = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CachedIR:
    """A verified cache entry."""

    directory: Path
    key: CacheKey
    fingerprint: str
    # precision -> {"probes": n, "min_cosine": c, "top10_agreement": a} vs TensorFlow float32
    # on probe images, or vs what "against" says (INT8: OpenVINO float32 on its calibration)
    agreement: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def xml(self) -> Path:
        return self.directory / "model.xml"


class StaleEntry(Exception):
    """The entry on disk is not a valid IR for this key (the message says why)."""


class IRCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    def entry_dir(self, key: CacheKey) -> Path:
        return self.root / key.digest[:32]

    def load(self, key: CacheKey) -> CachedIR | None:
        """The verified entry for `key`, or None if there is none or it cannot be trusted
        (logged with the reason)."""
        directory = self.entry_dir(key)
        if not directory.exists():
            return None
        try:
            return self._verify(directory, key)
        except StaleEntry as exc:
            log.warning("IR cache entry %s not used: %s; converting again", directory, exc)
            return None

    def _verify(self, directory: Path, key: CacheKey) -> CachedIR:
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise StaleEntry(f"unreadable manifest ({exc})") from exc
        if not isinstance(manifest, dict) or manifest.get("key") != key.as_dict():
            raise StaleEntry(f"manifest is for another key: {manifest.get('key')!r}")
        files = manifest.get("files", {})
        for name in IR_FILES:
            path = directory / name
            expected = files.get(name, {})
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise StaleEntry(f"{name} missing ({exc})") from exc
            if size != expected.get("bytes"):
                raise StaleEntry(f"{name} is {size} bytes, not {expected.get('bytes')}")
            if file_sha256(path) != expected.get("sha256"):
                raise StaleEntry(f"{name} does not match its sha256 in the manifest")
        fingerprint = manifest.get("fingerprint")
        if not isinstance(fingerprint, str) or len(fingerprint) != 64:
            raise StaleEntry("manifest has no model fingerprint")
        return CachedIR(directory, key, fingerprint, manifest.get("agreement", {}))

    def store(
        self, key: CacheKey, write_ir: Any, fingerprint: str, extra: dict[str, Any]
    ) -> CachedIR:
        """Write a new entry: `write_ir(xml_path)` saves model.xml + model.bin; `extra` goes
        into the manifest (must hold "agreement"). Replaces a stale entry; if another process
        stored a valid entry meanwhile, keeps that one."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.entry_dir(key)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        try:
            write_ir(tmp / "model.xml")
            files = {}
            for name in IR_FILES:
                path = tmp / name
                files[name] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
            manifest = {
                "key": key.as_dict(),
                "fingerprint": fingerprint,
                "files": files,
                **extra,
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            for name in (*IR_FILES, MANIFEST):
                with open(tmp / name, "rb") as f:
                    os.fsync(f.fileno())
            if final.exists():
                try:
                    return self._verify(final, key)  # a concurrent writer won
                except StaleEntry:
                    trash = Path(tempfile.mkdtemp(prefix=".stale-", dir=self.root))
                    os.replace(final, trash / "entry")
                    shutil.rmtree(trash, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:
                return self._verify(final, key)  # lost a race to another writer
            return self._verify(final, key)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
