"""What decoding an image will cost, judged from its header before a pixel is decoded: the one
rule the Embedder, the client's pictures and the web server apply, so that all of them accept
and refuse the same files.

Two limits: the declared width x height (a decompression bomb claims far more pixels than any
photo), and the bytes the decoded pixels take in memory. Pillow keeps 1-bit, 8-bit grey and
palette images in 1 byte a pixel, 16-bit grey in 2 and every other mode in 4 (RGB too: Pillow
pads it to 32 bits). A JPEG at least twice the size it is decoded for is decoded at a reduced
scale (DCT scaling, Pillow's `draft`: 1/2, 1/4 or 1/8), and that reduced size is what counts: a
9000 x 8000 JPEG decoded for the Embedder's 299 x 299 input takes 1125 x 1000 x 4 bytes.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from imagesim.errors import InvalidArgument, Reason

# Bytes per pixel of each Pillow mode in memory; any mode not listed takes 4.
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


def decoded_bytes_per_pixel(mode: str) -> int:
    return _MODE_BYTES.get(mode, 4)


def plan_decode(
    image: Image.Image, size: tuple[int, int], max_pixels: int, max_decoded_bytes: int
) -> int:
    """Check an opened, not yet decoded image against the limits and set it to decode for
    `size` (width, height): a JPEG at the smallest scale that still covers `size`. Returns
    the bytes its decoded pixels will take.

    InvalidArgument IMAGE_TOO_MANY_PIXELS if its declared width x height is over `max_pixels`,
    IMAGE_TOO_LARGE if its decoded pixels would take more than `max_decoded_bytes`."""
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidArgument(
            f"image is {width}x{height} = {width * height:,} pixels; the limit is "
            f"{max_pixels:,} (decompression bomb?)",
            reason=Reason.IMAGE_TOO_MANY_PIXELS,
            metadata={"limit": str(max_pixels)},
        )
    if image.format == "JPEG":
        image.draft("RGB", size)  # reads nothing more: sets the scale of the decode to come
    decoded = image.width * image.height * decoded_bytes_per_pixel(image.mode)
    if decoded > max_decoded_bytes:
        reduced = ""
        if image.size != (width, height):
            reduced = f" (decoded at {image.width}x{image.height})"
        raise InvalidArgument(
            f"image is {width}x{height} {image.mode}{reduced}: {decoded:,} bytes decoded; the "
            f"limit is {max_decoded_bytes:,} bytes",
            reason=Reason.IMAGE_TOO_LARGE,
            metadata={"limit": str(max_decoded_bytes)},
        )
    return decoded


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursive, by extension), sorted; paths keep the folder
    as given, so keys read like the user typed them."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found.extend(
            Path(root) / f for f in sorted(files) if Path(f).suffix.lower() in IMAGE_SUFFIXES
        )
    return found


# What Pillow raises for data that is not an image it can read (some of its format plugins say
# "not this format" with SyntaxError).
NOT_AN_IMAGE = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    ValueError,
    SyntaxError,
)


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header alone; InvalidArgument (IMAGE_UNDECODABLE) saying what
    the data is if Pillow does not read it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except NOT_AN_IMAGE as exc:
        raise undecodable(exc) from None


def undecodable(exc: Exception) -> InvalidArgument:
    if isinstance(exc, Image.DecompressionBombError):  # far over any limit: Pillow's own check
        return InvalidArgument(
            f"the image has far too many pixels: {exc}", reason=Reason.IMAGE_TOO_MANY_PIXELS
        )
    if isinstance(exc, UnidentifiedImageError):
        why = "the file is not in an image format imagesim reads (JPEG, PNG, GIF, WebP, ...)"
    else:  # truncated or damaged data: Pillow's words say where
        why = f"the image data cannot be decoded: {str(exc)[:200]}"
    return InvalidArgument(why, reason=Reason.IMAGE_UNDECODABLE)
