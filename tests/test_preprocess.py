"""Image decoding and InceptionV3 preprocessing, in-process."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imagesim.embedder_server.preprocess import (
    ImageLimits,
    inception_scale,
    load_rgb,
    preprocess,
)
from imagesim.errors import InvalidArgument
from tests.conftest import jpeg_bytes, synthetic_image

SIZE = (299, 299)
LIMITS = ImageLimits()


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def test_output_shape_range_and_keras_scaling():
    import keras

    rgb = load_rgb(jpeg_bytes(synthetic_image(1)), SIZE, LIMITS)
    assert rgb.shape == (299, 299, 3) and rgb.dtype == np.uint8
    x = preprocess(jpeg_bytes(synthetic_image(1)), SIZE, LIMITS)
    assert x.dtype == np.float32 and x.min() >= -1.0 and x.max() <= 1.0
    expected = keras.applications.inception_v3.preprocess_input(rgb.astype(np.float32))
    np.testing.assert_allclose(inception_scale(rgb), expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "1"])
def test_every_mode_becomes_rgb(mode):
    image = synthetic_image(2, (64, 48)).convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    rgb = load_rgb(encoded(image, fmt), SIZE, LIMITS)
    assert rgb.shape == (299, 299, 3)


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    rgb = load_rgb(encoded(image, "PNG"), SIZE, LIMITS)
    assert (rgb == 255).all()


def test_exif_orientation_is_honoured():
    # Left half black, right half white; EXIF says "rotate 90 CW to display" (orientation 6).
    pixels = np.zeros((100, 200, 3), dtype=np.uint8)
    pixels[:, 100:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), quality=95)
    rgb = load_rgb(data, SIZE, LIMITS).astype(int)
    # Turned 90 degrees clockwise for display, the left (black) half ends up on top.
    assert rgb[:100].mean() < 50 and rgb[200:].mean() > 200


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty image"),
        (b"definitely not an image", "not a recognised image format"),
        (jpeg_bytes(synthetic_image(3))[:300], "cannot decode image"),
    ],
)
def test_bad_images_are_invalid_argument(data, message):
    with pytest.raises(InvalidArgument, match=message):
        preprocess(data, SIZE, LIMITS)


def test_decompression_bomb_is_refused_before_decoding():
    bomb = encoded(Image.new("1", (9_000, 9_500)), "PNG")  # 85.5 Mpx in a few KB
    assert len(bomb) < 100_000
    with pytest.raises(InvalidArgument, match="decompression bomb"):
        preprocess(bomb, SIZE, LIMITS)


def test_file_size_limit():
    with pytest.raises(InvalidArgument, match="the limit is 1,000 bytes"):
        preprocess(b"x" * 1001, SIZE, ImageLimits(max_bytes=1000))
