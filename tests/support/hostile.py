"""Inputs a hostile caller would send, for tests of the limits."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def png_claiming(width: int, height: int, bits: int = 8) -> bytes:
    """A tiny valid-looking greyscale PNG whose header claims `width` x `height` pixels of
    `bits` (8 or 16) each (a decompression bomb's header): anything that decodes it before
    checking the size would allocate width x height x bits / 8 bytes."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    # The IHDR chunk follows the 8-byte signature: length (4), type (4), width, height (4+4)...
    ihdr = data[12:29]
    assert ihdr[:4] == b"IHDR"
    ihdr[4:12] = struct.pack(">II", width, height)
    ihdr[12] = bits
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)
