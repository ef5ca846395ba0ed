"""Image bytes -> the model's input array, exactly as InceptionV3 expects it.

Decoding happens in the caller's thread (gRPC handler threads), never on the model thread.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imagesim.errors import InvalidArgument, Reason

MiB = 1024 * 1024


@dataclass(frozen=True)
class ImageLimits:
    """What an accepted image may be at most."""

    max_bytes: int = 32 * MiB
    # decoded width x height; more is a decompression bomb (below Pillow's own warning level)
    max_pixels: int = 80_000_000


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: palettes and alpha are composited over white, CMYK and grey
    converted, 16/32-bit grey rescaled to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0
        return Image.fromarray(scaled.astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")


def load_rgb(data: bytes, size: tuple[int, int], limits: ImageLimits) -> np.ndarray:
    """Decode `data`, honour EXIF orientation, convert to RGB and resize to `size` (w, h).

    Returns uint8 (h, w, 3). Raises InvalidArgument for empty, oversized, undecodable or
    decompression-bomb images.
    """
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
        width, height = image.size
        if width * height > limits.max_pixels:
            raise InvalidArgument(
                f"image is {width}x{height} = {width * height:,} pixels; the limit is "
                f"{limits.max_pixels:,} (decompression bomb?)",
                reason=Reason.IMAGE_TOO_MANY_PIXELS,
                metadata={"limit": str(limits.max_pixels)},
            )
        if image.format == "JPEG":
            image.draft("RGB", size)  # DCT scaling: decode large JPEGs at reduced size
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
        image = image.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)
    except InvalidArgument:
        raise
    except Image.DecompressionBombError as exc:
        raise InvalidArgument(
            f"image rejected as a decompression bomb: {exc}",
            reason=Reason.IMAGE_TOO_MANY_PIXELS,
            metadata={"limit": str(limits.max_pixels)},
        ) from exc
    except UnidentifiedImageError as exc:
        raise InvalidArgument(
            f"cannot decode image ({len(data):,} bytes): not a recognised image format",
            reason=Reason.IMAGE_UNDECODABLE,
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidArgument(
            f"cannot decode image ({len(data):,} bytes): {exc}", reason=Reason.IMAGE_UNDECODABLE
        ) from exc


def inception_scale(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 in [-1, 1]: the same as keras' inception_v3.preprocess_input."""
    return rgb.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def preprocess(data: bytes, size: tuple[int, int], limits: ImageLimits) -> np.ndarray:
    """Image bytes -> float32 (h, w, 3) model input."""
    return inception_scale(load_rgb(data, size, limits))
