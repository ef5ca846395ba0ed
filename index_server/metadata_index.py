"""The shard's metadata index (the `meta` table of item_store's SQLite file): which items match
a filter's KEY=VALUE pairs, how many, and the items per value of a key. Read-only queries on the
calling thread's reader connection, so a filtered search never waits for a write."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping

SQL_CHUNK = 500  # keys per IN (...) clause: below SQLite's bound-parameter limit


def chunks(keys: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(keys), SQL_CHUNK):
        yield keys[start : start + SQL_CHUNK]


def marks(n: int) -> str:
    return ",".join("?" * n)


class MetadataIndex:
    def __init__(self, reader: Callable[[], sqlite3.Connection]) -> None:
        self._reader = reader  # the calling thread's read-only connection

    def count_matching(self, where: Mapping[str, str]) -> int:
        """An upper bound of the items matching every pair: the rarest pair's count."""
        db = self._reader()
        return min(
            int(
                db.execute(
                    "SELECT COUNT(*) FROM meta WHERE name = ? AND value = ?", (name, value)
                ).fetchone()[0]
            )
            for name, value in where.items()
        )

    def count_values(self, name: str) -> dict[str, int]:
        """Items per value of the metadata key `name` (from the metadata index)."""
        rows = self._reader().execute(
            "SELECT value, COUNT(*) FROM meta WHERE name = ? GROUP BY value", (name,)
        )
        return {str(value): int(count) for value, count in rows}

    def matching_keys(self, where: Mapping[str, str]) -> list[str]:
        """Keys of the items whose metadata has every pair."""
        query = " INTERSECT ".join(
            "SELECT key FROM meta WHERE name = ? AND value = ?" for _ in where
        )
        params = [part for pair in where.items() for part in pair]
        return [row[0] for row in self._reader().execute(query, params)]

    def filter_keys(self, keys: Iterable[str], where: Mapping[str, str]) -> set[str]:
        """Those of `keys` whose metadata has every pair."""
        db = self._reader()
        keep: set[str] = set()
        for chunk in chunks(list(dict.fromkeys(keys))):
            found: set[str] | None = None
            for name, value in where.items():
                rows = db.execute(
                    "SELECT key FROM meta WHERE name = ? AND value = ? "
                    f"AND key IN ({marks(len(chunk))})",
                    (name, value, *chunk),
                )
                matched = {row[0] for row in rows}
                found = matched if found is None else found & matched
                if not found:
                    break
            keep |= found or set()
        return keep
