"""`imagesim`: index a folder of images and query it, over the Embedder and Index services.

Runs on the client install alone (grpcio, protobuf, numpy, pillow, tqdm): reduction commands
import their extra's modules lazily and name the extra when it is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from imagesim import reserved
from imagesim.client.bulk import (
    DNS_STREAMS,
    BulkReport,
    add_vectors,
    index_paths,
    write_failures,
)
from imagesim.client.cli_args import (
    UsageError,
    enum_type,
    pair,
    require_directory,
    shards,
    values,
)
from imagesim.client.collection import Collection, SearchResult
from imagesim.client.curate_commands import CURATE_COMMANDS, add_curate_commands
from imagesim.client.dump import VectorDump, dump_folder
from imagesim.client.embedder_client import EmbedderClient, ModelIdentity
from imagesim.client.picture_commands import (
    add_duplicates_command,
    cmd_duplicates,
    sheet_options,
    write_query_sheets,
    write_similar_sheet,
)
from imagesim.client.reshard import Resharder
from imagesim.client.rpc import DEFAULT_TIMEOUT, Deadline, set_default_security
from imagesim.client.security_flags import add_security_flags, security_from_args
from imagesim.enums import Space
from imagesim.errors import FailedPrecondition, ImagesimError, InvalidArgument
from imagesim.images import list_images
from imagesim.params import DEFAULT_RERANK_FACTOR, SearchParams
from imagesim.types import EmbedderInfo
from imagesim.version import add_version_flag

DEFAULT_EMBEDDER = os.environ.get("IMAGESIM_EMBEDDER", "127.0.0.1:50051")
DEFAULT_SHARDS = os.environ.get("IMAGESIM_SHARDS", "127.0.0.1:50061")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagesim", description="Image similarity search: index a folder, query an image."
    )
    add_version_flag(parser)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--shards",
        type=shards,
        default=shards(DEFAULT_SHARDS),
        help="Index shards, HOST:PORT[,HOST:PORT...], every shard of the collection in any "
        f"order (env IMAGESIM_SHARDS, default {DEFAULT_SHARDS})",
    )
    common.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"one deadline for the whole command's calls, seconds (default {DEFAULT_TIMEOUT:g}; "
        "bulk commands: per call)",
    )
    embedding = argparse.ArgumentParser(add_help=False)
    embedding.add_argument(
        "--embedder",
        default=DEFAULT_EMBEDDER,
        help="Embedder HOST:PORT, or replicas: HOST:PORT,HOST:PORT,... or dns:///NAME:PORT "
        "(one channel balanced round-robin over them; env IMAGESIM_EMBEDDER, default "
        f"{DEFAULT_EMBEDDER})",
    )
    embedding.add_argument(
        "--space",
        type=enum_type(Space, "the space"),
        choices=values(Space),  # shown as {full,reduced}
        default=Space.FULL,
        help="vector space: full (2048-d) or reduced (needs a reducer)",
    )
    bulk = argparse.ArgumentParser(add_help=False)
    bulk.add_argument(
        "--streams",
        type=int,
        default=None,
        metavar="N",
        help="embed streams open at once (default: one per replica named by --embedder, "
        f"{DNS_STREAMS} for a dns:/// name); a stream that breaks is replaced and its "
        "unanswered images are sent again",
    )
    searching = argparse.ArgumentParser(add_help=False)
    searching.add_argument("-k", type=int, default=10, help="how many results (default 10)")
    searching.add_argument(
        "--search-k", type=int, default=0, help="Annoy nodes to inspect (default: Annoy's own)"
    )
    searching.add_argument(
        "--rerank",
        type=int,
        nargs="?",
        const=DEFAULT_RERANK_FACTOR,
        default=1,
        metavar="FACTOR",
        help="re-rank a FACTOR x k candidate pool by exact distance "
        f"(FACTOR defaults to {DEFAULT_RERANK_FACTOR})",
    )
    searching.add_argument(
        "--max-distance",
        type=float,
        metavar="D",
        help="only neighbours at most this far (may return fewer than k)",
    )
    searching.add_argument(
        "--where",
        type=pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only items whose metadata has KEY=VALUE (repeatable: all must match)",
    )
    searching.add_argument(
        "--metadata", action="store_true", help="print each neighbour's metadata"
    )
    searching.add_argument(
        "--allow-partial",
        action="store_true",
        help="if a shard fails, return the others' results and name it",
    )
    searching.add_argument("--json", action="store_true", help="print JSON")
    pictures = sheet_options()
    commands = parser.add_subparsers(dest="command", required=True)

    index = commands.add_parser(
        "index",
        parents=[common, embedding, bulk],
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

    query = commands.add_parser(
        "query",
        parents=[common, embedding, searching, pictures],
        help="the indexed images most similar to each IMAGE",
    )
    query.add_argument("images", type=Path, nargs="+", metavar="IMAGE")

    similar = commands.add_parser(
        "similar",
        parents=[common, searching, pictures],
        help="more like this: the neighbours of an indexed item KEY (itself left out)",
    )
    similar.add_argument("key", metavar="KEY")

    dump = commands.add_parser(
        "dump",
        parents=[embedding, bulk],
        help="embed a folder once into a vector dump (.npz or .parquet); a re-run embeds only "
        "the files not in it yet",
    )
    dump.add_argument("folder", type=Path, metavar="DIR")
    dump.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the dump file: .npz, or .parquet (written in checkpoints; needs the parquet or "
        "ray extra)",
    )
    dump.add_argument(
        "--engine",
        choices=["grpc", "ray"],
        default="grpc",
        help="grpc (default): send the images to --embedder; ray: embed on Ray Data, the model "
        "loaded in actors (needs `pip install 'imagesim[ray]'` and --out NAME.parquet)",
    )
    dump.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    dump.add_argument("--quiet", action="store_true", help="no progress bar")
    dump.add_argument(
        "--report",
        type=Path,
        default=Path("imagesim-failed.tsv"),
        help="where to list failed files (default imagesim-failed.tsv)",
    )

    ray = dump.add_argument_group("--engine ray")
    ray.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="the Ray cluster to run on (e.g. ray://head:10001 or HEAD:6379; default: a private "
        "local Ray on this machine)",
    )
    ray.add_argument(
        "--actors", type=int, default=1, help="model actors, each holding the model (default 1)"
    )
    ray.add_argument(
        "--batch-size", type=int, default=32, help="images per model call (default 32)"
    )
    ray.add_argument(
        "--cpus-per-actor",
        type=float,
        default=1.0,
        help="Ray CPUs each actor reserves (default 1; the model's own threads use the node)",
    )
    ray.add_argument(
        "--weights", default="imagenet", help="as imagesim-embedder --weights (default imagenet)"
    )
    ray.add_argument(
        "--runtime",
        default="auto",
        choices=["auto", "openvino", "tensorflow"],
        help="as imagesim-embedder --runtime (default auto)",
    )
    ray.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "float32", "bfloat16", "int8"],
        help="as imagesim-embedder --precision (default auto)",
    )
    ray.add_argument(
        "--calibration",
        default=None,
        help="as imagesim-embedder --calibration: photos --precision int8 is calibrated on "
        "(on each node at the same path; default: the bundled sample photos)",
    )
    ray.add_argument(
        "--model-cache",
        default=None,
        help="OpenVINO IR cache on each node (default: as imagesim-embedder, "
        "$IMAGESIM_EMBEDDER_MODEL_CACHE or ~/.keras/imagesim-ir)",
    )

    export = commands.add_parser(
        "export", parents=[common], help="write the whole collection (keys, vectors, metadata)"
    )
    export.add_argument("--out", type=Path, required=True, help="the file (.npz)")

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
    stats = commands.add_parser(
        "stats", parents=[common], help="counts and layout per shard and in all"
    )
    stats.add_argument("--json", action="store_true", help="print JSON")
    remove = commands.add_parser("remove", parents=[common], help="remove items by key")
    remove.add_argument("keys", nargs="+", metavar="KEY")
    reshard = commands.add_parser(
        "reshard",
        help="move the collection from the --from shards to the --to shards without loss "
        "(resumable: run it again after an interruption)",
    )
    reshard.add_argument("--from", dest="old", type=shards, required=True, metavar="HOST:PORT,...")
    reshard.add_argument("--to", dest="new", type=shards, required=True, metavar="HOST:PORT,...")
    reshard.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="per call")
    add_duplicates_command(commands, [common])
    add_curate_commands(commands, common, [embedding, bulk])
    add_security_flags(parser)
    return parser


def search_params(args: argparse.Namespace) -> SearchParams:
    return SearchParams(
        k=args.k,
        search_k=args.search_k,
        rerank_factor=args.rerank,
        max_distance=args.max_distance,
        where=dict(args.where),
        include_metadata=args.metadata,
    )


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


def parquet_module() -> Any:
    """client.parquet_dump, or an error naming the extra that brings pyarrow."""
    try:
        from imagesim.client import parquet_dump
    except ImportError as exc:
        raise FailedPrecondition(str(exc)) from None
    return parquet_dump


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() == ".parquet"


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
    if report.streams_broken:
        print(
            f"{report.streams_broken} embed streams broke and were replaced; "
            f"{report.resent} images were sent again (none lost)"
        )
    shards = ", ".join(f"{address}: {n}" for address, n in report.per_shard.items())
    shards = f"; per shard: {shards}" if shards else ""
    print(
        f"{done} {report.done} of {total} images in {report.seconds:.1f} s "
        f"({report.rate:.1f} img/s); {len(report.failed)} skipped{shards}"
    )
    if report.build_skipped:
        print(
            f"not built ({report.build_skipped}): the items are searchable now (staged, searched "
            "exactly); each shard builds them in the background once enough are staged "
            "(imagesim-index --auto-build), or an admin key runs `imagesim build`"
        )


def cmd_dump(args: argparse.Namespace) -> int:
    require_directory(args.folder)
    if args.engine == "ray":
        return ray_dump_command(args)
    parquet = is_parquet(args.out)
    if parquet:
        parquet_module()  # pyarrow is there, or the error names the extra
    with EmbedderClient(args.embedder, args.timeout) as embedder:
        progress, streams = not args.quiet, args.streams
        if parquet:
            from imagesim.client.dump import dump_folder_parquet

            rows, report = dump_folder_parquet(
                args.folder, embedder, args.out, args.space, progress=progress, streams=streams
            )
            written = f"{rows} vectors"
        else:
            dump, report = dump_folder(
                args.folder, embedder, args.out, args.space, progress=progress, streams=streams
            )
            written = f"{len(dump.keys)} vectors ({dump.dims}-d {dump.space})"
    print_report(report, "embedded", report.done + len(report.failed), args.report)
    print(f"{args.out}: {written}")
    return 0


RAY_EXTRA_HINT = "--engine ray needs Ray Data and pyarrow: pip install 'imagesim[ray]'"


def ray_dump_command(args: argparse.Namespace) -> int:
    """`dump --engine ray`: Ray is imported only here (the extra may not be installed)."""
    if not is_parquet(args.out):
        raise UsageError("the Ray engine writes Parquet: give --out NAME.parquet")
    try:
        from imagesim.client import ray_dump
        from imagesim.embedder_server.batch_inference import ModelSpec

        ray_dump.import_ray()
    except ImportError:
        raise FailedPrecondition(RAY_EXTRA_HINT) from None
    writer, report = ray_dump.ray_dump(
        args.folder,
        args.out,
        ModelSpec(args.weights, args.runtime, args.precision, args.model_cache, args.calibration),
        ray_dump.RaySettings(
            address=args.ray_address,
            actors=args.actors,
            batch_size=args.batch_size,
            cpus_per_actor=args.cpus_per_actor,
        ),
        args.space,
        progress=not args.quiet,
    )
    print_report(report, "embedded", report.done + len(report.failed), args.report)
    where = f"Ray at {args.ray_address}" if args.ray_address else "a local Ray"
    header = writer.header.describe() if writer.header else "no vectors"
    print(f"{args.out}: {writer.total} vectors ({header}); {args.actors} actors on {where}")
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


def cmd_reducer(args: argparse.Namespace) -> int:
    from imagesim.reduction.evaluate import evaluate, format_table, holdout_mask
    from imagesim.reduction.reducer import Reducer
    from imagesim.reduction.train import train_autoencoder, train_pca

    dump = VectorDump.load(args.dump)
    if args.reducer_command == "train":
        training = dump.vectors[~holdout_mask(dump.keys)]
        if args.method == "pca":
            reducer = train_pca(training, args.dims, dump.model_fingerprint, whiten=args.whiten)
        else:
            reducer = train_autoencoder(
                training, args.dims, dump.model_fingerprint, epochs=args.epochs, save_to=args.out
            )
        reducer.save(args.out)
        print(f"{args.out}: {reducer.description}; metrics {reducer.spec.metrics}")
        return 0
    reducers = {}
    for folder in args.reducers:
        reducer = Reducer.load(folder)
        reducer.check_compatible(dump.dims, dump.model_fingerprint)
        reducers[f"{folder.name} ({reducer.spec.method})"] = reducer
    reports = evaluate(dump.keys, dump.vectors, reducers, args.k, args.queries, args.trees)
    queries = min(int(holdout_mask(dump.keys).sum()), args.queries)
    print(format_table(reports, args.k, queries))
    return 0


def neighbour_rows(result: SearchResult) -> list[dict[str, Any]]:
    return [
        {
            "rank": rank,
            "key": n.key,
            "distance": float(n.distance),
            "shard": n.shard,
            **({"metadata": dict(n.metadata)} if n.metadata is not None else {}),
        }
        for rank, n in enumerate(result.neighbors, 1)
    ]


def model_of(info: EmbedderInfo) -> tuple[str, str, str]:
    """(fingerprint, runtime, precision) of what an embedder runs."""
    identity = ModelIdentity.of(info)
    return identity.fingerprint, identity.runtime, identity.precision


def warn(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr)


def warn_missing(results: list[SearchResult]) -> None:
    """Name each shard left out of a partial answer, once, on stderr."""
    missing = {address: error for result in results for address, error in result.missing.items()}
    for address, error in missing.items():
        print(f"warning: shard {address} missing from the results: {error}", file=sys.stderr)


def print_result(title: str, result: SearchResult, show_metadata: bool) -> None:
    print(title)
    print(f"{'rank':>4}  {'distance':>8}  key")
    for row in neighbour_rows(result):
        extra = f"  {json.dumps(row['metadata'])}" if show_metadata and "metadata" in row else ""
        print(f"{row['rank']:>4}  {row['distance']:>8.4f}  {row['key']}{extra}")


def cmd_query(args: argparse.Namespace) -> int:
    images = []
    for path in args.images:
        try:
            images.append(path.read_bytes())
        except OSError as exc:
            raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}") from None
    deadline = Deadline(args.timeout)
    with (
        EmbedderClient(args.embedder, args.timeout) as embedder,
        Collection(args.shards, args.timeout) as collection,
    ):
        vectors = np.stack(
            [embedder.embed(image, args.space, deadline.remaining()) for image in images]
        )
        collection.connect(allow_missing=args.allow_partial, timeout=deadline.remaining())
        collection.check_dims(vectors.shape[1])
        made_by = model_of(embedder.info(deadline.remaining()))
        warn(collection.check_model(*made_by, adding=False))
        results = collection.search_many(
            vectors, search_params(args), deadline.remaining(), args.allow_partial
        )
    warn_missing(results)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "query": str(path),
                        "neighbors": neighbour_rows(result),
                        "missing_shards": sorted(result.missing),
                    }
                    for path, result in zip(args.images, results, strict=True)
                ],
                indent=2,
            )
        )
    else:
        for path, result in zip(args.images, results, strict=True):
            print_result(f"# {path}", result, args.metadata)
    if args.sheet is not None:
        write_query_sheets(args.sheet, args.images, results, args.images_root, args.json)
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    with Collection(args.shards, args.timeout) as collection:
        deadline = Deadline(args.timeout)
        collection.connect(allow_missing=args.allow_partial, timeout=deadline.remaining())
        result = collection.similar(
            args.key, search_params(args), deadline.remaining(), args.allow_partial
        )
    warn_missing([result])
    if args.json:
        row = {
            "key": args.key,
            "neighbors": neighbour_rows(result),
            "missing_shards": sorted(result.missing),
        }
        print(json.dumps(row, indent=2))
    else:
        print_result(f"# like {args.key}", result, args.metadata)
    if args.sheet is not None:
        write_similar_sheet(args.sheet, args.key, result, args.images_root, args.json)
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
        rows = [status.row() for status in collection.stats()]
    total: dict[str, Any] = {
        "shards": len(rows),
        **{
            name: sum(r[name] for r in rows)
            for name in ("count", "built_count", "staged", "hidden", "index_bytes")
        },
        **{
            name: dict(sum((Counter(r[name]) for r in rows), Counter()))
            for name in ("models", "embedded_by")
        },
    }
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


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "index": cmd_index,
    "dump": cmd_dump,
    "export": cmd_export,
    "reducer": cmd_reducer,
    "query": cmd_query,
    "similar": cmd_similar,
    "build": cmd_build,
    "stats": cmd_stats,
    "remove": cmd_remove,
    "reshard": cmd_reshard,
    "duplicates": cmd_duplicates,
    **CURATE_COMMANDS,
}


# Exit code when the reader of stdout went away (`imagesim duplicates --json | head`): what a
# shell reports for a program killed by SIGPIPE (128 + 13), as `cat` or `yes` would give.
EXIT_BROKEN_PIPE = 141


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    set_default_security(security_from_args(args))
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # output piped to a closed reader fails here, not at exit
    except BrokenPipeError:
        # Nothing more can be written: no traceback, and no second error when Python
        # flushes stdout at exit (it would write to the closed pipe again).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_BROKEN_PIPE)
    except UsageError as exc:
        print(f"imagesim {args.command}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except ImagesimError as exc:
        print(f"imagesim: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("imagesim: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code)


if __name__ == "__main__":
    main()
