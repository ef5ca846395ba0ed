"""Keras model -> OpenVINO IR, once, into the IR cache; with the agreement of each OpenVINO
precision with TensorFlow float32 measured on probe images and recorded in the manifest.

The server runs this in a child process (`python -m imagesim.embedder_server.runtimes.convert
--weights SPEC --cache DIR`), so TensorFlow's memory never stays in the serving process.
Exit code 2 with the message on stderr when the weights cannot be had.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imagesim.embedder_server.model import (
    INPUT_SIZE,
    WeightsSource,
    build_keras_model,
    keras_fingerprint,
)
from imagesim.embedder_server.runtimes.ir_cache import CachedIR, IRCache
from imagesim.embedder_server.runtimes.openvino import (
    cache_key,
    compile_ir,
    import_openvino,
    native_bf16,
)
from imagesim.enums import Precision
from imagesim.errors import ImagesimError, Internal
from imagesim.recall import row_cosines, top_k_agreement

log = logging.getLogger(__name__)

PROBES = 48
ERROR_PREFIX = "imagesim-convert-error: "


def probe_images(count: int = PROBES, seed: int = 0) -> np.ndarray:
    """Deterministic photo-like uint8 images (n, 299, 299, 3): smooth colour fields of random
    coarseness with a few hard-edged shapes."""
    rng = np.random.default_rng(seed)
    width, height = INPUT_SIZE
    images = []
    for _ in range(count):
        cells = int(rng.integers(2, 24))
        small = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
        pixels = np.array(image)
        for _ in range(int(rng.integers(0, 4))):
            x0, y0 = rng.integers(0, width - 40, size=2)
            x1, y1 = x0 + rng.integers(20, 120), y0 + rng.integers(20, 120)
            pixels[y0:y1, x0:x1] = rng.integers(0, 256, 3)
        images.append(pixels)
    return np.stack(images)


def convert(weights: WeightsSource, cache: IRCache) -> CachedIR:
    """Build the Keras model, convert it, measure agreement, store the entry (imports
    TensorFlow)."""
    ov = import_openvino()
    started = time.perf_counter()
    model = build_keras_model(weights, "float32")
    key = cache_key(weights)
    if key is None:
        raise Internal("the weights file is still missing after loading the model")
    ov_model = ov.convert_model(model)
    convert_s = time.perf_counter() - started
    probes = probe_images()
    reference = model(probes.astype(np.float32) / 127.5 - 1.0, training=False).numpy()
    precisions = [Precision.FLOAT32] + ([Precision.BFLOAT16] if native_bf16() else [])
    agreement = {}
    for precision in precisions:
        vectors = compile_ir(ov_model.clone(), precision)({0: probes})[0]
        agreement[precision.value] = {
            "probes": len(probes),
            "min_cosine": float(row_cosines(reference, vectors).min()),
            "top10_agreement": top_k_agreement(reference, vectors, 10),
        }
        log.info("OpenVINO %s vs TensorFlow float32: %s", precision, agreement[precision.value])
    import keras
    import tensorflow as tf

    return cache.store(
        key,
        lambda xml: ov.save_model(ov_model, str(xml), compress_to_fp16=False),
        keras_fingerprint(model),
        {
            "agreement": agreement,
            "converted": {
                "seconds": round(convert_s, 2),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "openvino": ov.get_version(),
                "weights": weights.spec,
            },
        },
    )


def convert_in_subprocess(weights: WeightsSource, cache: IRCache) -> None:
    """Run `convert` in a child process; its ImagesimError comes back with its message."""
    started = time.perf_counter()
    log.info("converting %s weights to OpenVINO IR in %s (once) ...", weights.spec, cache.root)
    result = subprocess.run(
        [sys.executable, "-m", __name__, "--weights", weights.spec, "--cache", str(cache.root)],
        capture_output=True,
        text=True,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    if result.returncode == 2 and errors:
        from imagesim.embedder_server.model import WeightsUnavailable

        raise WeightsUnavailable(json.loads(errors[-1].removeprefix(ERROR_PREFIX)))
    if result.returncode != 0:
        raise Internal(f"IR conversion failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    log.info("converted in %.1f s", time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--cache", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    try:
        entry = convert(WeightsSource(args.weights), IRCache(args.cache))
    except ImagesimError as exc:
        print(ERROR_PREFIX + json.dumps(exc.message), file=sys.stderr, flush=True)
        sys.exit(2)
    print(json.dumps({"directory": str(entry.directory), "fingerprint": entry.fingerprint}))


if __name__ == "__main__":
    main()
