"""`imagesim`: index a folder of images and query it, over the Embedder and Index services."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from imagesim.client.bulk import index_paths, list_images
from imagesim.client.collection import Collection
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
    index.add_argument("folder", type=Path, metavar="DIR")
    index.add_argument(
        "--chunk-size", type=int, default=128, help="items per Add call to a shard (default 128)"
    )
    index.add_argument(
        "--no-build",
        action="store_true",
        help="leave the new items staged (searched exactly) instead of building",
    )
    index.add_argument("--quiet", action="store_true", help="no progress bar")

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

    build = commands.add_parser("build", parents=[common], help="build every shard's index")
    build.add_argument("--trees", type=int, default=0, help="trees (default: each shard's)")
    stats = commands.add_parser("stats", parents=[common], help="counts and layout per shard")
    stats.add_argument("--json", action="store_true", help="print JSON")
    remove = commands.add_parser("remove", parents=[common], help="remove items by key")
    remove.add_argument("keys", nargs="+", metavar="KEY")
    return parser


def cmd_index(args: argparse.Namespace) -> int:
    if not args.folder.is_dir():
        raise ImagesimError(f"{args.folder} is not a directory")
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
        )
    for path, reason in report.failed:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    shards = ", ".join(f"{a}: {n}" for a, n in report.per_shard.items())
    print(
        f"indexed {report.indexed} of {len(paths)} images in {report.seconds:.1f} s "
        f"({report.rate:.1f} img/s); {len(report.failed)} skipped; per shard: {shards}"
    )
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
        removed, missing = collection.remove(args.keys)
    print(f"removed {removed}; {missing} not found")
    return 0


COMMANDS = {
    "index": cmd_index,
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
