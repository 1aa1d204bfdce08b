"""Reading images safely: one place that turns bytes or paths into an RGB array, or a clear error.

Every entry point (CLI, storage import, web upload) goes through `load_rgb`, so EXIF orientation,
odd modes (CMYK, 16-bit, palette, alpha) and hostile files (truncated, decompression bombs) are
handled the same way everywhere.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from core.errors import UserError

# Above this many pixels we refuse to decode: a 60-megapixel photo is fine, a 1-gigapixel bomb is not.
MAX_PIXELS = 120_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


class ImageReadError(UserError, ValueError):
    """An image could not be read; the message names the file and what to do."""


# First bytes of the formats above: files are recognised by content, not by their name.
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
SNIFF_BYTES = 16


def sniff_image(head: bytes) -> bool:
    """Whether a file's first SNIFF_BYTES bytes are those of an image format probeseg reads."""
    return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _open(source: str | os.PathLike | bytes, name: str, at_least: int | None = None) -> Image.Image:
    # Messages say what is wrong in words: PIL's own texts carry object reprs and contradictory limits.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            if at_least is not None and img.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale when that
                img.draft("RGB", (at_least, at_least))  # still covers at_least a side: far less work
            img.load()  # force a full decode now: truncated files fail here, not later
        return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(
            f"{name}: the image has more than {MAX_PIXELS:,} pixels, too many to decode safely; downscale it "
            "before importing"
        ) from None
    except FileNotFoundError:
        raise ImageReadError(f"{name}: file not found") from None
    except Image.UnidentifiedImageError:
        raise ImageReadError(
            f"{name}: not an image in a format probeseg reads "
            f"({', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)})"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        truncated = "truncated" in str(exc).lower()
        raise ImageReadError(
            f"{name}: the image data is {'truncated' if truncated else 'corrupt'}; re-export or "
            "re-download the file"
        ) from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Normalise any PIL mode to 8-bit RGB (alpha composited on white, 16-bit scaled down)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size and arr.max() > 255 else 255.0
        arr8 = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
        arr8 = ((arr - lo) / max(hi - lo, 1e-12) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def load_rgb(
    source: str | os.PathLike | bytes, name: str | None = None, at_least: int | None = None
) -> np.ndarray:
    """Decode an image file (path or bytes) to an HxWx3 uint8 array with EXIF orientation applied.
    `at_least`: a JPEG may be decoded smaller, down to that many pixels a side (for a downscaled copy)."""
    label = name or (str(source) if not isinstance(source, bytes) else "<upload>")
    img = _open(source, label, at_least)
    try:  # in place: a copy of a 100-megapixel photo is 400 MB (PIL keeps 4 bytes a pixel)
        ImageOps.exif_transpose(img, in_place=True)
    except Exception:  # a broken EXIF block should not make a good image unreadable
        pass
    img = to_rgb(img)  # (the decoded image goes as soon as its RGB copy, if any, exists)
    arr = np.asarray(img, dtype=np.uint8)
    del img
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageReadError(f"{label}: image has no pixels")
    return np.ascontiguousarray(arr)


def pixel_hash(rgb: np.ndarray) -> str:
    """Content hash of decoded pixels (shape included), used as the feature-cache identity of an image."""
    h = hashlib.sha256()
    h.update(np.asarray(rgb.shape, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
    return h.hexdigest()


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside a folder, sorted by name."""
    root = Path(folder)
    if not root.is_dir():
        raise ImageReadError(f"{root}: not a folder")
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 -> size (H, W): area average when shrinking (each output pixel the mean of the pixels it
    covers), bilinear when enlarging; the image itself when the size is already that."""
    if rgb.shape[:2] == tuple(size):
        return rgb
    shrink = size[0] <= rgb.shape[0] and size[1] <= rgb.shape[1]
    method = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(rgb).resize((int(size[1]), int(size[0])), method))
