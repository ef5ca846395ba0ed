"""`imagesim-embedder`: the Embedder gRPC server process."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from imagesim.serving.server import GrpcServer
from imagesim.serving.settings import (
    MiB,
    add_server_arguments,
    configure_logging,
    env_default,
    server_settings,
)

ENV_PREFIX = "IMAGESIM_EMBEDDER_"
DEFAULT_PORT = 50051

log = logging.getLogger("imagesim.embedder")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def env(name: str, default: object) -> object:
        return env_default(ENV_PREFIX, name, default)

    parser = argparse.ArgumentParser(
        prog="imagesim-embedder",
        description="Embedder gRPC server: image bytes in, InceptionV3 feature vector out. "
        f"Every flag can also be set as {ENV_PREFIX}<FLAG> in the environment.",
    )
    add_server_arguments(parser, ENV_PREFIX, DEFAULT_PORT)
    model = parser.add_argument_group("model")
    model.add_argument(
        "--weights",
        default=env("weights", "imagenet"),
        help="'imagenet' (default: Keras' ImageNet weights, downloaded once and cached), a path "
        "to a weights file, or 'none' (untrained, seeded network: tests and offline use only)",
    )
    model.add_argument(
        "--precision",
        default=env("precision", "float32"),
        choices=["float32", "bfloat16", "auto"],
        help="model arithmetic; auto = bfloat16 where the CPU has native bf16",
    )
    model.add_argument(
        "--max-batch-size",
        type=int,
        default=int(env("max_batch_size", 32)),  # type: ignore[arg-type]
        help="largest batch the model runs (default 32)",
    )
    model.add_argument(
        "--max-batch-time-ms",
        type=float,
        default=float(env("max_batch_time_ms", 5.0)),  # type: ignore[arg-type]
        help="longest wait for a batch to fill, ms (default 5)",
    )
    model.add_argument(
        "--max-image-mb",
        type=float,
        default=float(env("max_image_mb", 32)),  # type: ignore[arg-type]
        help="largest accepted image file, MiB (default 32)",
    )
    model.add_argument(
        "--reducer",
        type=Path,
        default=env("reducer", None),
        help="directory of a reducer (`imagesim reducer train`): also serve the reduced space",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level)
    # Heavy imports after argument parsing, so --help is instant.
    from imagesim.embedder_server.batcher import AdaptiveBatcher
    from imagesim.embedder_server.embedder import Embedder
    from imagesim.embedder_server.model import InceptionFeatures
    from imagesim.embedder_server.preprocess import ImageLimits
    from imagesim.embedder_server.servicer import EmbedderServicer
    from imagesim.errors import ImagesimError
    from imagesim.v1 import embedder_pb2, embedder_pb2_grpc

    servicer = EmbedderServicer()
    service_name = embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name
    server = GrpcServer(
        server_settings(args),
        {service_name: lambda s: embedder_pb2_grpc.add_EmbedderServicer_to_server(servicer, s)},
    )
    server.install_signal_handlers()
    server.start()
    try:
        features = InceptionFeatures(args.weights, args.precision)
    except ImagesimError as exc:  # WeightsUnavailable: the message says how to fix it
        log.error("%s", exc.message)
        server.stop()
        sys.exit(2)
    reducer = None
    if args.reducer is not None:
        from imagesim.embedder_server.reducer import Reducer

        try:
            reducer = Reducer.load(args.reducer)
            reducer.check_compatible(features.info.dimension, features.info.fingerprint)
        except ImagesimError as exc:
            log.error("refusing reducer %s: %s", args.reducer, exc.message)
            server.stop()
            sys.exit(2)
        log.info("reduced space: %s", reducer.description)
    batcher = AdaptiveBatcher(features, args.max_batch_size, args.max_batch_time_ms / 1000.0)
    features.warm_up(tuple(sorted({1, args.max_batch_size})))
    limits = ImageLimits(max_bytes=int(args.max_image_mb * MiB))
    servicer.attach(Embedder(features, batcher, limits, reducer))
    server.on_stop(batcher.close)
    server.on_stop(servicer.close)
    server.set_serving()
    server.wait()


if __name__ == "__main__":
    main()
