"""The CLI's collection commands: `index` (a folder, or a dump with --from-dump), `export`,
`build`, `stats`, `remove` and `reshard`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np

from imagesim import reserved
from imagesim.bulk.common import BulkReport
from imagesim.channel import addresses
from imagesim.client.bulk import add_vectors, index_paths
from imagesim.client.cli.args import (
    Parents,
    UsageError,
    add_command,
    pair,
    require_directory,
)
from imagesim.client.cli.common import is_parquet, model_of, parquet_module, print_report, warn
from imagesim.client.collection import Collection
from imagesim.client.dump import VectorDump
from imagesim.client.embedder_client import EmbedderClient
from imagesim.client.reshard import Resharder
from imagesim.client.rpc import DEFAULT_TIMEOUT
from imagesim.errors import ImagesimError
from imagesim.images import list_images
from imagesim.types import CollectionTotals


def register(commands: argparse._SubParsersAction, parents: Parents) -> None:
    index = add_command(
        commands,
        "index",
        cmd_index,
        [parents.common, parents.embedding, parents.bulk],
        help="embed every image under DIR and add it to the shards",
    )
    index.add_argument(
        "folder",
        type=Path,
        metavar="DIR",
        nargs="?",
        help="folder of images (or give --from-dump)",
    )
    index.add_argument(
        "--from-dump",
        type=Path,
        metavar="FILE",
        help="add the vectors of a dump (`imagesim dump` or `export`: .npz, or .parquet read "
        "as a stream) instead of embedding",
    )
    index.add_argument(
        "--meta",
        type=pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata added to every item (repeatable); file_size, width, height and mtime "
        "are always stored",
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

    export = add_command(
        commands,
        "export",
        cmd_export,
        [parents.common],
        help="write the whole collection (keys, vectors, metadata)",
    )
    export.add_argument("--out", type=Path, required=True, help="the file (.npz)")

    build = add_command(
        commands, "build", cmd_build, [parents.common], help="build every shard's index"
    )
    build.add_argument("--trees", type=int, default=0, help="trees (default: each shard's)")
    stats = add_command(
        commands,
        "stats",
        cmd_stats,
        [parents.common],
        help="counts and layout per shard and in all",
    )
    stats.add_argument("--json", action="store_true", help="print JSON")
    remove = add_command(
        commands, "remove", cmd_remove, [parents.common], help="remove items by key"
    )
    remove.add_argument("keys", nargs="+", metavar="KEY")
    reshard = add_command(
        commands,
        "reshard",
        cmd_reshard,
        help="move the collection from the --from shards to the --to shards without loss "
        "(resumable: run it again after an interruption)",
    )
    reshard.add_argument(
        "--from", dest="old", type=addresses, required=True, metavar="HOST:PORT,..."
    )
    reshard.add_argument("--to", dest="new", type=addresses, required=True, metavar="HOST:PORT,...")
    reshard.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="per call")


def cmd_index(args: argparse.Namespace) -> int:
    if args.from_dump is not None:
        return index_dump(args)
    if args.folder is None:
        raise UsageError("give a folder of images (DIR) or --from-dump FILE")
    paths = list_images(require_directory(args.folder))
    if not paths:
        raise ImagesimError(f"no image files under {args.folder}")
    with (
        EmbedderClient(args.embedder, args.timeout) as embedder,
        Collection(args.shards, args.timeout) as collection,
    ):
        collection.check_dims(embedder.dimension(args.space))
        warn(collection.check_model(*model_of(embedder.info())))
        report = index_paths(
            paths,
            embedder,
            collection,
            args.space,
            args.chunk_size,
            progress=not args.quiet,
            build=not args.no_build,
            resume=not args.reindex,
            extra_metadata=dict(args.meta),
            streams=args.streams,
        )
    print_report(report, "indexed", len(paths), args.report)
    return 0


def index_dump(args: argparse.Namespace) -> int:
    extra = dict(args.meta)
    if is_parquet(args.from_dump):
        parquet = parquet_module()
        header = parquet.read_header(args.from_dump)
        dims = header.dims
        made_by = (header.model_fingerprint, header.runtime, header.precision)
        total = parquet.row_count(args.from_dump)
        rows: Iterable[tuple[str, np.ndarray, Mapping[str, str]]] = parquet.read_rows(
            args.from_dump
        )
    else:
        dump = VectorDump.load(args.from_dump)
        dims, total = dump.dims, len(dump.keys)
        made_by = (dump.model_fingerprint, "", "")
        rows = zip(dump.keys, dump.vectors, dump.metadata or [{} for _ in dump.keys], strict=True)
    tags = reserved.model_tags(*made_by)  # rows made before tagging get the dump's own
    with Collection(args.shards, args.timeout) as collection:
        collection.check_dims(dims)
        warn(collection.check_model(*made_by))
        report = add_vectors(
            ((key, vector, {**tags, **meta, **extra}) for key, vector, meta in rows),
            collection,
            BulkReport(),
            args.chunk_size,
            build=not args.no_build,
        )
    print_report(report, "indexed", total)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    with Collection(args.shards, args.timeout) as collection:
        collection.connect()
        keys, vectors, metadata = [], [], []
        for item in collection.scan(include_vectors=True):
            keys.append(item.key)
            vectors.append(item.vector)
            metadata.append(item.metadata)
        dims = collection.dims
    matrix = np.stack(vectors) if vectors else np.empty((0, dims), dtype=np.float32)
    VectorDump(keys, matrix, "", "", metadata).save(args.out)
    print(f"{args.out}: {len(keys)} items ({dims}-d)")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    with Collection(args.shards, args.timeout) as collection:
        for built in collection.build(args.trees):
            print(
                f"{built.shard}: generation {built.generation}, {built.count} items, "
                f"{built.trees} trees, {built.seconds:.2f} s"
            )
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with Collection(args.shards, args.timeout) as collection:
        shards = collection.stats()
    rows = [status.row() for status in shards]
    total = asdict(CollectionTotals.of(shards))
    if args.json:
        print(json.dumps({"shards": rows, "total": total}, indent=2))
        return 0
    for s in rows:
        print(
            f"{s['shard']} ({s['shard_id']}): {s['count']} items ({s['built_count']} built, "
            f"{s['staged']} staged, {s['hidden']} hidden), {s['dimension']}-d {s['metric']}, "
            f"generation {s['generation']}, {s['trees']} trees"
            f"{', building' if s['building'] else ''}"
            f"{'; last build failed: ' + s['last_build_error'] if s['last_build_error'] else ''}"
        )
    made_by = ", ".join(f"{k} ({n})" for k, n in sorted(total["embedded_by"].items()))
    print(
        f"total: {total['count']} items in {total['shards']} shards ({total['built_count']} "
        f"built, {total['staged']} staged, {total['hidden']} hidden), "
        f"{total['index_bytes'] / 1e6:.1f} MB of index"
        + (f"; embedded on {made_by}" if made_by else "")
    )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    with Collection(args.shards, args.timeout) as collection:
        removed, missing = collection.remove(args.keys)
    print(f"removed {removed}; {missing} not found")
    return 0


def cmd_reshard(args: argparse.Namespace) -> int:
    with Resharder(args.old, args.new, args.timeout) as resharder:
        report = resharder.run()
    resumed = " (resumed an interrupted run)" if report.resumed else ""
    print(
        f"reshard done{resumed}: {report.moved} items moved, {report.scanned} scanned; layout "
        f"version {report.layout.version}: {', '.join(report.layout.shard_ids)}"
    )
    return 0
