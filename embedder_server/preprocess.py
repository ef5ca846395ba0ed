"""Image bytes -> the model's input, exactly as InceptionV3 expects it, with memory bounded.

Two steps, so the cheap checks run before any memory is committed: `open_image` reads the
header only (format, size, mode), asks JPEG for a reduced-size decode (DCT scaling, "draft")
where the source is at least twice the model's input, and enforces the limits: file bytes,
declared pixels, decoded bytes per image (mode-aware; the rule shared with the client and the
web server, imagesim.images). `decode_rgb` then decodes, converts to
8-bit RGB without float64 copies, and resizes to the model's input: uint8 (h, w, 3).
The Embedder holds a DecodeBudget reservation of the decoded pixels between the two.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import cast

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imagesim.errors import ImagesimError, InvalidArgument, Reason
from imagesim.images import plan_decode
from imagesim.limits import ImageLimits

__all__ = ["ImageLimits", "OpenedImage", "decode_rgb", "load_rgb", "open_image", "preprocess"]

MiB = 1024 * 1024
DECODE_WAIT_SECONDS = 2.0
ROWS_PER_CHUNK = 256  # 16-bit/32-bit -> 8-bit conversion works on this many rows at a time


@dataclass
class OpenedImage:
    """An image whose header has been read and checked; not decoded yet."""

    image: Image.Image
    size: int  # encoded bytes

    @property
    def pixels(self) -> int:
        """Pixels the decode will produce (after JPEG draft reduction)."""
        width, height = self.image.size
        return width * height


def _undecodable(data_len: int, exc: BaseException) -> InvalidArgument:
    if isinstance(exc, UnidentifiedImageError):
        detail = "not a recognised image format"
    elif isinstance(exc, Image.DecompressionBombError):
        return InvalidArgument(
            f"image rejected as a decompression bomb: {exc}", reason=Reason.IMAGE_TOO_MANY_PIXELS
        )
    else:
        detail = str(exc)
    return InvalidArgument(
        f"cannot decode image ({data_len:,} bytes): {detail}", reason=Reason.IMAGE_UNDECODABLE
    )


def open_image(data: bytes, size: tuple[int, int], limits: ImageLimits) -> OpenedImage:
    """Read and check the header of `data` (no pixel decoding). `size` is the model's input
    (w, h): JPEGs at least twice as large are set to decode at a reduced scale."""
    if not data:
        raise InvalidArgument(
            "empty image: the request carried no bytes", reason=Reason.IMAGE_EMPTY
        )
    if len(data) > limits.max_bytes:
        raise InvalidArgument(
            f"image is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes",
            reason=Reason.IMAGE_TOO_LARGE,
            metadata={"limit": str(limits.max_bytes)},
        )
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
        # the shared rule (imagesim.images): pixels, JPEG draft scale, decoded bytes
        plan_decode(image, size, limits.max_pixels, limits.max_decoded_bytes)
    except InvalidArgument:
        raise
    except (Image.DecompressionBombError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise _undecodable(len(data), exc) from exc
    return OpenedImage(image, len(data))


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit or 32-bit single-band image -> "L", its value range stretched to 0-255. Works on
    bands of rows cropped from the decoded image, so besides it only the 8-bit result and one
    band exist at a time (no full-size copy, no float64): a lookup table for 16-bit, float32
    arithmetic for 32-bit."""
    # computed by Pillow over its own buffer, no copy; a single band gives (min, max)
    low, high = cast(tuple[float, float], image.getextrema())
    width, height = image.size
    out = np.zeros((height, width), dtype=np.uint8)
    if high > low:
        scale = np.float32(255.0 / (high - low))
        lut = None
        if image.mode.startswith("I;16"):
            levels = np.arange(65536, dtype=np.float32)
            lut = ((np.clip(levels, low, high) - np.float32(low)) * scale).astype(np.uint8)
        for top in range(0, height, ROWS_PER_CHUNK):
            band = np.asarray(image.crop((0, top, width, min(height, top + ROWS_PER_CHUNK))))
            if lut is not None:
                out[top : top + ROWS_PER_CHUNK] = lut[band]
            else:
                values = band.astype(np.float32)
                values -= np.float32(low)
                values *= scale
                out[top : top + ROWS_PER_CHUNK] = values
    return Image.fromarray(out, mode="L")


def _resize_to_rgb(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Any Pillow mode -> RGB at `size`: palettes and alpha composited over white, CMYK
    converted, 16/32-bit grey stretched to 8 bits. Single-band images are resized before
    they become RGB (4 bytes a pixel in Pillow), so a huge greyscale image never exists in RGB."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _to_8bit(image)
    elif image.mode == "1":
        image = image.convert("L")
    if image.mode in ("L", "RGB"):
        return image.resize(size, Image.Resampling.BILINEAR).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB").resize(size, Image.Resampling.BILINEAR)


def decode_rgb(opened: OpenedImage, size: tuple[int, int]) -> np.ndarray:
    """Decode an opened image, honour EXIF orientation, convert to RGB and resize to `size`
    (w, h): uint8 (h, w, 3)."""
    try:
        image = ImageOps.exif_transpose(opened.image)
        rgb: np.ndarray = np.asarray(_resize_to_rgb(image, size), dtype=np.uint8)
        return rgb
    except (Image.DecompressionBombError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise _undecodable(opened.size, exc) from exc


def load_rgb(data: bytes, size: tuple[int, int], limits: ImageLimits) -> np.ndarray:
    """`open_image` then `decode_rgb`: uint8 (h, w, 3). Raises InvalidArgument (with a
    Reason) for empty, oversized, undecodable or decompression-bomb images."""
    return decode_rgb(open_image(data, size, limits), size)


def decode_batch(
    images: list[bytes], size: tuple[int, int], limits: ImageLimits | None = None
) -> tuple[np.ndarray, list[str]]:
    """Encoded images -> (uint8 (n, h, w, 3) model inputs, per-row error: "" when decoded),
    under `limits` (the Embedder's defaults if None) as the server would decode them. A row
    that failed is all zeros; its error names the reason like the server's status."""
    limits = limits or ImageLimits()
    width, height = size
    pixels = np.zeros((len(images), height, width, 3), dtype=np.uint8)
    errors = [""] * len(images)
    for n, data in enumerate(images):
        try:
            pixels[n] = decode_rgb(open_image(data, size, limits), size)
        except ImagesimError as exc:
            errors[n] = str(exc)
    return pixels, errors


def inception_scale(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 in [-1, 1]: the same as keras' inception_v3.preprocess_input."""
    scaled: np.ndarray = rgb.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return scaled


def preprocess(data: bytes, size: tuple[int, int], limits: ImageLimits) -> np.ndarray:
    """Image bytes -> float32 (h, w, 3) model input (the runtimes do this scaling in-graph;
    this is the reference the tests compare with)."""
    return inception_scale(load_rgb(data, size, limits))
