"""`imagesim-embedder`: the Embedder gRPC server process."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

from imagesim.serving.server import run_server
from imagesim.serving.settings import MiB, configure_logging, server_parser, server_settings

ENV_PREFIX = "IMAGESIM_EMBEDDER_"
DEFAULT_PORT = 50051

log = logging.getLogger("imagesim.embedder")


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
        "--precision",
        "auto",
        "model arithmetic (default auto: bfloat16 where the CPU computes it natively, "
        "AVX512-BF16 or AMX; float32 elsewhere). bfloat16 keeps >= 0.99 of float32's "
        "top-10 neighbours (see README)",
        choices=["float32", "bfloat16", "auto"],
    )
    model.add("--max-batch-size", 32, "largest batch the model runs (default 32)", type=int)
    model.add(
        "--max-batch-time-ms",
        5.0,
        "longest wait for a batch to fill, ms (default 5; "
        "no wait while requests come one at a time)",
        type=float,
    )
    model.add("--max-image-mb", 32.0, "largest accepted image file, MiB (default 32)", type=float)
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
    from imagesim.embedder_server.metrics import EmbedderMetrics, ObservedEmbedder, timed_model
    from imagesim.embedder_server.model import InceptionFeatures
    from imagesim.embedder_server.preprocess import ImageLimits
    from imagesim.embedder_server.servicer import EmbedderServicer
    from imagesim.reduction.reducer import Reducer
    from imagesim.v1 import embedder_pb2, embedder_pb2_grpc

    settings = server_settings(args)
    servicer = EmbedderServicer(stream_limits=settings.stream_limits.to_proto())
    metrics = EmbedderMetrics()

    def load() -> list[Callable[[], None]]:
        features = InceptionFeatures(args.weights, args.precision)  # WeightsUnavailable: exit 2
        reducer = None
        if args.reducer is not None:
            reducer = Reducer.load(args.reducer)
            reducer.check_compatible(features.info.dimension, features.info.fingerprint)
            log.info("reduced space: %s", reducer.description)
        metrics.set_model(features.info)
        model = timed_model(features, metrics)
        batcher = AdaptiveBatcher(model, args.max_batch_size, args.max_batch_time_ms / 1000)
        features.warm_up(tuple(sorted({1, args.max_batch_size})))
        limits = ImageLimits(max_bytes=int(args.max_image_mb * MiB))
        core = Embedder(features, batcher, limits, reducer)
        servicer.attach(ObservedEmbedder(core, metrics))  # type: ignore[arg-type]
        return [batcher.close, servicer.close]  # run in reverse: streams drain, then the model

    run_server(
        settings,
        embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name,
        lambda server: embedder_pb2_grpc.add_EmbedderServicer_to_server(servicer, server),
        load,
        collectors=[metrics],
    )


if __name__ == "__main__":
    main()
