"""Resharding without loss: move a collection from one set of shards to another.

    imagesim reshard --from A,B,C --to A,B,C,D

Keys live where rendezvous hashing over the shards' ids puts them (imagesim.routing), so going
from N to N+1 shards moves only the keys the new shard wins (about 1/(N+1)), and dropping a
shard moves only its own keys. The steps, each idempotent, so an interrupted run is resumed by
running the same command again:

1. Record the transition layout (version V+1, shard_ids = old ids, next_shard_ids = new ids)
   on every shard of both lists (compare-and-set). From then on each shard accepts keys whose
   home is it under either layout, readers search the shards of both (a key met twice counts
   once), and clients of the library pause their writes until the reshard ends.
2. Copy: scan every shard; each item whose home under the new layout is another shard is added
   there (replacing any copy a previous, interrupted run left). Then, after a short settling
   time that outlasts any search already in flight, drop: remove those items from the shards
   they left. A search reaches its shards at slightly different moments; since every item is
   on its new home before any copy is dropped, no search can miss it (meeting it twice, it
   counts it once).
3. Verify that every item sits on its new home, then record the final layout (V+2, the new ids)
   on the new shards. Dropped shards are empty and keep the transition layout, so a client that
   still lists them is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from imagesim.client.index_client import IndexClient
from imagesim.errors import FailedPrecondition, Reason
from imagesim.routing import home
from imagesim.types import ItemToAdd, Layout

PAGE = 256


@dataclass
class ReshardReport:
    moved: int = 0
    scanned: int = 0
    layout: Layout = field(default_factory=Layout)
    resumed: bool = False


def _refuse(message: str) -> FailedPrecondition:
    return FailedPrecondition(message, reason=Reason.LAYOUT_MISMATCH)


class Resharder:
    """Moves the collection on `old` shards (addresses) to `new` shards (addresses)."""

    def __init__(
        self,
        old: Sequence[str],
        new: Sequence[str],
        timeout: float = 60.0,
        on_move: Callable[[int], None] | None = None,
        settle: float = 2.0,
    ) -> None:
        self.old, self.new = list(old), list(new)
        self.addresses = list(dict.fromkeys([*self.old, *self.new]))
        self.clients = {a: IndexClient(a, timeout) for a in self.addresses}
        self.on_move = on_move  # called with the running count of moved items (progress)
        self.settle = settle  # seconds between copying and dropping: longer than a search

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def __enter__(self) -> Resharder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self) -> ReshardReport:
        stats = {a: c.stats() for a, c in self.clients.items()}
        ids = {a: s.shard_id for a, s in stats.items()}
        old_ids = tuple(sorted(ids[a] for a in self.old))
        new_ids = tuple(sorted(ids[a] for a in self.new))
        layouts = {a: s.layout for a, s in stats.items()}
        report = ReshardReport()
        final = next(
            (
                lay
                for lay in layouts.values()
                if lay.shard_ids == new_ids and not lay.next_shard_ids
            ),
            None,
        )
        if final is not None and final.version and all(layouts[a] == final for a in self.new):
            report.layout = final
            return report  # already done
        transition = self._transition(layouts, old_ids, new_ids, stats)
        done = Layout(transition.version + 1, new_ids)
        report.resumed = any(layouts[a] in (transition, done) for a in self.addresses)
        for address in self.addresses:
            if layouts[address] not in (transition, done):
                self.clients[address].set_layout(transition, layouts[address].version)
        self._move(ids, new_ids, transition.version, report)
        misplaced = self._misplaced(ids, new_ids)
        if misplaced:
            raise FailedPrecondition(
                f"{misplaced} items are still off their new home (writes during the reshard?): "
                "run the same command again"
            )
        for address in self.new:
            if layouts[address] != done:
                self.clients[address].set_layout(done, transition.version)
        report.layout = done
        return report

    def _transition(
        self,
        layouts: dict[str, Layout],
        old_ids: tuple[str, ...],
        new_ids: tuple[str, ...],
        stats: dict,
    ) -> Layout:
        """The transition layout to record (or the one an interrupted run recorded)."""
        for layout in layouts.values():
            if layout.shard_ids == old_ids and layout.next_shard_ids == new_ids:
                return layout  # resume
        current = {layouts[a] for a in self.old}
        if len(current) != 1:
            raise _refuse(
                f"the --from shards record different layouts: {sorted(map(str, current))}"
            )
        layout = current.pop()
        if layout.version and layout.shard_ids != old_ids:
            raise _refuse(
                f"the --from shards are not the recorded collection ({', '.join(layout.shard_ids)})"
            )
        if layout.next_shard_ids:
            raise _refuse(
                f"another reshard to {', '.join(layout.next_shard_ids)} is in progress: finish it "
                "first (run it again with the same --from and --to)"
            )
        for address in set(self.new) - set(self.old):
            if layouts[address].version or stats[address].count:
                raise _refuse(f"{address} is not an empty new shard: it holds items or a layout")
        return Layout(layout.version + 1, old_ids, new_ids)

    def _moving(
        self, address: str, ids: dict[str, str], new_ids: tuple[str, ...]
    ) -> Iterator[tuple[str, list[ItemToAdd]]]:
        """Pages of the items on `address` whose new home is elsewhere, grouped by that home."""
        start = ""
        while True:
            page = next(self.clients[address].scan(PAGE, start, include_vectors=True), [])
            if not page:
                return
            start = page[-1].key
            moving: dict[str, list[ItemToAdd]] = {}
            for item in page:
                target = home(item.key, new_ids)
                if target != ids[address]:
                    moving.setdefault(target, []).append(
                        ItemToAdd(item.key, item.vector, item.metadata)
                    )
            yield from moving.items()

    def _move(
        self, ids: dict[str, str], new_ids: tuple[str, ...], version: int, report: ReshardReport
    ) -> None:
        by_id = {ids[a]: self.clients[a] for a in self.addresses}
        for address in self.addresses:  # copy to the new homes
            for target, items in self._moving(address, ids, new_ids):
                by_id[target].add(items, layout_version=version)
                report.moved += len(items)
                if self.on_move is not None:
                    self.on_move(report.moved)
        time.sleep(self.settle)  # searches that started before the last copy finish
        for address in self.addresses:  # then drop the copies left behind
            for _, items in self._moving(address, ids, new_ids):
                self.clients[address].remove([item.key for item in items])

    def _misplaced(self, ids: dict[str, str], new_ids: tuple[str, ...]) -> int:
        misplaced = 0
        for address in self.addresses:
            for page in self.clients[address].scan(1000, include_metadata=False):
                misplaced += sum(1 for item in page if home(item.key, new_ids) != ids[address])
        return misplaced


def reshard(old: Sequence[str], new: Sequence[str], timeout: float = 60.0) -> ReshardReport:
    with Resharder(old, new, timeout) as resharder:
        return resharder.run()
