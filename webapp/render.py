"""Pixels for the page: class colours, label layers for the editor, overlays, heatmaps, points, boxes.

Pure numpy/PIL functions (no gradio), tested directly. Label maps are HxW uint8 class indices with
255 = unlabelled; `palette` arrays are 256x3 uint8 with each class's colour at its index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from core.errors import InputError
from core.labels import IGNORE
from storage import ClassInfo

VIEW_MAX_SIDE = 768  # longer side of the analysis views
GAP = 8  # pixels between panels of the side-by-side view
PANE_ASPECT = 1.07  # width / height of the analysis view's pane (about 514 x 480 px at 1366 x 768)


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    c = colour.strip().lstrip("#")
    if len(c) == 3:
        c = "".join(ch * 2 for ch in c)
    if len(c) != 6:
        raise InputError(f"not a colour: {colour!r} (expected #rrggbb)")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def normalise_colour(value: str) -> str:
    """'#RRGGBB', 'rgb(r, g, b)' or 'rgba(r, g, b, a)' (what gr.ColorPicker may send) -> '#rrggbb'."""
    v = (value or "").strip().lower()
    if v.startswith("rgb"):
        nums = v[v.index("(") + 1 : v.rindex(")")].split(",")[:3]
        r, g, b = (max(0, min(255, round(float(n)))) for n in nums)
        return f"#{r:02x}{g:02x}{b:02x}"
    return "#{:02x}{:02x}{:02x}".format(*hex_to_rgb(v))


def palette(classes: Sequence[ClassInfo]) -> np.ndarray:
    pal = np.zeros((256, 3), np.uint8)
    for c in classes:
        pal[c.index] = hex_to_rgb(c.colour)
    return pal


# ---------------------------------------------------------------------- labels at display size and tints
def downscale_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour label map at display size (h, w): display pixel i shows full-size row ceil(i H / h)."""
    H, W = labels.shape
    h, w = size
    if (h, w) == (H, W):
        return labels.copy()
    rows = np.minimum(-((-np.arange(h) * H) // h), H - 1)  # ceil(i * H / h): a full row shown in row i
    cols = np.minimum(-((-np.arange(w) * W) // w), W - 1)
    return labels[rows[:, None], cols[None, :]]


def tint(
    rgb: np.ndarray, labels: np.ndarray, pal: np.ndarray, alpha: float, visible: np.ndarray | None = None
) -> np.ndarray:
    """Blend class colours over an image where `labels` is a (visible) class."""
    mask = labels != IGNORE
    if visible is not None:
        ok = np.zeros(256, bool)
        ok[: len(visible)] = visible
        mask &= ok[labels]
    out = rgb.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * pal[labels[mask]].astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------- analysis views
def colormap(values: np.ndarray, name: str = "magma") -> np.ndarray:
    """Values in 0..1 -> RGB uint8 through a matplotlib colour map."""
    from matplotlib import colormaps

    lut = (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return lut[np.clip(np.rint(np.asarray(values, np.float32) * 255), 0, 255).astype(np.uint8)]


def heat_overlay(rgb: np.ndarray, values: np.ndarray, name: str = "magma", alpha: float = 0.65) -> np.ndarray:
    """A heatmap over a greyed copy of the image (so structures stay recognisable)."""
    grey = rgb.astype(np.float32).mean(-1, keepdims=True).repeat(3, -1)
    out = (1 - alpha) * grey + alpha * colormap(values, name).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def draw_boxes(
    rgb: np.ndarray, boxes: Sequence[tuple[int, int, int, int]], colour=(0, 255, 255)
) -> np.ndarray:
    """Numbered boxes (x0, y0, x1, y1) marking regions worth labelling."""
    if not boxes:
        return rgb
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(rgb.shape[:2]) / 250))
    for n, (x0, y0, x1, y1) in enumerate(boxes, 1):
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=colour, width=width)
        tx, ty = x0 + width + 2, y0 + width + 1
        draw.rectangle([tx - 2, ty - 1, tx + 9, ty + 12], fill=(0, 0, 0))
        draw.text((tx, ty), str(n), fill=colour)
    return np.asarray(img)


def side_by_side(
    panels: Sequence[np.ndarray], gap: int = GAP, background: int = 255, pane_aspect: float = PANE_ASPECT
) -> np.ndarray:
    """Equal-sized panels in the grid (columns x rows, row by row) that shows them largest in a pane of
    width / height `pane_aspect`: three square images in a row would fill a third of a square pane, in a
    2 x 2 grid almost half of it each."""
    h, w = max(p.shape[0] for p in panels), max(p.shape[1] for p in panels)
    n = len(panels)

    def scale(cols: int) -> float:  # how large a panel shows when the grid is fitted into the pane
        rows = -(-n // cols)
        gw, gh = cols * w + gap * (cols - 1), rows * h + gap * (rows - 1)
        return min(pane_aspect / gw, 1.0 / gh)

    cols = max(range(1, n + 1), key=lambda c: (scale(c), -c))
    rows = -(-n // cols)
    out = np.full((rows * h + gap * (rows - 1), cols * w + gap * (cols - 1), 3), background, np.uint8)
    for i, p in enumerate(panels):
        y, x = (i // cols) * (h + gap), (i % cols) * (w + gap)
        out[y : y + p.shape[0], x : x + p.shape[1]] = p
    return out


def label_colours(labels: np.ndarray, pal: np.ndarray, unlabelled=(236, 236, 236)) -> np.ndarray:
    out = pal[labels].copy()
    out[labels == IGNORE] = unlabelled
    return out


def placeholder(size: tuple[int, int], text: str) -> np.ndarray:
    """A light-grey panel with a message (e.g. 'computing features…')."""
    h, w = max(32, size[0]), max(64, size[1])
    img = Image.new("RGB", (w, h), (242, 242, 242))
    draw = ImageDraw.Draw(img)
    lines = text.split("\n")
    y = h // 2 - 8 * len(lines)
    for line in lines:
        tw = draw.textlength(line)
        draw.text(((w - tw) / 2, y), line, fill=(90, 90, 90))
        y += 16
    return np.asarray(img)


def fit_rgb(rgb: np.ndarray, side: int) -> np.ndarray:
    """Enlarge a small image so its longer side is `side` (views of small images fill their panel)."""
    h, w = rgb.shape[:2]
    if max(h, w) >= side:
        return rgb
    s = side / max(h, w)
    return np.asarray(
        Image.fromarray(rgb).resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
    )
