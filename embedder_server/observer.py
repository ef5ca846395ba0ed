"""What the Embedder reports as it works: a tiny interface the core calls, knowing nothing of
Prometheus (embedder_server.metrics implements it; NO_OBSERVER does nothing)."""

from __future__ import annotations

from typing import Protocol


class EmbedderObserver(Protocol):
    def image_started(self) -> None:
        """An image entered the embedder (decode, queue, model): in flight until done."""

    def image_done(self, reason: str | None) -> None:
        """The image got its vector (reason None) or was rejected (an ErrorReason name)."""

    def decoded(self, seconds: float) -> None:
        """Decode + resize of one image took `seconds`."""

    def queued(self, seconds: float) -> None:
        """One image waited `seconds` between joining the batch queue and its model call."""

    def batch_ran(self, size: int, seconds: float) -> None:
        """The model ran one batch of `size` images in `seconds`."""


class NullObserver:
    def image_started(self) -> None:
        pass

    def image_done(self, reason: str | None) -> None:
        pass

    def decoded(self, seconds: float) -> None:
        pass

    def queued(self, seconds: float) -> None:
        pass

    def batch_ran(self, size: int, seconds: float) -> None:
        pass


NO_OBSERVER: EmbedderObserver = NullObserver()
