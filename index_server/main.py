"""`imagesim-index`: one Index shard as a gRPC server process."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from imagesim.serving.server import GrpcServer
from imagesim.serving.settings import (
    add_server_arguments,
    configure_logging,
    env_default,
    server_settings,
)

ENV_PREFIX = "IMAGESIM_INDEX_"
DEFAULT_PORT = 50061

log = logging.getLogger("imagesim.index")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def env(name: str, default: object) -> object:
        return env_default(ENV_PREFIX, name, default)

    parser = argparse.ArgumentParser(
        prog="imagesim-index",
        description="Index gRPC server: one shard of an Annoy nearest-neighbour collection. "
        f"Every flag can also be set as {ENV_PREFIX}<FLAG> in the environment.",
    )
    add_server_arguments(parser, ENV_PREFIX, DEFAULT_PORT)
    shard = parser.add_argument_group("shard")
    shard.add_argument(
        "--data",
        type=Path,
        default=env("data", None),
        required=env("data", None) is None,
        help="directory holding this shard's items and index generations",
    )
    dims = env("dims", None)
    shard.add_argument(
        "--dims",
        type=int,
        default=int(dims) if dims else None,  # type: ignore[arg-type]
        help="vector dimension (2048 full, 256 reduced); required for a new shard",
    )
    shard.add_argument(
        "--metric",
        default=env("metric", "angular"),
        choices=["angular", "euclidean", "manhattan"],
        help="distance metric (default angular)",
    )
    shard.add_argument(
        "--trees",
        type=int,
        default=int(env("trees", 100)),  # type: ignore[arg-type]
        help="Annoy trees per build (default 100)",
    )
    shard.add_argument(
        "--auto-build",
        type=int,
        default=int(env("auto_build", 20000)),  # type: ignore[arg-type]
        help="build in the background once this many items are staged or "
        "removed since the last build (default 20000; 0 = only on request)",
    )
    shard.add_argument(
        "--shard",
        type=shard_place,
        default=env("shard", None),
        metavar="I/N",
        help="record this shard as number I (from 0) of N in its collection; clients then "
        "refuse a shard list that puts it elsewhere",
    )
    return parser.parse_args(argv)


def shard_place(value: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (e.g. 0/4), not {value!r}") from None
    return index, count


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level)
    from imagesim.errors import ImagesimError
    from imagesim.index_server.servicer import IndexServicer
    from imagesim.index_server.shard import Shard, ShardConfig
    from imagesim.v1 import index_pb2, index_pb2_grpc

    servicer = IndexServicer()
    service_name = index_pb2.DESCRIPTOR.services_by_name["Index"].full_name
    server = GrpcServer(
        server_settings(args),
        {service_name: lambda s: index_pb2_grpc.add_IndexServicer_to_server(servicer, s)},
    )
    server.install_signal_handlers()
    server.start()
    try:
        shard = Shard(
            ShardConfig(args.data, args.dims, args.metric, args.trees, args.auto_build, args.shard)
        )
    except ImagesimError as exc:
        log.error("%s", exc.message)
        server.stop()
        sys.exit(2)
    servicer.attach(shard)
    server.on_stop(shard.close)
    server.set_serving()
    server.wait()


if __name__ == "__main__":
    main()
