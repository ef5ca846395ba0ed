"""`imagesim-embedder`: the Embedder gRPC server process."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path

from imagesim.embedder_server.preprocess import ImageLimits
from imagesim.serving.server import run_server
from imagesim.serving.settings import MiB, configure_logging, server_parser, server_settings

ENV_PREFIX = "IMAGESIM_EMBEDDER_"
DEFAULT_PORT = 50051

log = logging.getLogger("imagesim.embedder")


def batch_time(value: str) -> float | None:
    """Milliseconds, or "auto" (None)."""
    return None if value == "auto" else float(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser, model = server_parser(
        "imagesim-embedder",
        "Embedder gRPC server: image bytes in, InceptionV3 feature vector out.",
        ENV_PREFIX,
        DEFAULT_PORT,
    )
    model.add(
        "--weights",
        "imagenet",
        "'imagenet' (default: Keras' ImageNet weights, downloaded once and cached), a path "
        "to a weights file, or 'none' (untrained, seeded network: tests and offline use)",
    )
    model.add(
        "--runtime",
        "auto",
        "inference runtime (default auto: OpenVINO where it is installed and supports the CPU, "
        "TensorFlow otherwise or where TensorFlow sees a GPU)",
        choices=["auto", "openvino", "tensorflow"],
    )
    model.add(
        "--precision",
        "auto",
        "model arithmetic, mapped to the runtime's own setting (default auto: bfloat16 where "
        "the CPU computes it natively, AVX512-BF16 or AMX, and it kept >= 0.99 of float32's "
        "top-10 neighbours; float32 elsewhere). int8 (OpenVINO only, never chosen by auto): "
        "the model quantized once by NNCF on --calibration photos; faster, its vectors are "
        "not mixed with float vectors in a collection",
        choices=["float32", "bfloat16", "int8", "auto"],
    )
    model.add(
        "--calibration",
        None,
        "folder of photos --precision int8 is calibrated on: a few hundred of your own data "
        "(searched recursively, up to 300 used; default: the bundled sample photos, which "
        "need scikit-image). Quantized once per model, folder content and NNCF version, cached "
        "in --model-cache",
        type=Path,
    )
    model.add(
        "--model-cache",
        None,
        "directory of the converted OpenVINO models (default $KERAS_HOME/imagesim-ir, "
        "i.e. ~/.keras/imagesim-ir); checked on every start, rebuilt when stale or corrupt",
        type=Path,
    )
    model.add(
        "--max-batch-size",
        16,
        "largest batch the model runs (default 16: OpenVINO bf16 gets 96%% of batch 32's "
        "throughput at 110 MB less memory and half the longest batch time)",
        type=int,
    )
    model.add(
        "--max-batch-time-ms",
        "auto",
        "longest wait for a batch to fill, ms (default auto: a quarter of the model's "
        "batch-1 time, at most 5 ms; no wait while requests come one at a time)",
        type=batch_time,
    )
    model.add(
        "--decode-threads",
        max(2, os.cpu_count() or 1),
        "images decoded at once (default: the number of CPUs, at least 2)",
        type=int,
    )
    model.add(
        "--decode-budget-mpx",
        ImageLimits.decode_budget_pixels / 1e6,
        "megapixels being decoded at once across all requests; an image that does not fit "
        f"waits up to {ImageLimits.decode_wait_seconds:g} s, then gets RESOURCE_EXHAUSTED "
        f"(default {ImageLimits.decode_budget_pixels / 1e6:g}: at most ~1.6 GB of decode memory)",
        type=float,
    )
    model.add("--max-image-mb", 32.0, "largest accepted image file, MiB (default 32)", type=float)
    model.add(
        "--max-decoded-mb",
        ImageLimits.max_decoded_bytes / MiB,
        "largest image once decoded, MiB, counted with its mode's bytes per pixel (default "
        f"{ImageLimits.max_decoded_bytes / MiB:g}: 32 Mpx RGB, 64 Mpx 16-bit grey)",
        type=float,
    )
    model.add(
        "--reducer",
        None,
        "directory of a reducer (`imagesim reducer train`): also serve the reduced space",
        type=Path,
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level)
    # Heavy imports after argument parsing, so --help is instant.
    from imagesim.embedder_server.batcher import AdaptiveBatcher
    from imagesim.embedder_server.embedder import Embedder
    from imagesim.embedder_server.metrics import EmbedderMetrics, timed_model
    from imagesim.embedder_server.runtimes.base import warm_up
    from imagesim.embedder_server.runtimes.select import load_runtime
    from imagesim.embedder_server.servicer import EmbedderServicer
    from imagesim.reduction.reducer import Reducer
    from imagesim.v1 import embedder_pb2, embedder_pb2_grpc

    settings = server_settings(args)
    servicer = EmbedderServicer(stream_limits=settings.stream_limits)
    metrics = EmbedderMetrics()

    def load() -> list[Callable[[], None]]:
        # WeightsUnavailable / FailedPrecondition: logged, exit 2
        runtime = load_runtime(
            args.weights, args.runtime, args.precision, args.model_cache, args.calibration
        )
        info = runtime.info
        reducer = None
        if args.reducer is not None:
            reducer = Reducer.load(args.reducer)
            reducer.check_compatible(info.dimension, info.fingerprint)
            log.info("reduced space: %s", reducer.description)
        metrics.set_model(info)
        timings = warm_up(runtime, tuple(sorted({1, args.max_batch_size})))
        batch_ms = args.max_batch_time_ms
        if batch_ms is None:
            batch_ms = min(5.0, timings[1] * 1000 / 4)
        batcher = AdaptiveBatcher(
            timed_model(runtime, metrics), args.max_batch_size, batch_ms / 1000, metrics.queued
        )
        limits = ImageLimits(
            max_bytes=int(args.max_image_mb * MiB),
            max_decoded_bytes=int(args.max_decoded_mb * MiB),
            decode_budget_pixels=int(args.decode_budget_mpx * 1e6),
        )
        core = Embedder(runtime, batcher, limits, reducer, args.decode_threads, metrics)
        servicer.attach(core)
        log.info(
            "%s on %s %s, fingerprint %s, weights %s%s; batches up to %d, wait %.1f ms; "
            "%d decode threads, decode budget %.0f Mpx",
            info.name,
            info.runtime.value,
            info.precision.value,
            info.fingerprint[:12],
            info.weights,
            " (UNTRAINED, seed 0: vectors carry no meaning)" if info.untrained else "",
            args.max_batch_size,
            batch_ms,
            args.decode_threads,
            limits.decode_budget_pixels / 1e6,
        )
        for note in info.notes:
            log.info("model note: %s", note)
        return [batcher.close, core.close]  # run in reverse: decoders drain, then the model

    run_server(
        settings,
        embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name,
        lambda server: embedder_pb2_grpc.add_EmbedderServicer_to_server(servicer, server),
        load,
        collectors=[metrics],
    )


if __name__ == "__main__":
    main()
