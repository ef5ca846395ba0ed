"""The CLI's searches: `query` (image files, embedded first) and `similar` (an indexed item),
with the flags they share (k, filters, --metadata, --json, contact sheets)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from imagesim.client.cli.args import Parents, add_command, pair
from imagesim.client.cli.common import model_of, warn
from imagesim.client.cli.pictures import sheet_options, write_query_sheets, write_similar_sheet
from imagesim.client.collection import Collection, SearchResult
from imagesim.client.embedder_client import EmbedderClient
from imagesim.client.rpc import Deadline
from imagesim.errors import InvalidArgument
from imagesim.params import DEFAULT_RERANK_FACTOR, SearchParams


def searching_options() -> argparse.ArgumentParser:
    """Flags shared by `query` and `similar`."""
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
        help="only neighbors at most this far (may return fewer than k)",
    )
    searching.add_argument(
        "--where",
        type=pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only items whose metadata has KEY=VALUE (repeatable: all must match)",
    )
    searching.add_argument("--metadata", action="store_true", help="print each neighbor's metadata")
    searching.add_argument(
        "--allow-partial",
        action="store_true",
        help="if a shard fails, return the others' results and name it",
    )
    searching.add_argument("--json", action="store_true", help="print JSON")
    return searching


def register(commands: argparse._SubParsersAction, parents: Parents) -> None:
    searching, pictures = searching_options(), sheet_options()
    query = add_command(
        commands,
        "query",
        cmd_query,
        [parents.common, parents.embedding, searching, pictures],
        help="the indexed images most similar to each IMAGE",
    )
    query.add_argument("images", type=Path, nargs="+", metavar="IMAGE")

    similar = add_command(
        commands,
        "similar",
        cmd_similar,
        [parents.common, searching, pictures],
        help="more like this: the neighbors of an indexed item KEY (itself left out)",
    )
    similar.add_argument("key", metavar="KEY")


def search_params(args: argparse.Namespace) -> SearchParams:
    return SearchParams(
        k=args.k,
        search_k=args.search_k,
        rerank_factor=args.rerank,
        max_distance=args.max_distance,
        where=dict(args.where),
        include_metadata=args.metadata,
    )


def neighbor_rows(result: SearchResult) -> list[dict[str, Any]]:
    """Each neighbor as --json prints it (the web's /api/search and /api/similar use the same
    names): `metadata` is null unless --metadata asked for it."""
    return [
        {
            "rank": rank,
            "key": n.key,
            "distance": float(n.distance),
            "shard": n.shard,
            "metadata": dict(n.metadata) if n.metadata is not None else None,
        }
        for rank, n in enumerate(result.neighbors, 1)
    ]


def result_json(query: str, result: SearchResult) -> dict[str, Any]:
    """One query's answer as --json prints it, named as the web's /api/search and /api/similar
    answer: `query` is the image's path (query) or the item's key (similar)."""
    return {
        "query": query,
        "neighbors": neighbor_rows(result),
        "missing_shards": sorted(result.missing),
    }


def warn_missing(results: list[SearchResult]) -> None:
    """Name each shard left out of a partial answer, once, on stderr."""
    missing = {address: error for result in results for address, error in result.missing.items()}
    for address, error in missing.items():
        print(f"warning: shard {address} missing from the results: {error}", file=sys.stderr)


def print_result(title: str, result: SearchResult, show_metadata: bool) -> None:
    print(title)
    print(f"{'rank':>4}  {'distance':>8}  key")
    for row in neighbor_rows(result):
        metadata = row["metadata"]
        extra = f"  {json.dumps(metadata)}" if show_metadata and metadata is not None else ""
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
                    result_json(str(path), result)
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
        print(json.dumps(result_json(args.key, result), indent=2))
    else:
        print_result(f"# like {args.key}", result, args.metadata)
    if args.sheet is not None:
        write_similar_sheet(args.sheet, args.key, result, args.images_root, args.json)
    return 0
