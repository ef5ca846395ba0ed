"""A server-wide budget of decoded pixels across all images being decoded at once.

The file-size and per-image limits cannot stop a few small files from decoding, together, into
more memory than the machine has (a 152 KiB PNG can hold 80 Mpx). Each image reserves its
decoded pixel count before it is decoded and gives it back when decoding is done; an image that
does not fit waits up to `wait_seconds` for room, then fails with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import threading
import time

from imagesim.errors import InvalidArgument, Reason, ResourceExhausted


class Reservation:
    """Pixels held in a DecodeBudget; `release()` (idempotent) gives them back."""

    def __init__(self, budget: DecodeBudget, pixels: int) -> None:
        self._budget = budget
        self.pixels = pixels
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._budget._give_back(self.pixels)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class DecodeBudget:
    def __init__(self, pixels: int, wait_seconds: float = 2.0) -> None:
        if pixels < 1:
            raise ValueError("the decode budget must be at least one pixel")
        self.pixels = pixels
        self.wait_seconds = wait_seconds
        self._in_use = 0
        self._room = threading.Condition()

    @property
    def in_use(self) -> int:
        with self._room:
            return self._in_use

    def reserve(self, pixels: int) -> Reservation:
        """Hold `pixels` for one decode; waits for room up to `wait_seconds`."""
        if pixels > self.pixels:
            raise InvalidArgument(
                f"image decodes to {pixels:,} pixels, more than the server's whole decode "
                f"budget of {self.pixels:,}",
                reason=Reason.IMAGE_TOO_MANY_PIXELS,
                metadata={"limit": str(self.pixels)},
            )
        deadline = time.monotonic() + self.wait_seconds
        with self._room:
            while self._in_use + pixels > self.pixels:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._room.wait(remaining):
                    if self._in_use + pixels <= self.pixels:
                        break
                    raise ResourceExhausted(
                        f"the server is decoding {self._in_use:,} pixels of other images; this "
                        f"image's {pixels:,} did not fit in the decode budget of "
                        f"{self.pixels:,} within {self.wait_seconds:g} s: retry later",
                        reason=Reason.DECODE_BUDGET_EXHAUSTED,
                        metadata={"limit": str(self.pixels)},
                    )
            self._in_use += pixels
        return Reservation(self, pixels)

    def _give_back(self, pixels: int) -> None:
        with self._room:
            self._in_use -= pixels
            self._room.notify_all()
