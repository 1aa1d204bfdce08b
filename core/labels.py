"""Label-map conventions shared by every package: uint8 class indices, 255 = unlabelled, VOC palette PNGs."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import UserError

IGNORE = 255  # unlabelled / ignored pixel in every label map

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


class LabelError(UserError, ValueError):
    """A label map is unreadable or inconsistent; the message names the file and the fix."""


def voc_palette() -> np.ndarray:
    """The standard PASCAL VOC colour map: 256 x 3 uint8 (index 255 is (224, 224, 192))."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def label_to_png_bytes(labels: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    """Encode an HxW uint8 label map as a palette PNG (lossless, opens as colours in any viewer)."""
    buf = io.BytesIO()
    to_palette_image(labels, palette).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def to_palette_image(labels: np.ndarray, palette: np.ndarray | None = None) -> Image.Image:
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise LabelError(f"label map must be 2-D, got shape {arr.shape}")
    img = Image.fromarray(arr.astype(np.uint8), mode="P")
    img.putpalette((voc_palette() if palette is None else np.asarray(palette, np.uint8)).reshape(-1).tolist())
    return img


def write_label_png(path: str | os.PathLike, labels: np.ndarray, palette: np.ndarray | None = None) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    to_palette_image(labels, palette).save(path, format="PNG")


def read_label_png(source: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """Read a label PNG as class indices.

    Palette ("P") and greyscale ("L") PNGs carry indices directly. An RGB PNG is mapped back through the
    VOC palette; a colour that is not in the palette is an error (it would silently become a wrong class).
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<label png>")
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        img.load()
    except FileNotFoundError:
        raise LabelError(f"{label}: label file not found") from None
    except Exception as exc:
        raise LabelError(f"{label}: not a readable label PNG ({exc})") from None
    if img.mode in ("P", "L"):
        return np.array(img, dtype=np.uint8)
    if img.mode in ("I;16", "I"):
        arr = np.array(img)
        if arr.max(initial=0) > 255:
            raise LabelError(
                f"{label}: label values above 255 found; labels must be class indices 0..254 or 255"
            )
        return arr.astype(np.uint8)
    rgb = np.array(img.convert("RGB"), dtype=np.uint8)
    pal = voc_palette().astype(np.int32)
    code = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    pal_code = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    lut = {int(c): i for i, c in reversed(list(enumerate(pal_code)))}
    uniq, inv = np.unique(code, return_inverse=True)
    missing = [hex(int(u)) for u in uniq if int(u) not in lut]
    if missing:
        raise LabelError(
            f"{label}: RGB label colours {missing[:5]} are not VOC palette colours; save labels as palette "
            "or greyscale PNGs of class indices"
        )
    return np.array([lut[int(u)] for u in uniq], dtype=np.uint8)[inv].reshape(code.shape)


def check_label_values(labels: np.ndarray, num_classes: int, name: str) -> None:
    """Raise if a label map uses an index that is neither a known class nor IGNORE."""
    bad = np.unique(labels[(labels != IGNORE) & (labels >= num_classes)])
    if bad.size:
        raise LabelError(
            f"{name}: class index {int(bad[0])} is not one of the {num_classes} classes (0..{num_classes - 1}) "
            f"and not {IGNORE} (unlabelled); fix the label or add the class to classes.txt"
        )
