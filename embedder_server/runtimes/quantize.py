"""The float OpenVINO IR -> INT8 (`--precision int8`): NNCF post-training quantization,
calibrated on photos.

Calibration photos: a folder the user names (`--calibration DIR`: a few hundred photos of their
own data, searched recursively by extension), or by default the bundled sample photos
(scikit-image's sample images with their near-duplicate variants, imagesim.samples),
written once into the model cache. Each photo is decoded and resized exactly as the Embedder
serves it (preprocess.decode_batch); the quantized IR takes the served uint8
batch with the model's input scaling in its graph (openvino.with_uint8_input), so calibration
sees what serving sees.

The INT8 IR is an entry of the IR cache beside the float one, keyed by the float IR's key plus
the NNCF version, a hash of the calibration set (each file's name, size and sha256) and the
number of photos used: a second start loads it without quantizing. Quantizing runs in a child
process (`python -m imagesim.embedder_server.runtimes.quantize ...`), so NNCF's memory never
stays in the serving process; so does writing the sample photos (scikit-image).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from imagesim.embedder_server.model import file_sha256
from imagesim.embedder_server.runtimes.ir_cache import CachedIR, CacheKey, IRCache
from imagesim.enums import Precision
from imagesim.errors import FailedPrecondition, ImagesimError, Internal
from imagesim.images import IMAGE_SUFFIXES, list_images
from imagesim.recall import row_cosines, top_k_agreement

log = logging.getLogger(__name__)

MAX_CALIBRATION = 300  # photos used at most (NNCF's default subset size)
SAMPLES_DIR = "calibration-samples"  # under the model cache: the default calibration set
ERROR_PREFIX = "imagesim-quantize-error: "


def nncf_version() -> str:
    """NNCF's version without importing it; FailedPrecondition when it is not installed."""
    try:
        return importlib.metadata.version("nncf")
    except importlib.metadata.PackageNotFoundError:
        raise FailedPrecondition(
            "--precision int8 needs NNCF: pip install 'imagesim[embedder]'"
        ) from None


def calibration_files(folder: Path) -> list[Path]:
    """The calibration photos in `folder` (at most MAX_CALIBRATION, in sorted order);
    FailedPrecondition naming the folder when it is missing or holds no image."""

    if not folder.is_dir():
        raise FailedPrecondition(f"--calibration {folder}: not a directory of photos")
    files = list_images(folder)[:MAX_CALIBRATION]
    if not files:
        raise FailedPrecondition(
            f"--calibration {folder}: no images in it (files ending in "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}); give a few hundred photos of your own data"
        )
    return files


