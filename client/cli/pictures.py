"""The CLI's pictures: `query/similar --sheet`, and `imagesim duplicates`.

Keys are image paths as indexed. An absolute key is read where it says; a relative key is read
under `--images-root` (default: the current directory, where `imagesim index DIR` was run).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from imagesim.client.cli.args import Parents, add_command, add_renamed_flag, enum_type, values
from imagesim.client.collection import Collection, SearchResult
from imagesim.client.duplicates import DEFAULT_MAX_DISTANCE, DuplicateReport, find_duplicates
from imagesim.client.images_root import ImagesRoot
from imagesim.client.pictures import Tile, contact_sheet, picture
from imagesim.client.review_plan import KeepRule, make_plan, save_plan
from imagesim.errors import ImagesimError

SHEET_TILE = 180
SHEET_COLUMNS = 6
MAX_TILES_PER_GROUP_SHEET = 36


def add_images_root_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--images-root",
        type=Path,
        metavar="DIR",
        help="where relative keys' files are (default: the current directory)",
    )


def sheet_options() -> argparse.ArgumentParser:
    """Flags shared by `query` and `similar`."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--sheet",
        type=Path,
        metavar="PNG",
        help="also write a contact sheet: the query, then each result with rank and distance "
        "(several query images: PNG-1, PNG-2, ...)",
    )
    add_images_root_flag(options)
    return options


def register(commands: argparse._SubParsersAction, parents: Parents) -> None:
    duplicates = add_command(
        commands,
        "duplicates",
        cmd_duplicates,
        [parents.common],
        help="groups of near-duplicates in the collection, largest first",
    )
    duplicates.add_argument(
        "--max-distance",
        type=float,
        default=DEFAULT_MAX_DISTANCE,
        metavar="D",
        help=f"items at most this far apart are duplicates (default {DEFAULT_MAX_DISTANCE})",
    )
    add_renamed_flag(
        duplicates,
        "--neighbors",
        "--neighbours",
        type=int,
        default=10,
        metavar="N",
        help="nearest items each item is compared with (default 10)",
    )
    duplicates.add_argument("--json", action="store_true", help="print JSON")
    duplicates.add_argument(
        "--sheet-dir", type=Path, metavar="DIR", help="write one contact sheet per group here"
    )
    duplicates.add_argument(
        "--max-sheets", type=int, default=50, help="sheets for at most this many groups (50)"
    )
    add_images_root_flag(duplicates)
    duplicates.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_plan_flags(duplicates)


def add_plan_flags(duplicates: argparse.ArgumentParser) -> None:
    duplicates.add_argument(
        "--plan",
        type=Path,
        metavar="JSON",
        help="also write a review plan: one keeper per group, the others marked to move "
        "(edit it, then `imagesim apply`)",
    )
    duplicates.add_argument(
        "--keep",
        type=enum_type(KeepRule, "the keep rule"),
        choices=values(KeepRule),
        default=KeepRule.LARGEST,
        help="which member of a group the plan keeps (default largest: most pixels)",
    )


def key_path(key: str, images_root: Path | None) -> Path:
    path = Path(key)
    return path if path.is_absolute() else (images_root or Path.cwd()) / path


def load_tile_picture(path: Path, size: int = SHEET_TILE) -> Image.Image | None:
    """The picture of a file for a sheet, or None (a warning on stderr) if it cannot be read."""
    try:
        return picture(path, size)
    except FileNotFoundError:
        print(f"warning: no file {path} for the contact sheet", file=sys.stderr)
    except (OSError, ImagesimError) as exc:
        print(f"warning: cannot show {path}: {exc}", file=sys.stderr)
    return None


def result_sheet(
    query: Path, query_label: str, result: SearchResult, images_root: Path | None
) -> Image.Image:
    tiles = [Tile(load_tile_picture(query), ("query", query_label), highlight=True)]
    for rank, neighbour in enumerate(result.neighbors, 1):
        tiles.append(
            Tile(
                load_tile_picture(key_path(neighbour.key, images_root)),
                (f"#{rank}   {neighbour.distance:.4f}", neighbour.key),
            )
        )
    shown = f"top {len(result.neighbors)}" if result.neighbors else "no results"
    missing = f"; shards missing: {', '.join(sorted(result.missing))}" if result.missing else ""
    return contact_sheet(
        tiles, f"{query_label}: {shown} (rank, distance){missing}", SHEET_TILE, SHEET_COLUMNS
    )


