"""`imagesim-index`: one Index shard as a gRPC server process."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path

from imagesim.serving.server import run_server
from imagesim.serving.settings import configure_logging, server_parser, server_settings

ENV_PREFIX = "IMAGESIM_INDEX_"
DEFAULT_PORT = 50061

log = logging.getLogger("imagesim.index")


def shard_place(value: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (e.g. 0/4), not {value!r}") from None
    return index, count


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser, shard = server_parser(
        "imagesim-index",
        "Index gRPC server: one shard of an Annoy nearest-neighbour collection.",
        ENV_PREFIX,
        DEFAULT_PORT,
    )
    shard.add(
        "--data",
        None,
        "directory holding this shard's items and index generations",
        type=Path,
        required=True,
    )
    shard.add(
        "--dims",
        None,
        "vector dimension (2048 full, 256 reduced); required for a new shard",
        type=int,
    )
    shard.add(
        "--metric",
        "angular",
        "distance metric (default angular)",
        choices=["angular", "euclidean", "manhattan"],
    )
    shard.add("--trees", 100, "Annoy trees per build (default 100)", type=int)
    shard.add(
        "--auto-build",
        20_000,
        "build in the background once this many items are staged "
        "or removed since the last build (default 20000; 0 = only on request)",
        type=int,
    )
    shard.add(
        "--project-dims",
        0,
        "build Annoy over a PCA projection of the vectors to this "
        "many dims and re-rank its candidates exactly in the full space (0 = off; e.g. "
        "256 for 2048-d vectors)",
        type=int,
    )
    shard.add(
        "--shard",
        None,
        "record this shard as number I (from 0) of N in its collection; "
        "clients then refuse a shard list that puts it elsewhere",
        type=shard_place,
        metavar="I/N",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level)
    # Per-query numpy work is small: BLAS thread pools would only spin against the other
    # shards and handler threads on the same cores (set these variables to override).
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    from imagesim.index_server.servicer import IndexServicer
    from imagesim.index_server.shard import Shard, ShardConfig
    from imagesim.v1 import index_pb2, index_pb2_grpc

    servicer = IndexServicer()

    def load() -> list[Callable[[], None]]:
        shard = Shard(
            ShardConfig(
                data_dir=args.data,
                dims=args.dims,
                metric=args.metric,
                trees=args.trees,
                auto_build=args.auto_build,
                shard=args.shard,
                project_dims=args.project_dims,
            )
        )  # a layout that contradicts the data directory: exit 2
        servicer.attach(shard)
        return [shard.close]

    run_server(
        server_settings(args),
        index_pb2.DESCRIPTOR.services_by_name["Index"].full_name,
        lambda server: index_pb2_grpc.add_IndexServicer_to_server(servicer, server),
        load,
    )


if __name__ == "__main__":
    main()
