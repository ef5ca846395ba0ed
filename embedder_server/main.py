"""`imagesim-embedder`: the Embedder gRPC server process."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from imagesim.embedder_server.settings import EmbedderSettings
from imagesim.serving.server import run_server
from imagesim.serving.settings import configure_logging, server_parser, server_settings
from imagesim.settings_base import add_arguments, from_args

ENV_PREFIX = "IMAGESIM_EMBEDDER_"
DEFAULT_PORT = 50051

log = logging.getLogger("imagesim.embedder")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = server_parser(
        "imagesim-embedder",
        "Embedder gRPC server: image bytes in, InceptionV3 feature vector out.",
        ENV_PREFIX,
        DEFAULT_PORT,
    )
    add_arguments(parser, EmbedderSettings, ENV_PREFIX, "embedder")
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
    from imagesim.heap import release_free_memory
    from imagesim.reduction.reducer import Reducer
    from imagesim.v1 import embedder_pb2, embedder_pb2_grpc

    settings = server_settings(args)
    model = from_args(EmbedderSettings, args)
    servicer = EmbedderServicer(stream_limits=settings.stream_limits)
    metrics = EmbedderMetrics()

    def load() -> list[Callable[[], None]]:
        # WeightsUnavailable / FailedPrecondition: logged, exit 2
        runtime = load_runtime(
            model.weights, model.runtime, model.precision, model.model_cache, model.calibration
        )
        info = runtime.info
        reducer = None
        if model.reducer is not None:
            reducer = Reducer.load(model.reducer)
            reducer.check_compatible(info.dimension, info.fingerprint)
            log.info("reduced space: %s", reducer.description)
        metrics.set_model(info)
        timings = warm_up(runtime, tuple(sorted({1, model.max_batch_size})))
        batch_ms = model.max_batch_time_ms
        if batch_ms is None:
            batch_ms = min(5.0, timings[1] * 1000 / 4)
        batcher = AdaptiveBatcher(
            timed_model(runtime, metrics),
            model.max_batch_size,
            batch_ms / 1000,
            metrics.queued,
            # Decoded images and batches freed in a burst, back to the kernel once it is over.
            on_idle=release_free_memory,
        )
        limits = model.limits
        core = Embedder(runtime, batcher, limits, reducer, model.decode_threads, metrics)
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
            model.max_batch_size,
            batch_ms,
            model.decode_threads,
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
