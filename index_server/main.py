"""`imagesim-index`: one Index shard as a gRPC server process."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path

from imagesim.index_server.limits import IndexLimits
from imagesim.serving.server import run_server
from imagesim.serving.settings import configure_logging, server_parser, server_settings

ENV_PREFIX = "IMAGESIM_INDEX_"
DEFAULT_PORT = 50061

log = logging.getLogger("imagesim.index")


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
        "--shard-id",
        None,
        "stable id of this shard, recorded at creation (default: generated); routing places "
        "keys by these ids, e.g. the pod name in a StatefulSet",
    )
    limits = IndexLimits()
    shard.add("--max-key-bytes", limits.max_key_bytes, "longest key, bytes of UTF-8", type=int)
    shard.add(
        "--max-metadata-bytes",
        limits.max_metadata_bytes,
        "largest metadata of one item (keys and values together), bytes of UTF-8",
        type=int,
    )
    shard.add(
        "--max-items-per-request",
        limits.max_items_per_request,
        "most items (Add) or keys (Remove, Contains) in one request",
        type=int,
    )
    shard.add("--max-trees", limits.max_trees, "most Annoy trees a Build may ask for", type=int)
    shard.add("--max-k", limits.max_k, "largest k of a Search", type=int)
    shard.add("--max-search-k", limits.max_search_k, "largest search_k of a Search", type=int)
    shard.add(
        "--max-queries-per-search",
        limits.max_queries_per_search,
        "most query vectors in one Search",
        type=int,
    )
    shard.add(
        "--max-results-per-search",
        limits.max_results_per_search,
        "most neighbours one Search returns in all (k x queries)",
        type=int,
    )
    shard.add("--max-page-size", limits.max_page_size, "largest Scan page", type=int)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level)
    # Per-query numpy work is small: BLAS thread pools would only spin against the other
    # shards and handler threads on the same cores (set these variables to override).
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    from imagesim.enums import Metric
    from imagesim.index_server.metrics import ShardMetrics
    from imagesim.index_server.servicer import IndexServicer
    from imagesim.index_server.shard import Shard, ShardConfig
    from imagesim.v1 import index_pb2, index_pb2_grpc

    settings = server_settings(args)
    servicer = IndexServicer(settings.stream_limits)
    loaded: list[Shard] = []
    metrics = ShardMetrics(lambda: loaded[0].stats() if loaded else None)

    def load() -> list[Callable[[], None]]:
        shard = Shard(
            ShardConfig(
                data_dir=args.data,
                dims=args.dims,
                metric=Metric(args.metric),
                trees=args.trees,
                auto_build=args.auto_build,
                shard_id=args.shard_id,
                project_dims=args.project_dims,
                limits=IndexLimits(
                    max_key_bytes=args.max_key_bytes,
                    max_metadata_bytes=args.max_metadata_bytes,
                    max_items_per_request=args.max_items_per_request,
                    max_trees=args.max_trees,
                    max_k=args.max_k,
                    max_search_k=args.max_search_k,
                    max_queries_per_search=args.max_queries_per_search,
                    max_results_per_search=args.max_results_per_search,
                    max_page_size=args.max_page_size,
                ),
            ),
            observer=metrics,
        )  # a data directory in use, or a layout that contradicts it: exit 2
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