def sheet_paths(sheet: Path, count: int) -> list[Path]:
    if count == 1:
        return [sheet]
    return [
        sheet.with_name(f"{sheet.stem}-{n}{sheet.suffix or '.png'}") for n in range(1, count + 1)
    ]


def save(image: Image.Image, path: Path, quiet_stdout: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "PNG", optimize=True)
    print(f"contact sheet: {path}", file=sys.stderr if quiet_stdout else sys.stdout)


def write_query_sheets(
    sheet: Path,
    images: Sequence[Path],
    results: Sequence[SearchResult],
    images_root: Path | None,
    json_output: bool,
) -> None:
    """`query --sheet`: one sheet per query image."""
    for path, image, result in zip(sheet_paths(sheet, len(images)), images, results, strict=True):
        save(result_sheet(image, image.name, result, images_root), path, json_output)


def write_similar_sheet(
    sheet: Path, key: str, result: SearchResult, images_root: Path | None, json_output: bool
) -> None:
    """`similar --sheet`: the item's own picture, then its neighbours."""
    save(result_sheet(key_path(key, images_root), key, result, images_root), sheet, json_output)


def group_sheet(report: DuplicateReport, number: int, images_root: Path | None) -> Image.Image:
    group = report.groups[number - 1]
    shown = min(group.size, MAX_TILES_PER_GROUP_SHEET)
    tiles = [
        Tile(load_tile_picture(key_path(key, images_root)), (f"closest {closest:.4f}", key))
        for key, closest in zip(group.keys[:shown], group.closest[:shown], strict=True)
    ]
    more = f" (first {shown} shown)" if shown < group.size else ""
    title = (
        f"group {number} of {len(report.groups)}: {group.size} images within "
        f"{report.max_distance:g}{more}"
    )
    return contact_sheet(tiles, title, SHEET_TILE, SHEET_COLUMNS)


def report_json(report: DuplicateReport) -> dict:
    return {
        "max_distance": report.max_distance,
        "neighbors": report.neighbors,
        "items": report.items,
        "seconds": round(report.seconds, 3),
        "groups": [
            {
                "size": group.size,
                "members": [
                    {"key": key, "closest": closest}
                    for key, closest in zip(group.keys, group.closest, strict=True)
                ],
            }
            for group in report.groups
        ],
    }


def write_plan(args: argparse.Namespace, collection: Collection, report: DuplicateReport) -> None:
    """`duplicates --plan`: the review plan of this report."""
    images = ImagesRoot(args.images_root or Path.cwd())
    plan = make_plan(
        report,
        lambda key: collection.get(key).metadata,
        collection.layout.shard_ids,
        images,
        args.keep,
    )
    save_plan(plan, args.plan)
    moves = len(plan.moves())
    print(
        f"plan: {args.plan} ({len(plan.groups)} groups, {moves} files to move, "
        f"keep {args.keep.value})",
        file=sys.stderr if args.json else sys.stdout,
    )


def cmd_duplicates(args: argparse.Namespace) -> int:
    def progress(done: int) -> None:
        if not args.quiet:
            print(f"\rscanned {done:,} items", end="", file=sys.stderr, flush=True)

    with Collection(args.shards, args.timeout) as collection:
        collection.connect()
        report = find_duplicates(
            collection, args.max_distance, args.neighbors, timeout=args.timeout, progress=progress
        )
        if args.plan is not None:
            write_plan(args, collection, report)
    if not args.quiet and report.items:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(
            f"{len(report.groups)} groups of near-duplicates ({report.duplicated_items} images) "
            f"within {report.max_distance:g} among {report.items} items, {report.seconds:.1f} s"
            + (
                "; closest: each image's distance to its nearest other member"
                if report.groups
                else ""
            )
        )
        for number, group in enumerate(report.groups, 1):
            print(f"group {number}: {group.size} images")
            for key, closest in zip(group.keys, group.closest, strict=True):
                print(f"  closest {closest:.4f}  {key}")
    if args.sheet_dir is not None:
        for number in range(1, min(len(report.groups), args.max_sheets) + 1):
            image = group_sheet(report, number, args.images_root)
            save(image, args.sheet_dir / f"group-{number:04d}.png", args.json)
    return 0
