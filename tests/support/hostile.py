"""Inputs a hostile caller would send, for tests of the limits."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def png_claiming(width: int, height: int, bits: int = 8, rgb: bool = False) -> bytes:
    """A tiny valid-looking greyscale (or `rgb`) PNG whose header claims `width` x `height`
    pixels of `bits` (8 or 16) a sample (a decompression bomb's header): anything that decodes
    it before checking the size would allocate at least width x height x bits / 8 bytes."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    # The IHDR chunk follows the 8-byte signature: length (4), type (4), width, height (4+4)...
    ihdr = data[12:29]
    assert ihdr[:4] == b"IHDR"
    ihdr[4:12] = struct.pack(">II", width, height)
    ihdr[12] = bits
    ihdr[13] = 2 if rgb else 0  # the colour type
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small RGB JPEG whose frame header (SOF0) claims `width` x `height` pixels: its header
    reads like a large photo's; its data decodes to nothing sensible."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 200)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)
