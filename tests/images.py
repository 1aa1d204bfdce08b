"""Small synthetic images shared by the engine and web-app tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def two_colour(h: int = 84, w: int = 112, seed: int = 0) -> np.ndarray:
    """Left half red, right half blue, lightly textured."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    img[:, : w // 2] = (210, 40, 40)
    img[:, w // 2 :] = (40, 70, 210)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
