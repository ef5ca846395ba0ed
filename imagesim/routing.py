"""Which shard holds a key: rendezvous (highest-random-weight) hashing over stable shard ids.

Each (shard id, key) pair gets a score: the first 8 bytes of SHA-256 of `shard_id NUL key`
(UTF-8), read as a big-endian unsigned integer (SHA-256 is in every language's standard
library). The key lives on the shard with the highest score (ties, which need equal 64-bit
hashes, go to the larger id). The same in every process, run and language. Adding a shard to
N moves only the keys the new shard wins, about 1/(N+1) of them; removing one moves only its
own keys. Shared by the client (routing) and the index server (refusing keys that are not its
own).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence


def score(shard_id: str, key: str) -> int:
    digest = hashlib.sha256(
        shard_id.encode("utf-8") + b"\0" + key.encode("utf-8", "surrogatepass")
    ).digest()
    return int.from_bytes(digest[:8], "big")


def home(key: str, shard_ids: Sequence[str]) -> str:
    """The id of the shard that holds `key` among `shard_ids`."""
    if not shard_ids:
        raise ValueError("no shards to place a key on")
    return max(shard_ids, key=lambda shard_id: (score(shard_id, key), shard_id))


def homes(key: str, *layouts: Sequence[str]) -> set[str]:
    """The key's home in each non-empty layout (two while a reshard moves items)."""
    return {home(key, ids) for ids in layouts if ids}


def group_by_home(keys: Iterable[str], shard_ids: Sequence[str]) -> dict[str, list[str]]:
    """Keys grouped by their home shard id (order kept within each group)."""
    groups: dict[str, list[str]] = {shard_id: [] for shard_id in shard_ids}
    for key in keys:
        groups[home(key, shard_ids)].append(key)
    return groups
