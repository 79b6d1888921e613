#!/usr/bin/env python3
"""Writes small files that decode to very large images (for the memory-bound test).

Each is just under the default pixel limit (INFERQ_MAX_PIXELS, 40 MP) and a
few hundred KB to a few MB on the wire, so it passes every size check of the
API and lands whole on a worker's decoder:

  png16-rgba-exif6.png  16-bit RGBA, EXIF orientation 6 (a sideways phone photo)
  cmyk.jpg              CMYK JPEG (no reduced-scale decode for CMYK)
  rgb.jpg               baseline RGB JPEG (decoded at 1/8 scale)
  rgba-lossless.webp    lossless WebP with alpha (decodes to RGBA)
  frames.gif            a full-size first frame and many small ones
  rle8.bmp              8-bit palette BMP, run-length encoded

Usage: make_hostile_images.py OUT_DIR [WIDTH HEIGHT]. Needs Pillow (the
project venv has it). PNG and BMP are written by hand, streaming, so even a
40 MP 16-bit image never exists in this process's memory.
"""

import os
import struct
import sys
import zlib

from PIL import Image


def png16_rgba_exif(path, w, h, orientation=6):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">HHHIH", 1, 0x0112, 3, 1, orientation) + b"\x00" * 6
    # First row: a horizontal ramp (filter None); every other row repeats it
    # with the Up filter (all zero bytes), which deflate shrinks to nothing.
    first = bytearray([0])
    for x in range(w):
        v = (x * 65535) // max(w - 1, 1)
        first += struct.pack(">HHHH", v, 65535 - v, 30000, 65535)
    up = bytes([2]) + bytes(w * 8)
    z = zlib.compressobj(6)
    idat = bytearray(z.compress(bytes(first)))
    for _ in range(h - 1):
        idat += z.compress(up)
    idat += z.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0)))
        f.write(chunk(b"eXIf", tiff))
        f.write(chunk(b"IDAT", bytes(idat)))
        f.write(chunk(b"IEND", b""))


def gradient(w, h):
    return Image.linear_gradient("L").resize((w, h), Image.Resampling.NEAREST)


def jpegs(out, w, h):
    g = gradient(w, h)
    inv = g.point(lambda v: 255 - v)
    flat = Image.new("L", (w, h), 40)
    Image.merge("CMYK", (g, inv, flat, flat)).save(os.path.join(out, "cmyk.jpg"), quality=70)
    Image.merge("RGB", (g, inv, flat)).save(os.path.join(out, "rgb.jpg"), quality=70)


def webp(out, w, h):
    g = gradient(w, h).point(lambda v: v & 0xF0)
    img = Image.merge("RGBA", (g, g, Image.new("L", (w, h), 90), Image.new("L", (w, h), 200)))
    img.save(os.path.join(out, "rgba-lossless.webp"), lossless=True, quality=0, method=0)


def gif(out, w, h, frames=200):
    # Pillow writes the full-size first frame; the other frames (1x1 pixel
    # each, LZW written by hand) are spliced in before the trailer, which
    # keeps the file small and quick to make.
    path = os.path.join(out, "frames.gif")
    base = Image.new("P", (w, h), 1)
    base.putpalette([0, 0, 0, 200, 30, 30, 30, 200, 30] + [0] * (253 * 3))
    base.save(path)
    with open(path, "rb") as f:
        data = f.read()
    assert data.endswith(b"\x3b")
    # Graphic control (40 ms), a 1x1 image at (i, 0): LZW min code size 2,
    # codes clear(4), 0, end(5) in 3 bits each = 0x44 0x01.
    small = b"".join(
        b"\x21\xf9\x04\x00\x04\x00\x00\x00"
        + b"\x2c" + struct.pack("<HHHH", i % w, 0, 1, 1) + b"\x00"
        + b"\x02\x02\x44\x01\x00"
        for i in range(frames - 1)
    )
    with open(path, "wb") as f:
        f.write(data[:-1] + small + b"\x3b")


def bmp_rle8(path, w, h):
    # Each row: runs of at most 255 pixels of one palette index, then end of line.
    row = bytearray()
    x = 0
    while x < w:
        n = min(255, w - x)
        row += bytes([n, (x // 255) % 4])
        x += n
    row += b"\x00\x00"
    data = bytes(row) * (h - 1) + bytes(row[:-2]) + b"\x00\x01"  # end of bitmap
    palette = b"".join(bytes([b, g, r, 0]) for r, g, b in [(220, 20, 20), (20, 220, 20), (20, 20, 220), (200, 200, 200)])
    palette += bytes(4 * (256 - 4))
    header_size = 14 + 40 + len(palette)
    with open(path, "wb") as f:
        f.write(b"BM" + struct.pack("<IHHI", header_size + len(data), 0, 0, header_size))
        f.write(struct.pack("<IiiHHIIiiII", 40, w, h, 1, 8, 1, len(data), 2835, 2835, 256, 0))
        f.write(palette)
        f.write(data)


def main():
    out = sys.argv[1]
    w, h = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (7296, 5472)
    os.makedirs(out, exist_ok=True)
    png16_rgba_exif(os.path.join(out, "png16-rgba-exif6.png"), w, h)
    jpegs(out, w, h)
    webp(out, w, h)
    gif(out, w, h)
    bmp_rle8(os.path.join(out, "rle8.bmp"), w, h)


if __name__ == "__main__":
    main()
