"""The CLI's `reducer train` and `reducer eval`: 256-d reductions of a dump. PCA trains on the
client install; the autoencoder and the evaluation import the reduction extra's modules when
they run (the error names the extra when it is missing)."""

from __future__ import annotations

import argparse
from pathlib import Path

from imagesim.client.cli.args import Parents, add_command
from imagesim.client.dump import VectorDump


def register(commands: argparse._SubParsersAction, parents: Parents) -> None:
    reducer = add_command(
        commands, "reducer", cmd_reducer, help="train or evaluate a 256-d reduction"
    )
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
