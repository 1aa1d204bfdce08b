"""Hostile and odd inputs, each as (file name, bytes): what users and attackers upload. Shared by the
reliability tests (webapp uploads, folder import) and the bench soak."""

from __future__ import annotations

import functools
import io
import re
import struct
import zipfile
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image

# What a message shown to a user must never contain: object reprs, addresses, tracebacks, exception names.
INTERNALS = re.compile(r"<[a-zA-Z_.]+ object|0x[0-9a-f]{6,}|Traceback|Error:|\bKeyError\b|\bsqlite3?\b", re.I)


def disk_name(name: str, limit: int = 120) -> str:
    """A hostile upload name as a file name that can be written to disk (for folder imports)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.rsplit("/", 1)[-1])[:limit] or "file"


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _rgb(h: int = 24, w: int = 32, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def _png_claiming(w: int, h: int, idat: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", idat or zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


@functools.cache
def _huge_grey_png(side: int) -> bytes:
    """A real, valid side x side greyscale PNG (small on disk: one colour), streamed through zlib."""
    comp = zlib.compressobj(1)
    rows = (b"\x00" + b"\x80" * side) * 100
    out = [comp.compress(rows) for _ in range(side // 100)]
    out.append(comp.flush())
    return _png_claiming(side, side, b"".join(out))


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _exif_rotated() -> bytes:
    img = _rgb(20, 40, 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    return _save(img, "JPEG", exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [_rgb(16, 16, s).convert("P") for s in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def _tiff_stack() -> bytes:
    buf = io.BytesIO()
    pages = [_rgb(16, 16, s) for s in range(3)]
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    return buf.getvalue()


def _float_tiff() -> bytes:
    arr = np.linspace(-3.0, 7.0, 20 * 30, dtype=np.float32).reshape(20, 30)
    return _save(Image.fromarray(arr, mode="F"), "TIFF")


def _sixteen_bit(fmt: str) -> bytes:
    arr = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80).astype(np.uint16)
    return _save(Image.fromarray(arr, mode="I;16"), fmt)


def _palette(transparent: bool) -> bytes:
    img = _rgb(16, 16, 5).convert("P")
    return _save(img, "PNG", transparency=0) if transparent else _save(img, "PNG")


def _broken_exif_jpeg() -> bytes:
    data = _save(_rgb(16, 16, 8), "JPEG")
    app1 = b"\xff\xe1" + struct.pack(">H", 20) + b"Exif\x00\x00" + b"\xff" * 12
    return data[:2] + app1 + data[2:]


def _zip_bomb() -> bytes:
    return _zip({"bomb.png": b"\x00" * (64 * 2**20)})  # 64 MiB of zeros in ~64 KiB


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


# name -> (file name, maker). Every one must end as an imported image or a clear refusal.
HOSTILE: dict[str, tuple[str, Callable[[], bytes]]] = {
    "empty": ("empty.png", lambda: b""),
    "truncated-jpeg": ("trunc.jpg", lambda: _truncate(_save(_rgb(64, 64), "JPEG"))),
    "truncated-png": ("trunc.png", lambda: _truncate(_save(_rgb(64, 64), "PNG"))),
    "corrupt-png": ("corrupt.png", lambda: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3),
    "text-as-jpg": ("notes.jpg", lambda: b"this is a text file, not a photo\n" * 20),
    "html-as-gif": ("page.gif", lambda: b"<html><script>alert(1)</script></html>"),
    "random-bytes-png": ("noise.png", lambda: np.random.default_rng(1).bytes(4096)),
    "bomb-header": ("bomb.png", lambda: _png_claiming(100_000, 100_000)),
    "20000x20000": ("huge.png", lambda: _huge_grey_png(20_000)),
    "cmyk-jpeg": ("cmyk.jpg", lambda: _save(_rgb().convert("CMYK"), "JPEG")),
    "16-bit-png": ("deep.png", lambda: _sixteen_bit("PNG")),
    "16-bit-tiff": ("deep.tif", lambda: _sixteen_bit("TIFF")),
    "float-tiff": ("float.tif", _float_tiff),
    "palette": ("pal.png", lambda: _palette(False)),
    "palette-transparent": ("paltr.png", lambda: _palette(True)),
    "rgba": ("alpha.png", lambda: _save(_rgb().convert("RGBA"), "PNG")),
    "grey-alpha": ("la.png", lambda: _save(_rgb().convert("LA"), "PNG")),
    "greyscale-jpeg": ("grey.jpg", lambda: _save(_rgb().convert("L"), "JPEG")),
    "exif-rotated": ("rotated.jpg", _exif_rotated),
    "broken-exif": ("badexif.jpg", _broken_exif_jpeg),
    "animated-gif": ("anim.gif", _animated_gif),
    "tiff-stack": ("stack.tif", _tiff_stack),
    "1x1": ("dot.png", lambda: _save(_rgb(1, 1), "PNG")),
    "bmp": ("old.bmp", lambda: _save(_rgb(), "BMP")),
    "webp": ("modern.webp", lambda: _save(_rgb(), "WEBP")),
    "no-extension-jpeg": ("photo", lambda: _save(_rgb(20, 20, 9), "JPEG")),
    "traversal-name": ("../../../../etc/evil.png", lambda: _save(_rgb(10, 10, 10), "PNG")),
    "very-long-name": ("x" * 300 + ".png", lambda: _save(_rgb(10, 10, 11), "PNG")),
    "unicode-name": ("猫🐱\u202eevil\u0301.png", lambda: _save(_rgb(10, 10, 12), "PNG")),
    "control-chars-name": ("a\x00b\x1b[31mred\n.png", lambda: _save(_rgb(10, 10, 13), "PNG")),
    "zip-slip": (
        "slip.zip",
        lambda: _zip(
            {"../../outside.png": _save(_rgb(8, 8, 14), "PNG"), "/abs/evil.png": _save(_rgb(8, 8, 15), "PNG")}
        ),
    ),
    "zip-bomb": ("bomb.zip", _zip_bomb),
    "nested-zip": (
        "nested.zip",
        lambda: _zip({"inner.zip": _zip({"deep.png": _save(_rgb(8, 8, 16), "PNG")})}),
    ),
    "corrupt-zip": ("broken.zip", lambda: b"PK\x03\x04" + b"\x00" * 100),
}
