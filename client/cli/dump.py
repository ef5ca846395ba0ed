"""The CLI's `dump`: embed a folder once into a vector dump, over gRPC (an Embedder) or on Ray
Data (`--engine ray`: the model in Ray actors; Ray is imported only then)."""

from __future__ import annotations

import argparse
from pathlib import Path

from imagesim.client.cli.args import Parents, UsageError, add_command, require_directory
from imagesim.client.cli.common import is_parquet, parquet_module, print_report
from imagesim.client.dump import dump_folder
from imagesim.client.embedder_client import EmbedderClient
from imagesim.client.rpc import DEFAULT_TIMEOUT
from imagesim.errors import FailedPrecondition


def register(commands: argparse._SubParsersAction, parents: Parents) -> None:
    dump = add_command(
        commands,
        "dump",
        cmd_dump,
        [parents.embedding, parents.bulk],
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
        "~/.keras/imagesim-ir) [IMAGESIM_EMBEDDER_MODEL_CACHE]",
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
        from imagesim.bulk import ray_dump
        from imagesim.bulk.batch_inference import ModelSpec

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
