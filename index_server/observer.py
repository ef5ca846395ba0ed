"""What a shard reports as it works: a tiny interface the core calls, knowing nothing of
Prometheus (index_server.metrics implements it; NO_OBSERVER does nothing)."""

from __future__ import annotations

from typing import Protocol


class ShardObserver(Protocol):
    def build_finished(self, generation: int, seconds: float) -> None:
        """A build (requested or automatic) made `generation` live in `seconds`."""

    def build_failed(self) -> None:
        """A build failed; the previous generation stays live."""

    def searched(self, seconds: float) -> None:
        """One Search (all its queries) took `seconds` in the shard."""


class NullObserver:
    def build_finished(self, generation: int, seconds: float) -> None:
        pass

    def build_failed(self) -> None:
        pass

    def searched(self, seconds: float) -> None:
        pass


NO_OBSERVER: ShardObserver = NullObserver()
