"""`imagesim-index`: one Index shard as a gRPC server process."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable

from imagesim.index_server.settings import ShardConfig
from imagesim.serving.server import run_server
from imagesim.serving.settings import configure_logging, server_parser, server_settings
from imagesim.settings_base import add_arguments, from_args

ENV_PREFIX = "IMAGESIM_INDEX_"
DEFAULT_PORT = 50061

log = logging.getLogger("imagesim.index")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = server_parser(
        "imagesim-index",
        "Index gRPC server: one shard of an Annoy nearest-neighbour collection.",
        ENV_PREFIX,
        DEFAULT_PORT,
    )
    add_arguments(parser, ShardConfig, ENV_PREFIX, "index")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level)
    # Per-query numpy work is small: BLAS thread pools would only spin against the other
    # shards and handler threads on the same cores (set these variables to override).
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    from imagesim.index_server.metrics import ShardMetrics
    from imagesim.index_server.servicer import IndexServicer
    from imagesim.index_server.shard import Shard
    from imagesim.v1 import index_pb2, index_pb2_grpc

    settings = server_settings(args)
    servicer = IndexServicer(settings.stream_limits)
    loaded: list[Shard] = []
    metrics = ShardMetrics(lambda: loaded[0].stats() if loaded else None)

    def load() -> list[Callable[[], None]]:
        # a data directory in use, or a layout that contradicts it: exit 2
        shard = Shard(from_args(ShardConfig, args), observer=metrics)
        loaded.append(shard)
        servicer.attach(shard)
        return [shard.close]

    run_server(
        settings,
        index_pb2.DESCRIPTOR.services_by_name["Index"].full_name,
        lambda server: index_pb2_grpc.add_IndexServicer_to_server(servicer, server),
        load,
        collectors=[metrics],
    )


if __name__ == "__main__":
    main()
