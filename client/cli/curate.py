"""The CLI's folder-keeping commands: `sync`, `apply`, `undo` and `outliers` (the review plan
itself is written by `duplicates --plan`, in cli.pictures)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagesim.client.cli.args import Parents, add_command, add_renamed_flag, require_directory
from imagesim.client.cli.pictures import (
    add_images_root_flag,
    key_path,
    load_tile_picture,
    save,
)
from imagesim.client.collection import Collection
from imagesim.client.embedder_client import EmbedderClient
from imagesim.client.outliers import DEFAULT_NEIGHBORS, OutlierReport, find_outliers
from imagesim.client.pictures import Tile, contact_sheet
from imagesim.client.quarantine import Outcome, apply_plan, undo
from imagesim.client.review_plan import load_plan
from imagesim.client.sync import SyncPlan, apply_sync, plan_sync
from imagesim.errors import FailedPrecondition

WATCH_DEBOUNCE_SECONDS = 2.0


def register(commands: argparse._SubParsersAction, parents: Parents) -> None:
    common = parents.common
    sync = add_command(
        commands,
        "sync",
        cmd_sync,
        [common, parents.embedding, parents.bulk],
        help="make the collection match a folder: add new files, re-embed changed ones, "
        "remove items whose files are gone",
    )
    sync.add_argument("folder", type=Path, metavar="DIR")
    sync.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    sync.add_argument(
        "--watch",
        action="store_true",
        help="keep following the folder as it changes, until Ctrl-C (needs imagesim[watch])",
    )
    sync.add_argument("--no-build", action="store_true", help="leave building to the shards")
    sync.add_argument("--quiet", action="store_true", help="no progress bar")

    apply = add_command(
        commands,
        "apply",
        cmd_apply,
        [common],
        help="carry out a duplicates review plan (needs a write key)",
    )
    apply.add_argument("plan", type=Path)
    where = apply.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--move-to",
        type=Path,
        metavar="QUARANTINE",
        help="move the files marked `move` here (relative paths kept; never overwriting); "
        "the manifest is written here too",
    )
    where.add_argument(
        "--delete",
        action="store_true",
        help="delete them for good (the manifest still records them, beside the plan)",
    )
    apply.add_argument("--dry-run", action="store_true", help="print what would happen")

    undo_parser = add_command(
        commands, "undo", cmd_undo, [common], help="put back the files and items of an apply"
    )
    undo_parser.add_argument("manifest", type=Path)
    undo_parser.add_argument("--dry-run", action="store_true", help="print what would happen")

    outliers = add_command(
        commands,
        "outliers",
        cmd_outliers,
        [common],
        help="the items farthest from their nearest neighbors (odd or broken pictures)",
    )
    outliers.add_argument("-n", type=int, default=50, help="how many (default 50)")
    add_renamed_flag(
        outliers,
        "--neighbors",
        "--neighbours",
        type=int,
        default=DEFAULT_NEIGHBORS,
        metavar="N",
        help=f"score: mean distance to this many nearest items (default {DEFAULT_NEIGHBORS})",
    )
    outliers.add_argument("--json", action="store_true", help="print JSON")
    outliers.add_argument("--sheet", type=Path, metavar="PNG", help="also draw them")
    add_images_root_flag(outliers)


# ---- sync ----------------------------------------------------------------------------------


def cmd_sync(args: argparse.Namespace) -> int:
    require_directory(args.folder)
    with (
        EmbedderClient(args.embedder, args.timeout) as embedder,
        Collection(args.shards, args.timeout) as collection,
    ):

        def once() -> None:
            plan = plan_sync(args.folder, collection)
            if args.dry_run:
                print(plan.describe())
                return
            if plan.to_embed:
                collection.check_dims(embedder.dimension(args.space))
            report = apply_sync(
                plan,
                embedder,
                collection,
                args.space,
                progress=not args.quiet,
                build=not args.no_build,
                streams=args.streams,
            )
            for path, reason in (plan.skipped + report.bulk.failed)[:20]:
                print(f"skipped {path}: {reason}", file=sys.stderr)
            print(report.summary() + _rate(plan), flush=True)

        if args.watch and not args.dry_run:
            watch(args.folder, once)
        else:
            once()
    return 0


def _rate(plan: SyncPlan) -> str:
    if not plan.seconds:
        return ""
    return f" ({plan.files_seen / plan.seconds:,.0f} files checked/s)"


def watch(folder: Path, run: Callable[[], None], debounce: float = WATCH_DEBOUNCE_SECONDS) -> None:
    """Run `run` now, then again after the folder changes, once per burst of changes (quiet for
    `debounce` seconds), until Ctrl-C. The observer starts before the first run, so a change made
    while that run works is seen and followed by another run, never lost."""
    try:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        raise FailedPrecondition("--watch needs watchdog: pip install 'imagesim[watch]'") from None
    changed = threading.Event()

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type not in ("opened", "closed_no_write"):
                changed.set()

    observer = Observer()
    observer.schedule(Handler(), str(folder), recursive=True)
    observer.start()
    print(f"watching {folder} (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        run()
        while True:
            changed.wait()
            while changed.is_set():  # wait for the burst to end
                changed.clear()
                changed.wait(debounce)
            run()
    except KeyboardInterrupt:
        print("stopped watching", file=sys.stderr)
    finally:
        observer.stop()
        observer.join(5)


# ---- duplicates review ---------------------------------------------------------------------


def _print_outcome(outcome: Outcome, verb: tuple[str, str], dry_run: bool) -> None:
    """`verb`: (present, past), e.g. ("move", "moved")."""
    for line in outcome.lines(f"would {verb[0]}" if dry_run else verb[1]):
        print(line)
    if dry_run:
        print(
            f"dry run: {len(outcome.done)} files, {len(outcome.skipped)} skipped; nothing changed"
        )
    else:
        print(
            f"{verb[1]} {len(outcome.done)} files, {len(outcome.skipped)} skipped, "
            f"{outcome.items} items; manifest: {outcome.manifest}"
        )


def cmd_apply(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    manifests = args.move_to if args.move_to is not None else args.plan.parent
    with Collection(args.shards, args.timeout) as collection:
        outcome = apply_plan(plan, collection, args.move_to, manifests, args.dry_run)
    verb = ("move", "moved") if args.move_to is not None else ("delete", "deleted")
    _print_outcome(outcome, verb, args.dry_run)
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    with Collection(args.shards, args.timeout) as collection:
        outcome = undo(args.manifest, collection, args.dry_run)
    _print_outcome(outcome, ("put back", "put back"), args.dry_run)
    return 0


# ---- outliers ------------------------------------------------------------------------------


def outliers_json(report: OutlierReport) -> dict[str, Any]:
    return {
        "neighbors": report.neighbors,
        "items": report.items,
        "outliers": [
            {
                "key": o.key,
                "score": o.score,
                "nearest": [{"key": k, "distance": d} for k, d in o.nearest],
            }
            for o in report.outliers
        ],
    }


def cmd_outliers(args: argparse.Namespace) -> int:
    with Collection(args.shards, args.timeout) as collection:
        collection.connect()
        report = find_outliers(collection, args.n, args.neighbors, timeout=args.timeout)
    if args.json:
        print(json.dumps(outliers_json(report), indent=2))
    else:
        print(
            f"{len(report.outliers)} most isolated of {report.items} items "
            f"(score: mean distance to the {report.neighbors} nearest)"
        )
        for rank, outlier in enumerate(report.outliers, 1):
            print(f"{rank:4d}  score {outlier.score:.4f}  {outlier.key}")
    if args.sheet is not None:
        tiles = [
            Tile(load_tile_picture(key_path(o.key, args.images_root)), (f"{o.score:.4f}", o.key))
            for o in report.outliers
        ]
        title = f"outliers: the {len(tiles)} most isolated items (score)"
        save(contact_sheet(tiles, title, 180, 6), args.sheet, args.json)
    return 0
