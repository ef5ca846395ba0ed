"""What each server accepts at most, declared once: every field made with `setting` is a flag
and an environment variable of its server (imagesim.settings_base), and Info/Stats report them
all (imagesim.protocol). Light on purpose (no numpy, no Pillow): `--help` imports it."""

from __future__ import annotations

from dataclasses import dataclass

from imagesim.errors import FailedPrecondition
from imagesim.settings_base import setting

MiB = 1024 * 1024
# The Embedder's default image limits: a picture over them is never decoded.
DEFAULT_MAX_IMAGE_BYTES = 32 * MiB
DEFAULT_MAX_PIXELS = 80_000_000  # below Pillow's own decompression bomb warning
# 32 Mpx of RGB, 64 Mpx of 16-bit grey (an 8944 x 8944 16-bit PNG, 160 MB, is refused)
DEFAULT_MAX_DECODED_BYTES = 128 * MiB
DECODE_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class ImageLimits:
    """What an accepted image may be at most, and what all images being decoded at once may
    take together. The three flags among them are imagesim-embedder settings."""

    # the encoded file
    max_bytes: int = setting(
        DEFAULT_MAX_IMAGE_BYTES,
        "largest accepted image file, MiB",
        flag="--max-image-mb",
        scale=MiB,
    )
    # declared width x height; more is a decompression bomb (below Pillow's own warning level)
    max_pixels: int = DEFAULT_MAX_PIXELS
    # one image decoded in memory (width x height x bytes per pixel of its mode); JPEGs count
    # at their reduced decode size
    max_decoded_bytes: int = setting(
        DEFAULT_MAX_DECODED_BYTES,
        "largest image once decoded, MiB, counted with its mode's bytes per pixel (the "
        "default: 32 Mpx RGB, 64 Mpx 16-bit grey)",
        flag="--max-decoded-mb",
        scale=MiB,
    )
    # pixels being decoded at once across the server; the decode path peaks at about 8 bytes
    # per pixel (decoded image, a copy, the 8-bit result), so the default bounds it to ~1.6 GB
    decode_budget_pixels: int = setting(
        200_000_000,
        "megapixels being decoded at once across all requests (the default: at most ~1.6 GB "
        f"of decode memory); an image that does not fit waits up to {DECODE_WAIT_SECONDS:g} s, "
        "then gets RESOURCE_EXHAUSTED",
        flag="--decode-budget-mpx",
        scale=1e6,
    )
    # how long an image waits for room in the decode budget before RESOURCE_EXHAUSTED
    decode_wait_seconds: float = DECODE_WAIT_SECONDS


@dataclass(frozen=True)
class IndexLimits:
    """What one request may ask of a shard (index_server.limits enforces them); each is an
    imagesim-index flag and a Stats field."""

    max_key_bytes: int = setting(1024, "longest key, bytes of UTF-8")
    max_metadata_bytes: int = setting(
        64 * 1024, "largest metadata of one item (keys and values together), bytes of UTF-8"
    )
    max_items_per_request: int = setting(  # 4096 x 8 KiB < 64 MiB
        4096, "most items (Add) or keys (Remove, Contains) in one request"
    )
    max_trees: int = setting(1000, "most Annoy trees a Build may ask for")
    max_k: int = setting(1000, "largest k of a Search")
    max_search_k: int = setting(10_000_000, "largest search_k of a Search")
    max_queries_per_search: int = setting(256, "most query vectors in one Search")
    max_results_per_search: int = setting(  # bounds the response the server builds
        20_000, "most neighbours one Search returns in all (k x queries)"
    )
    max_page_size: int = setting(4096, "largest Scan page")
    default_page_size: int = 256  # not a flag, not reported

    def check(self) -> None:
        """Every limit must allow at least one (a server started with --max-k 0 would refuse
        every search): FailedPrecondition naming the flag otherwise."""
        for name, value in vars(self).items():
            if value < 1:
                flag = "--" + name.replace("_", "-")
                raise FailedPrecondition(f"{flag} must be at least 1, not {value}")
