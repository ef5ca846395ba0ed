"""Decode memory is bounded (issue 8, item 3): a few small files that decode to huge images
cannot exhaust the embedder. Per image: decoded bytes (mode-aware) and no float64 copies;
across images: the server-wide decode budget in pixels."""

from __future__ import annotations

import io
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import pytest
from PIL import Image

from imagesim.client.embedder_client import EmbedderClient
from imagesim.embedder_server.decode_budget import DecodeBudget
from imagesim.embedder_server.preprocess import ImageLimits, load_rgb, open_image
from imagesim.errors import InvalidArgument, Reason, ResourceExhausted
from tests.conftest import jpeg_bytes, synthetic_image
from tests.support.launch import start_embedder

SIZE = (299, 299)


def sixteen_bit_png(side: int) -> bytes:
    """A 16-bit greyscale PNG of side x side pixels that compresses to almost nothing."""
    image = Image.new("I;16", (side, side), 0)
    ramp = np.arange(256 * 256, dtype=np.uint16).reshape(256, 256)
    image.paste(Image.fromarray(ramp), (0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_sixteen_bit_images_decode_without_wide_copies():
    data = sixteen_bit_png(4000)  # 16 Mpx, a few KB
    tracemalloc.start()
    try:
        rgb = load_rgb(data, SIZE, ImageLimits())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rgb.shape == (299, 299, 3) and rgb.max() > 0  # the ramp survived the stretch
    # The 8-bit result is 1 byte a pixel; a float64 copy of the image alone would be 8.
    assert peak < 2 * 4000 * 4000, peak


def test_sixteen_bit_values_are_stretched_to_the_full_8_bit_range():
    values = np.linspace(1000, 3000, 64 * 64).astype(np.uint16).reshape(64, 64)
    rgb = load_rgb(png(Image.fromarray(values)), (64, 64), ImageLimits())
    assert rgb.min() == 0 and rgb.max() >= 250


@pytest.mark.parametrize(
    "mode, allowed", [("L", True), ("I;16", True), ("RGB", False), ("I", False)]
)
def test_decoded_size_limit_counts_bytes_per_pixel_of_the_mode(mode, allowed):
    # 3000 x 3000: 9 MB as L, 18 MB as I;16, 36 MB as RGB or 32-bit I (Pillow keeps 4 bytes).
    limits = ImageLimits(max_decoded_bytes=20_000_000)
    buffer = io.BytesIO()
    image = Image.new(mode, (3000, 3000))
    if mode == "I":  # PNG cannot hold 32-bit integers
        image.save(buffer, "TIFF", compression="tiff_adobe_deflate")
    else:
        image.save(buffer, "PNG")
    data = buffer.getvalue()
    if allowed:
        assert open_image(data, SIZE, limits).pixels == 9_000_000
    else:
        with pytest.raises(InvalidArgument, match="bytes decoded; the limit is 20,000,000") as err:
            open_image(data, SIZE, limits)
        assert err.value.reason == Reason.IMAGE_TOO_LARGE.value
        assert err.value.metadata["limit"] == "20000000"


def test_large_jpegs_are_decoded_at_reduced_scale():
    data = jpeg_bytes(synthetic_image(1, (2400, 1800)))
    opened = open_image(data, SIZE, ImageLimits())
    assert opened.image.size == (600, 450)  # 1/4 scale: still >= 299 on both sides
    assert load_rgb(data, SIZE, ImageLimits()).shape == (299, 299, 3)


def test_errors_carry_reasons():
    cases = [
        (b"", ImageLimits(), Reason.IMAGE_EMPTY),
        (b"x" * 101, ImageLimits(max_bytes=100), Reason.IMAGE_TOO_LARGE),
        (b"not an image", ImageLimits(), Reason.IMAGE_UNDECODABLE),
        (png(Image.new("1", (9000, 9500))), ImageLimits(), Reason.IMAGE_TOO_MANY_PIXELS),
    ]
    for data, limits, reason in cases:
        with pytest.raises(InvalidArgument) as err:
            load_rgb(data, SIZE, limits)
        assert err.value.reason == reason.value


# ---- the budget across images --------------------------------------------------------------


def test_budget_makes_images_wait_for_room_then_lets_them_in():
    budget = DecodeBudget(100, wait_seconds=60)
    first = budget.reserve(70)
    entered = threading.Event()

    def second() -> None:
        with budget.reserve(50):
            entered.set()

    waiter = threading.Thread(target=second)
    waiter.start()
    assert not entered.wait(0.2)  # 70 + 50 > 100: it waits
    first.release()
    assert entered.wait(30)
    waiter.join(30)
    assert budget.in_use == 0


def test_budget_refuses_after_the_wait_and_never_accepts_an_image_larger_than_itself():
    budget = DecodeBudget(100, wait_seconds=0.05)
    held = budget.reserve(80)
    with pytest.raises(ResourceExhausted) as err:
        budget.reserve(30)
    assert err.value.reason == Reason.DECODE_BUDGET_EXHAUSTED.value
    assert err.value.metadata == {"limit": "100"}
    held.release()
    with pytest.raises(InvalidArgument) as err:
        budget.reserve(101)
    assert err.value.reason == Reason.IMAGE_TOO_MANY_PIXELS.value
    assert budget.reserve(100).pixels == 100


def test_many_concurrent_huge_pngs_leave_the_server_bounded_and_serving(tmp_path):
    """16 x 152 KiB PNGs of 8944 x 8944 16-bit pixels at once (80 Mpx each, 1.6 GiB each on
    the old decode path): every call either embeds or gets RESOURCE_EXHAUSTED, the server's
    memory stays within ~1.5 GB of where it started, and it keeps serving."""
    bomb = sixteen_bit_png(8944)
    assert len(bomb) < 200 * 1024
    server = start_embedder(
        tmp_path / "embedder.log",
        "--weights",
        "none",
        "--precision",
        "float32",
        "--decode-budget-mpx",
        "100",
        "--max-decoded-mb",
        "200",  # let 160 MB images through (the default refuses them): the budget bounds them
    )
    process = psutil.Process(server.process.pid)
    peak = start = process.memory_info().rss
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, process.memory_info().rss)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with EmbedderClient(server.address, timeout=300) as client:

            def call(_: int) -> str:
                try:
                    client.embed(bomb)
                    return "OK"
                except ResourceExhausted as exc:
                    assert "decode budget" in exc.message
                    return "RESOURCE_EXHAUSTED"

            with ThreadPoolExecutor(16) as pool:
                outcomes = list(pool.map(call, range(16)))
            assert "OK" in outcomes and set(outcomes) <= {"OK", "RESOURCE_EXHAUSTED"}
            assert client.embed(jpeg_bytes(synthetic_image(3))).shape == (2048,)
    finally:
        done.set()
        watcher.join()
        server.stop()
    assert peak - start < 1.5e9, (start, peak)


def test_the_default_limit_refuses_the_8944_pixel_16_bit_png_from_its_header():
    with pytest.raises(InvalidArgument, match="bytes decoded; the limit is 134,217,728") as err:
        open_image(sixteen_bit_png(8944), SIZE, ImageLimits())
    assert err.value.reason == Reason.IMAGE_TOO_LARGE.value
