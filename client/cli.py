"""`imagesim`: index a folder of images and query it, over the Embedder and Index services."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from imagesim.client.bulk import (
    BulkReport,
    add_vectors,
    index_paths,
    list_images,
    write_failures,
)
from imagesim.client.collection import Collection
from imagesim.client.dump import VectorDump, dump_folder
from imagesim.client.embedder_client import EmbedderClient
from imagesim.client.rpc import DEFAULT_TIMEOUT
from imagesim.errors import ImagesimError

DEFAULT_EMBEDDER = os.environ.get("IMAGESIM_EMBEDDER", "127.0.0.1:50051")
DEFAULT_SHARDS = os.environ.get("IMAGESIM_SHARDS", "127.0.0.1:50061")


def _shards(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagesim", description="Image similarity search: index a folder, query an image."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--shards",
        type=_shards,
        default=_shards(DEFAULT_SHARDS),
        help="Index shards, HOST:PORT[,HOST:PORT...] in a fixed order "
        f"(env IMAGESIM_SHARDS, default {DEFAULT_SHARDS})",
    )
    common.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"deadline per call in seconds (default {DEFAULT_TIMEOUT:g})",
    )
    embedding = argparse.ArgumentParser(add_help=False)
    embedding.add_argument(
        "--embedder",
        default=DEFAULT_EMBEDDER,
        help=f"Embedder HOST:PORT (env IMAGESIM_EMBEDDER, default {DEFAULT_EMBEDDER})",
    )
    embedding.add_argument(
        "--space",
        choices=["full", "reduced"],
        default="full",
        help="vector space: full (2048-d) or reduced (needs a reducer)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    index = commands.add_parser(
        "index",
        parents=[common, embedding],
        help="embed every image under DIR and add it to the shards",
    )
    index.add_argument(
        "folder", type=Path, metavar="DIR", nargs="?", help="folder of images (or give --from-dump)"
    )
    index.add_argument(
        "--from-dump",
        type=Path,
        metavar="NPZ",
        help="add the vectors of a dump (`imagesim dump`) instead of embedding",
    )
    index.add_argument(
        "--chunk-size", type=int, default=128, help="items per Add call to a shard (default 128)"
    )
    index.add_argument(
        "--no-build",
        action="store_true",
        help="leave the new items staged (searched exactly) instead of building",
    )
    index.add_argument("--quiet", action="store_true", help="no progress bar")
    index.add_argument(
        "--reindex",
        action="store_true",
        help="embed every file again (default: skip keys the shards hold, so an "
        "interrupted run resumes)",
    )
    index.add_argument(
        "--report",
        type=Path,
        default=Path("imagesim-failed.tsv"),
        help="where to list failed files (default imagesim-failed.tsv)",
    )

    query = commands.add_parser(
        "query", parents=[common, embedding], help="the indexed images most similar to IMAGE"
    )
    query.add_argument("image", type=Path, metavar="IMAGE")
    query.add_argument("-k", type=int, default=10, help="how many results (default 10)")
    query.add_argument(
        "--search-k", type=int, default=-1, help="Annoy nodes to inspect (default: Annoy's own)"
    )
    query.add_argument(
        "--rerank", action="store_true", help="re-rank a larger candidate pool by exact distance"
    )
    query.add_argument(
        "--allow-partial",
        action="store_true",
        help="if a shard fails, return the others' results and name it",
    )
    query.add_argument("--json", action="store_true", help="print JSON")

    dump = commands.add_parser(
        "dump", parents=[embedding], help="embed a folder once into a vector dump (.npz)"
    )
    dump.add_argument("folder", type=Path, metavar="DIR")
    dump.add_argument("--out", type=Path, required=True, help="the dump file (.npz)")
    dump.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    dump.add_argument("--quiet", action="store_true", help="no progress bar")
    dump.add_argument(
        "--report",
        type=Path,
        default=Path("imagesim-failed.tsv"),
        help="where to list failed files (default imagesim-failed.tsv)",
    )

    reducer = commands.add_parser("reducer", help="train or evaluate a 256-d reduction")
    reducer_commands = reducer.add_subparsers(dest="reducer_command", required=True)
    train = reducer_commands.add_parser("train", help="train a reducer on a dump")
    train.add_argument("dump", type=Path, metavar="NPZ")
    train.add_argument("--method", choices=["pca", "autoencoder"], required=True)
    train.add_argument("--dims", type=int, default=256, help="output dimension (default 256)")
    train.add_argument(
        "--whiten", action="store_true", help="PCA: scale components to unit variance"
    )
    train.add_argument(
        "--epochs",
        type=int,
        default=200,
        help="autoencoder: most epochs (early stopping usually ends sooner)",
    )
    train.add_argument("--out", type=Path, required=True, help="directory for the reducer")
    evaluate = reducer_commands.add_parser(
        "eval", help="neighbour recall, Annoy recall and latency of each reduced space"
    )
    evaluate.add_argument("dump", type=Path, metavar="NPZ")
    evaluate.add_argument("reducers", type=Path, nargs="+", metavar="REDUCER_DIR")
    evaluate.add_argument("-k", type=int, default=10)
    evaluate.add_argument("--queries", type=int, default=500, help="held-out queries at most")
    evaluate.add_argument("--trees", type=int, default=50, help="Annoy trees per space")

    build = commands.add_parser("build", parents=[common], help="build every shard's index")
    build.add_argument("--trees", type=int, default=0, help="trees (default: each shard's)")
    stats = commands.add_parser("stats", parents=[common], help="counts and layout per shard")
    stats.add_argument("--json", action="store_true", help="print JSON")
    remove = commands.add_parser("remove", parents=[common], help="remove items by key")
    remove.add_argument("keys", nargs="+", metavar="KEY")
    return parser


def cmd_index(args: argparse.Namespace) -> int:
    if args.from_dump is not None:
        return index_dump(args)
    if args.folder is None or not args.folder.is_dir():
        raise ImagesimError(f"{args.folder} is not a directory (or give --from-dump)")
    paths = list_images(args.folder)
    if not paths:
        raise ImagesimError(f"no image files under {args.folder}")
    with (
        EmbedderClient(args.embedder, args.timeout) as embedder,
        Collection(args.shards, args.timeout) as collection,
    ):
        collection.check_layout(embedder.dimension(args.space))
        report = index_paths(
            paths,
            embedder,
            collection,
            args.space,
            args.chunk_size,
            progress=not args.quiet,
            build=not args.no_build,
            resume=not args.reindex,
        )
    print_report(report, "indexed", len(paths), args.report)
    return 0


def index_dump(args: argparse.Namespace) -> int:
    dump = VectorDump.load(args.from_dump)
    with Collection(args.shards, args.timeout) as collection:
        collection.check_layout(dump.dims)
        report = add_vectors(
            zip(dump.keys, dump.vectors, strict=True),
            collection,
            BulkReport(),
            args.chunk_size,
            build=not args.no_build,
        )
    print_report(report, "indexed", len(dump.keys))
    return 0


def print_report(report: BulkReport, done: str, total: int, failures: Path | None = None) -> None:
    for path, reason in report.failed[:20]:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if len(report.failed) > 20:
        print(f"... and {len(report.failed) - 20} more", file=sys.stderr)
    if report.failed and failures is not None:
        write_failures(report, failures)
        print(f"failed files listed in {failures}", file=sys.stderr)
    if report.already:
        print(f"{report.already} images were already done (previous run)")
    shards = ", ".join(f"{address}: {n}" for address, n in report.per_shard.items())
    shards = f"; per shard: {shards}" if shards else ""
    print(
        f"{done} {report.done} of {total} images in {report.seconds:.1f} s "
        f"({report.rate:.1f} img/s); {len(report.failed)} skipped{shards}"
    )


def cmd_dump(args: argparse.Namespace) -> int:
    if not args.folder.is_dir():
        raise ImagesimError(f"{args.folder} is not a directory")
    with EmbedderClient(args.embedder, args.timeout) as embedder:
        dump, report = dump_folder(
            args.folder, embedder, args.out, args.space, progress=not args.quiet
        )
    print_report(report, "embedded", report.done + len(report.failed), args.report)
    print(f"{args.out}: {len(dump.keys)} vectors ({dump.dims}-d {dump.space})")
    return 0


def cmd_reducer(args: argparse.Namespace) -> int:
    from imagesim.embedder_server.reducer import Reducer, train_autoencoder, train_pca
    from imagesim.embedder_server.reducer_eval import evaluate, format_table, holdout_mask

    dump = VectorDump.load(args.dump)
    if args.reducer_command == "train":
        training = dump.vectors[~holdout_mask(dump.keys)]
        if args.method == "pca":
            reducer = train_pca(training, args.dims, dump.model_fingerprint, whiten=args.whiten)
        else:
            try:
                reducer = train_autoencoder(
                    training, args.dims, dump.model_fingerprint, save_to=args.out
                )
            except ImportError as exc:
                raise ImagesimError(
                    f"the autoencoder needs Keras: pip install 'imagesim[embedder]' ({exc})"
                ) from None
        reducer.save(args.out)
        print(f"{args.out}: {reducer.description}; metrics {reducer.spec.metrics}")
        return 0
    reducers = {}
    for directory in args.reducers:
        reducer = Reducer.load(directory)
        reducer.check_compatible(dump.dims, dump.model_fingerprint)
        reducers[f"{directory.name} ({reducer.spec.method})"] = reducer
    reports = evaluate(dump.keys, dump.vectors, reducers, args.k, args.queries, args.trees)
    queries = min(int(holdout_mask(dump.keys).sum()), args.queries)
    print(format_table(reports, args.k, queries))
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    try:
        image = args.image.read_bytes()
    except OSError as exc:
        raise ImagesimError(f"cannot read {args.image}: {exc.strerror or exc}") from None
    with (
        EmbedderClient(args.embedder, args.timeout) as embedder,
        Collection(args.shards, args.timeout) as collection,
    ):
        vector = embedder.embed(image, args.space)
        collection.check_layout(vector.shape[0], allow_missing=args.allow_partial)
        result = collection.search(
            vector, args.k, args.search_k, args.rerank, allow_partial=args.allow_partial
        )
    for address, error in result.missing.items():
        print(f"warning: shard {address} missing from the results: {error}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                [
                    {"rank": rank, "key": n.key, "distance": n.distance, "shard": n.shard}
                    for rank, n in enumerate(result.neighbors, 1)
                ],
                indent=2,
            )
        )
    else:
        print(f"{'rank':>4}  {'distance':>8}  key")
        for rank, n in enumerate(result.neighbors, 1):
            print(f"{rank:>4}  {n.distance:>8.4f}  {n.key}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    with Collection(args.shards, args.timeout) as collection:
        for address, reply in zip(collection.addresses, collection.build(args.trees), strict=True):
            print(
                f"{address}: generation {reply.generation}, {reply.count} items, "
                f"{reply.trees} trees, {reply.seconds:.2f} s"
            )
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    with Collection(args.shards, args.timeout) as collection:
        stats = collection.stats()
        rows = [
            {"shard": a, **MessageToDict(s, always_print_fields_with_no_presence=True)}
            for a, s in zip(collection.addresses, stats, strict=True)
        ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for s in rows:
        print(
            f"{s['shard']}: {s['count']} items ({s['builtCount']} built, {s['staged']} staged, "
            f"{s['removed']} hidden), {s['dimension']}-d {s['metric']}, generation "
            f"{s['generation']}, {s['trees']} trees{', building' if s['building'] else ''}"
        )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    with Collection(args.shards, args.timeout) as collection:
        collection.check_layout()
        removed, missing = collection.remove(args.keys)
    print(f"removed {removed}; {missing} not found")
    return 0


COMMANDS = {
    "index": cmd_index,
    "dump": cmd_dump,
    "reducer": cmd_reducer,
    "query": cmd_query,
    "build": cmd_build,
    "stats": cmd_stats,
    "remove": cmd_remove,
}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        sys.exit(COMMANDS[args.command](args))
    except ImagesimError as exc:
        print(f"imagesim: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("imagesim: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