def calibration_digest(folder: Path, files: list[Path]) -> str:
    """sha256 over each calibration file's relative name, size and sha256."""
    digest = hashlib.sha256()
    for path in files:
        name = path.relative_to(folder).as_posix()
        digest.update(f"{name}\0{path.stat().st_size}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def quantized_key(float_key: CacheKey, folder: Path) -> CacheKey:
    files = calibration_files(folder)
    quantization = (
        f"int8 nncf={nncf_version()} calibration={calibration_digest(folder, files)} "
        f"subset={len(files)}"
    )
    return replace(float_key, quantization=quantization)


def sample_photos_dir(cache: IRCache) -> Path:
    """The default calibration set, written once into the cache (in a child process: the
    photos come from scikit-image)."""
    folder = cache.root / SAMPLES_DIR
    if not folder.is_dir():
        run_child(["--write-samples", str(folder)], "writing the sample calibration photos")
    return folder


def write_samples(folder: Path) -> None:
    """Write the sample photos to `folder` atomically (a temporary folder renamed)."""
    try:
        import skimage  # noqa: F401

        from imagesim.samples import write_sample_photos
    except ImportError:
        raise FailedPrecondition(
            "--precision int8 without --calibration calibrates on the bundled sample photos, "
            "which come from scikit-image: pip install 'imagesim[demo]', or pass "
            "--calibration DIR (a few hundred photos of your own data)"
        ) from None
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-samples-", dir=folder.parent))
    try:
        for path in write_sample_photos(tmp):
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        try:
            os.rename(tmp, folder)
        except OSError:
            if not folder.is_dir():  # not a concurrent writer's finished folder
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def quantize(float_entry: CachedIR, folder: Path, cache: IRCache) -> CachedIR:
    """Quantize the float IR on the photos in `folder`; measure INT8 against OpenVINO float32
    on them; store the entry (imports NNCF)."""
    import nncf

    from imagesim.embedder_server.model import INPUT_SIZE
    from imagesim.embedder_server.preprocess import decode_batch
    from imagesim.embedder_server.runtimes.openvino import (
        compile_ir,
        import_openvino,
        with_uint8_input,
    )

    ov = import_openvino()
    files = calibration_files(folder)
    key = quantized_key(float_entry.key, folder)
    pixels, errors = decode_batch([path.read_bytes() for path in files], INPUT_SIZE)
    bad = [f"{path.name}: {error}" for path, error in zip(files, errors, strict=True) if error]
    for line in bad:
        log.warning("calibration photo left out: %s", line)
    photos = pixels[[not error for error in errors]]
    if len(photos) == 0:
        raise FailedPrecondition(f"--calibration {folder}: no photo in it decodes: {bad[:3]}")
    started = time.perf_counter()
    model = with_uint8_input(ov.Core().read_model(float_entry.xml))
    quantized = nncf.quantize(
        model,
        nncf.Dataset(list(photos), lambda image: image[np.newaxis]),
        subset_size=len(photos),
    )
    seconds = time.perf_counter() - started
    log.info("quantized on %d photos in %.1f s", len(photos), seconds)
    reference = compile_ir(float_entry.xml, Precision.FLOAT32)({0: photos})[0]
    vectors = compile_ir(quantized, Precision.INT8)({0: photos})[0]
    agreement = {
        "probes": len(photos),
        "against": f"OpenVINO float32 on its {len(photos)} calibration photos in {folder}",
        "min_cosine": float(row_cosines(reference, vectors).min()),
        "top10_agreement": top_k_agreement(reference, vectors, min(10, len(photos) - 1)),
    }
    log.info("OpenVINO int8 vs float32: %s", agreement)
    return cache.store(
        key,
        lambda xml: ov.save_model(quantized, str(xml), compress_to_fp16=False),
        float_entry.fingerprint,
        {
            "agreement": {Precision.INT8.value: agreement},
            "quantized": {
                "seconds": round(seconds, 2),
                "nncf": nncf.__version__,
                "openvino": ov.get_version(),
                "calibration": str(folder),
                "photos": len(photos),
                "left_out": bad,
            },
        },
    )


def run_child(args: list[str], what: str) -> None:
    """Run this module in a child process; its ImagesimError comes back with its message."""
    started = time.perf_counter()
    log.info("%s ...", what)
    result = subprocess.run([sys.executable, "-m", __name__, *args], capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    if result.returncode == 2 and errors:
        raise FailedPrecondition(json.loads(errors[-1].removeprefix(ERROR_PREFIX)))
    if result.returncode != 0:
        raise Internal(f"{what} failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    log.info("%s: done in %.1f s", what, time.perf_counter() - started)


def load_quantized(float_entry: CachedIR, calibration: Path | None, cache: IRCache) -> CachedIR:
    """The INT8 entry for the float IR calibrated on `calibration` (default: the sample
    photos), quantized once in a child process when the cache has none."""
    nncf_version()
    folder = (calibration or sample_photos_dir(cache)).expanduser().absolute()
    key = quantized_key(float_entry.key, folder)
    entry = cache.load(key)
    if entry is not None:
        log.info("OpenVINO INT8 IR from cache %s", entry.directory)
        return entry
    float_dir = str(float_entry.directory)
    run_child(
        ["--float-entry", float_dir, "--calibration", str(folder), "--cache", str(cache.root)],
        f"quantizing the IR to INT8 on the photos in {folder} (once)",
    )
    entry = cache.load(key)
    if entry is None:
        raise Internal(f"the INT8 IR quantized into {cache.root} cannot be read back")
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write-samples", type=Path)
    parser.add_argument("--float-entry", type=Path)
    parser.add_argument("--calibration", type=Path)
    parser.add_argument("--cache", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.write_samples:
            write_samples(args.write_samples)
            return
        cache = IRCache(args.cache)
        manifest = json.loads((args.float_entry / "manifest.json").read_text())
        float_entry = cache.load(CacheKey(**manifest["key"]))
        if float_entry is None:
            raise Internal(f"the float IR in {args.float_entry} is not a valid cache entry")
        entry = quantize(float_entry, args.calibration, cache)
    except ImagesimError as exc:
        print(ERROR_PREFIX + json.dumps(exc.message), file=sys.stderr, flush=True)
        sys.exit(2)
    print(json.dumps({"directory": str(entry.directory)}))


if __name__ == "__main__":
    main()
