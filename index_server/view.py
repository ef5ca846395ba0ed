"""What a search reads: the live generation, which of its items are hidden, and the staging set
of items not (or no longer) in it. The shard replaces its view as one reference; the helpers
here derive and update views and are called with the shard's write lock held (or from its
constructor)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from imagesim.index_server.generation import Generation
from imagesim.index_server.item_store import ItemStore
from imagesim.index_server.staging import StagingSet

RELOAD_CHUNK = 4096  # staged items read back from the store at a time when a shard opens


@dataclass(frozen=True)
class View:
    """What a search reads, replaced as one reference when a build switches generations."""

    generation: Generation | None
    hidden: np.ndarray  # bool per internal id of the generation: removed or replaced since
    staging: StagingSet

    @property
    def pending(self) -> int:
        """Items a build would change: staged ones and hidden ones."""
        return len(self.staging) + int(np.count_nonzero(self.hidden))


def derive_view(
    generation: Generation | None,
    staging: StagingSet,
    live: Mapping[str, int],
    store: ItemStore,
    reload: bool = False,
) -> View:
    """The view of `generation` given the `live` items (key -> seq). Items whose live version
    is not in the generation are staged: from the old `staging` set, or (`reload`) read back
    from the store."""
    built: dict[str, int] = {}
    hidden = np.zeros(0, dtype=bool)
    if generation is not None:
        built = dict(zip(generation.keys, generation.seqs, strict=True))
        hidden = np.fromiter(
            (live.get(key) != seq for key, seq in built.items()),
            dtype=bool,
            count=generation.count,
        )
    fresh = staging.empty()
    if reload:
        newer = [key for key, seq in live.items() if built.get(key) != seq]
        for start in range(0, len(newer), RELOAD_CHUNK):
            items = store.items(newer[start : start + RELOAD_CHUNK])
            if items:
                fresh.put_many(
                    [i.key for i in items],
                    [i.seq for i in items],
                    np.stack([i.vector for i in items]),
                )
    else:
        for key, seq, vector in staging.items():
            if built.get(key) != seq:
                fresh.put(key, seq, vector)
    return View(generation, hidden, fresh)


def hide(view: View, key: str) -> None:
    """Hide `key`'s copy in the view's generation, if it has one (it was removed or replaced)."""
    generation = view.generation
    if generation is not None:
        internal = generation.ids.get(key)
        if internal is not None:
            view.hidden[internal] = True


def compacted(view: View) -> View | None:
    """Replacing the same keys again and again leaves dead rows: a view with a rebuilt staging
    set once they outnumber the live ones (amortised O(1) per write), else None."""
    staging = view.staging
    if staging.dead_rows > max(1024, len(staging)):
        fresh = staging.empty(capacity=max(64, 2 * len(staging)))
        for key, seq, vector in staging.items():
            fresh.put(key, seq, vector)
        return View(view.generation, view.hidden, fresh)
    return None
