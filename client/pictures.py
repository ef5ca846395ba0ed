"""Pictures of results, with Pillow: small copies of image files, decoded at reduced size with
the pixel limit checked from the header first, and contact sheets (a query, then its
neighbours with rank and distance under each).

Used by the CLI (`--sheet`, `duplicates --sheet-dir`) and the web server's thumbnails.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from PIL import Image, ImageDraw, ImageFont, ImageOps

from imagesim.images import NOT_AN_IMAGE, plan_decode, undecodable
from imagesim.limits import DEFAULT_MAX_DECODED_BYTES, DEFAULT_MAX_PIXELS

BACKGROUND = (255, 255, 255)
TILE_BACKGROUND = (238, 239, 241)
TEXT = (33, 37, 41)
MUTED = (108, 117, 125)
ACCENT = (13, 110, 253)


def picture(
    source: Path | BinaryIO,
    box: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> Image.Image:
    """An RGB copy of an image file that fits in `box` x `box` pixels.

    Only the header is read before the size checks (imagesim.images.plan_decode, the
    Embedder's rule: InvalidArgument IMAGE_TOO_MANY_PIXELS over `max_pixels`, IMAGE_TOO_LARGE
    if the pixels to decode would take more than `max_decoded_bytes`); JPEGs are decoded at
    the smallest scale that still covers the box, and that smaller size is what counts.
    EXIF orientation is applied and transparency laid on white. A file Pillow cannot read is
    InvalidArgument IMAGE_UNDECODABLE; a path that cannot be opened raises its OSError."""
    try:
        with Image.open(source) as image:
            plan_decode(image, (box, box), max_pixels, max_decoded_bytes)
            upright = ImageOps.exif_transpose(image)
            upright.thumbnail((box, box), Image.Resampling.LANCZOS, reducing_gap=3.0)
            return _flatten(upright)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise  # the file, not its content: the caller says what is missing
    except NOT_AN_IMAGE as exc:
        raise undecodable(exc) from None


def check_image(
    data: bytes,
    size: tuple[int, int],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> tuple[int, int]:
    """Whether an encoded image decoded for `size` (width, height) keeps within the limits,
    from its header alone (the rule of `picture` and the Embedder); returns its own (width,
    height). InvalidArgument with the reason if not; IMAGE_UNDECODABLE if Pillow does not
    recognise it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            plan_decode(image, size, max_pixels, max_decoded_bytes)
            return image.size
    except NOT_AN_IMAGE as exc:
        raise undecodable(exc) from None


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: stretch the used range to 8 bits instead of clipping to white.
        wide = image.convert("I")
        low, high = cast(tuple[float, float], wide.getextrema())  # one band: (min, max)
        scale = 255.0 / max(1, high - low)
        return wide.point(lambda v: v * scale - low * scale).convert("L").convert("RGB")
    return image.convert("RGB")


def jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


# ---- contact sheets -------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """One cell of a contact sheet: a picture (None: a grey "no image" box) and caption lines."""

    picture: Image.Image | None
    lines: tuple[str, ...]
    highlight: bool = False


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled scalable font (no system fonts needed)."""
    return ImageFont.load_default(size=size)


def fit_text(text: str, face: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> str:
    """`text`, shortened from the left with an ellipsis to fit `width` pixels (the end of a
    path is what tells files apart)."""
    if face.getlength(text) <= width:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest suffix that fits after the ellipsis
        middle = (low + high) // 2
        if face.getlength("…" + text[middle:]) <= width:
            high = middle
        else:
            low = middle + 1
    return "…" + text[low:]


def contact_sheet(
    tiles: Sequence[Tile], title: str = "", tile_size: int = 180, columns: int = 6
) -> Image.Image:
    """A grid of tiles, `columns` wide, with captions under each and a title line on top."""
    columns = max(1, min(columns, len(tiles) or 1))
    rows = max(1, -(-len(tiles) // columns))
    pad, line = 14, 18
    caption = max((len(t.lines) for t in tiles), default=0) * line + 8
    title_height = 40 if title else 0
    cell_w, cell_h = tile_size, tile_size + caption
    sheet = Image.new(
        "RGB",
        (pad + columns * (cell_w + pad), title_height + pad + rows * (cell_h + pad)),
        BACKGROUND,
    )
    draw = ImageDraw.Draw(sheet)
    body, small, heading = font(14), font(12), font(17)
    if title:
        draw.text(
            (pad, 12), fit_text(title, heading, sheet.width - 2 * pad), fill=TEXT, font=heading
        )
    for n, tile in enumerate(tiles):
        x = pad + (n % columns) * (cell_w + pad)
        y = title_height + pad + (n // columns) * (cell_h + pad)
        draw.rectangle((x, y, x + tile_size - 1, y + tile_size - 1), fill=TILE_BACKGROUND)
        if tile.picture is not None:
            pic = tile.picture
            sheet.paste(pic, (x + (tile_size - pic.width) // 2, y + (tile_size - pic.height) // 2))
        else:
            message = "no image"
            draw.text(
                (x + (tile_size - small.getlength(message)) / 2, y + tile_size / 2 - 7),
                message,
                fill=MUTED,
                font=small,
            )
        if tile.highlight:
            draw.rectangle(
                (x - 3, y - 3, x + tile_size + 2, y + tile_size + 2), outline=ACCENT, width=3
            )
        for i, text in enumerate(tile.lines):
            face, colour = (body, TEXT) if i == 0 else (small, MUTED)
            draw.text(
                (x, y + tile_size + 6 + i * line),
                fit_text(text, face, tile_size),
                fill=ACCENT if tile.highlight and i == 0 else colour,
                font=face,
            )
    return sheet
