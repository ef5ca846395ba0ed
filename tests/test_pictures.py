"""Pictures of image files (decoded small, limits checked from the header) and contact sheets."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imagesim.client.pictures import (
    ACCENT,
    TILE_BACKGROUND,
    Tile,
    check_image,
    contact_sheet,
    fit_text,
    font,
    picture,
)
from imagesim.errors import InvalidArgument, Reason
from tests.support.hostile import png_claiming
from tests.support.samples import photo


def encoded(image: Image.Image, kind: str, **options) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    buffer.seek(0)
    return buffer


def test_a_photo_is_shrunk_into_the_box_keeping_its_shape():
    cat = photo("chelsea")  # 451 x 300
    small = picture(encoded(cat.convert("RGB"), "JPEG"), 128)
    assert small.mode == "RGB" and max(small.size) == 128
    assert small.size[0] / small.size[1] == pytest.approx(451 / 300, rel=0.03)
    # Still the cat: close to a plain resize of the original.
    reference = np.asarray(cat.convert("RGB").resize(small.size), dtype=float)
    assert np.abs(np.asarray(small, dtype=float) - reference).mean() < 12


def test_exif_orientation_transparency_and_16_bit_pictures():
    wide = Image.new("RGB", (200, 100), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    turned = picture(encoded(wide, "JPEG", exif=exif.tobytes()), 64)
    assert turned.size == (32, 64)
    clear = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    assert picture(encoded(clear, "PNG"), 32).getpixel((5, 5)) == (255, 255, 255)
    ramp = np.linspace(1000, 3000, 100 * 200).reshape(100, 200).astype(np.uint16)
    grey = picture(encoded(Image.fromarray(ramp), "PNG"), 100)
    low, high = grey.convert("L").getextrema()
    assert low < 10 and high > 245  # stretched, not clipped to white


def test_a_bomb_is_refused_from_its_header_and_junk_is_undecodable():
    bomb = png_claiming(20_000, 5_000)  # 100 Mpx claimed in 70 bytes
    with pytest.raises(InvalidArgument) as refused:
        picture(io.BytesIO(bomb), 64, max_pixels=80_000_000)
    assert refused.value.reason == Reason.IMAGE_TOO_MANY_PIXELS
    assert refused.value.metadata == {"limit": "80000000"}
    deep = png_claiming(8944, 8944, bits=16)  # 80 Mpx, but 160 MB of 16-bit pixels
    for check in (lambda: check_image(deep, (64, 64)), lambda: picture(io.BytesIO(deep), 64)):
        with pytest.raises(InvalidArgument, match=f"{8944 * 8944 * 2:,} bytes decoded") as heavy:
            check()
        assert heavy.value.reason == Reason.IMAGE_TOO_LARGE
    # A big JPEG is decoded at a fraction of its size: that is what counts.
    big = encoded(Image.new("RGB", (8000, 6000), (90, 120, 200)), "JPEG")
    assert picture(big, 64, max_decoded_bytes=8 * 1024 * 1024).size == (64, 48)
    huge = png_claiming(50_000, 50_000)  # over Pillow's own limit: refused when opened
    for check in (lambda: check_image(huge, (64, 64)), lambda: picture(io.BytesIO(huge), 64)):
        with pytest.raises(InvalidArgument) as refused:
            check()
        assert refused.value.reason == Reason.IMAGE_TOO_MANY_PIXELS
    for junk in (b"plain text, not an image", b""):
        with pytest.raises(InvalidArgument) as bad:
            check_image(junk, (64, 64))
        assert bad.value.reason == Reason.IMAGE_UNDECODABLE
        assert "image format" in bad.value.message and "BytesIO" not in bad.value.message
    whole = encoded(photo("coffee").convert("RGB"), "JPEG").getvalue()
    with pytest.raises(InvalidArgument) as truncated:
        picture(io.BytesIO(whole[: len(whole) // 3]), 64)
    assert truncated.value.reason == Reason.IMAGE_UNDECODABLE


def test_a_contact_sheet_lays_tiles_in_rows_with_the_query_marked():
    cat = picture(encoded(photo("chelsea").convert("RGB"), "PNG"), 100)
    tiles = [Tile(cat, ("query", "cat.png"), highlight=True)]
    tiles += [Tile(cat, (f"#{n}   0.0{n}00", f"photos/cat_{n}.jpg")) for n in range(1, 7)]
    tiles.append(Tile(None, ("#7   0.0700", "missing.jpg")))
    sheet = contact_sheet(tiles, "cat.png: top 7", tile_size=100, columns=4)
    pad = 14
    assert sheet.size == (pad + 4 * (100 + pad), 40 + pad + 2 * (100 + 2 * 18 + 8 + pad))
    top = 40 + pad
    assert sheet.getpixel((pad - 2, top + 50)) == ACCENT  # the query's frame
    assert sheet.getpixel((pad + 114 - 2, top + 50)) != ACCENT  # a result has none
    # The missing picture is a grey box, the others are photos.
    missing = sheet.crop((pad + 3 * 114, top + 158, pad + 3 * 114 + 100, top + 258))
    assert missing.getpixel((5, 5)) == TILE_BACKGROUND
    photo_tile = np.asarray(sheet.crop((pad + 114, top, pad + 214, top + 100)), dtype=float)
    assert photo_tile.std() > 20


def test_long_keys_keep_their_end():
    face = font(14)
    key = "/very/long/folder/of/holiday/photos/2024/summer/IMG_0042.jpg"
    short = fit_text(key, face, 120)
    assert short.startswith("…") and short.endswith("IMG_0042.jpg") and face.getlength(short) <= 120
    assert fit_text("a.jpg", face, 120) == "a.jpg"


def test_the_client_and_the_embedder_judge_an_image_by_one_rule():
    """imagesim.images.plan_decode, called by the Embedder, the client's pictures and the web
    server: Pillow keeps RGB in 4 bytes a pixel, and a large JPEG counts at the scale it is
    decoded at (issue 16: the web server counted 3 bytes at full size, the Embedder 4 at
    1/8, so each refused what the other accepted)."""
    from imagesim.embedder_server.preprocess import ImageLimits, open_image
    from tests.support.hostile import jpeg_claiming

    model = (299, 299)
    photo_72mpx = jpeg_claiming(9000, 8000)  # 288 MB at full size, 4.5 MB at 1/8
    assert open_image(photo_72mpx, model, ImageLimits()).image.size == (1125, 1000)
    check_image(photo_72mpx, model)
    rgb_36mpx = png_claiming(6000, 6000, rgb=True)  # 144 MB decoded (108 MB at 3 bytes)
    for check in (
        lambda: open_image(rgb_36mpx, model, ImageLimits()),
        lambda: check_image(rgb_36mpx, model),
        lambda: picture(io.BytesIO(rgb_36mpx), 64),
    ):
        with pytest.raises(InvalidArgument, match="144,000,000 bytes decoded") as refused:
            check()
        assert refused.value.reason == Reason.IMAGE_TOO_LARGE
