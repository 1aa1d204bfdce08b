"""The annotation panel's content for one image: editor value, point view, title and status text.

The editor works on a display-size copy of the image (longer side <= EDITOR_MAX_SIDE); labels are stored
at full resolution. Gradio 6's editor cannot show layers sent from the server (they arrive as data but are
never drawn), so the stored labels are painted into the editor's *background* (tinted, points as dots)
and its one layer only holds the strokes drawn since the image was opened. Each stroke is decoded by
colour and stored as exactly the pixels it changed; strokes in the eraser colour erase stored labels.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

from core.labels import IGNORE
from storage import ClassInfo, ImageInfo
from webapp import render
from webapp.context import AppContext, Session
from webapp.text import md

NO_CLASS = -1  # nothing painted at this pixel
ERASE = -2  # painted with the eraser colour: erase stored labels here
ERASER_COLOURS = ("#ffffff", "#fefefe", "#fdfdfd", "#fcfcfc")


def eraser_colour(classes: list[ClassInfo]) -> str:
    used = {c.colour.lower() for c in classes}
    return next((c for c in ERASER_COLOURS if c not in used), ERASER_COLOURS[-1])


def colour_ids(classes: list[ClassInfo]) -> list[tuple[int, str]]:
    """The editor's palette: (class id, colour) per class, then (ERASE, eraser colour)."""
    return [(c.id, c.colour) for c in classes] + [(ERASE, eraser_colour(classes))]


def brush(snapshot: list[tuple[int, str]], class_id: int | None, size: int | str = "auto") -> gr.Brush:
    """The editor brush paints exactly one colour (the active class's, or the eraser's), so every stroke
    decodes to one meaning."""
    colour = dict(snapshot).get(class_id) if class_id is not None else None
    if colour is None:
        colour = snapshot[0][1] if snapshot else "#ff0000"
    return gr.Brush(colors=[(colour, render.LABEL_ALPHA)], default_color=(colour, render.LABEL_ALPHA),
                    color_mode="fixed", default_size=size)


def ids_to_indices(ids: np.ndarray, classes: list[ClassInfo]) -> np.ndarray:
    out = np.full(ids.shape, IGNORE, np.uint8)
    for c in classes:
        out[ids == c.id] = c.index
    return out


def decode_layer(layer: np.ndarray, snapshot: list[tuple[int, str]]) -> np.ndarray:
    """Editor RGBA layer -> class ids (NO_CLASS where nothing is painted, ERASE for the eraser colour)."""
    fake = [ClassInfo(id=cid, name=str(cid), colour=colour, index=i) for i, (cid, colour) in enumerate(snapshot)]
    idx = render.rgba_to_labels(layer, fake)
    ids = np.full(idx.shape, NO_CLASS, np.int64)
    for i, (cid, _) in enumerate(snapshot):
        ids[idx == i] = cid
    return ids


def probe(rgb: np.ndarray, n: int = 24) -> np.ndarray:
    """A fixed grid of pixels identifying an image (to recognise the editor's background)."""
    h, w = rgb.shape[:2]
    ys = np.linspace(0, h - 1, n).astype(int)
    xs = np.linspace(0, w - 1, n).astype(int)
    return rgb[ys[:, None], xs[None, :], :3].astype(np.int16)


def same_background(value_bg: np.ndarray | None, sess: Session) -> bool:
    if value_bg is None or sess.bg_probe is None or sess.display_size is None:
        return False
    bg = np.asarray(value_bg)
    if bg.ndim != 3 or bg.shape[:2] != tuple(sess.display_size):
        return False
    return float(np.abs(probe(bg) - sess.bg_probe).mean()) < 4.0


def labelled_view(ctx: AppContext, info: ImageInfo, classes: list[ClassInfo]) -> tuple[np.ndarray, float]:
    """The display-size image with every stored label tinted in and points drawn as dots; and the scale
    (display pixels per image pixel)."""
    rgb = ctx.engine.display_rgb(info.id, render.EDITOR_MAX_SIDE)
    size = rgb.shape[:2]
    scale = size[1] / info.width
    pal = render.palette(classes)
    labels = render.downscale_labels(ctx.repo.label_map(info.id), size)
    return render.draw_points(render.tint(rgb, labels, pal, render.LABEL_ALPHA), ctx.repo.points(info.id), pal,
                              scale), scale


def point_image(view: np.ndarray, scale: float, min_side: int = 800) -> tuple[np.ndarray, float]:
    """The point-mode image: small images are enlarged (by an integer factor, nearest neighbour) so points
    are easy to place; returns it and its scale (shown pixels per image pixel)."""
    factor = max(1, min_side // max(view.shape[:2]))
    if factor > 1:
        view = view.repeat(factor, axis=0).repeat(factor, axis=1)
    return view, scale * factor


def load_image(ctx: AppContext, sess: Session, image_id: int, classes: list[ClassInfo]) -> dict:
    """Everything the annotation panel shows for `image_id`; resets what `sess` knows about the editor."""
    info = ctx.repo.get_image(image_id)
    ctx.engine.ensure_features([image_id], priority=True)
    view, scale = labelled_view(ctx, info, classes)
    sess.image_id = info.id
    sess.display_size = tuple(view.shape[:2])
    sess.scale = scale
    sess.bg_probe = probe(view)
    sess.baseline = np.full(view.shape[:2], NO_CLASS, np.int64)  # the editor's layer starts empty
    sess.loaded = ctx.repo.scribble_layer(info.id)  # what a fresh stroke that gets erased again restores
    sess.snapshot = colour_ids(classes)
    sess.labels_version = info.label_version
    sess.view_ready = False
    points_view, sess.point_scale = point_image(view, scale)
    return {
        "editor_value": {"background": view, "layers": [], "composite": None},
        "points_img": points_view,
        "info": info,
    }


def apply_strokes(stored: np.ndarray, loaded: np.ndarray, before: np.ndarray, after: np.ndarray,
                  classes: list[ClassInfo]) -> tuple[np.ndarray, np.ndarray]:
    """The display-size layer went from `before` to `after` (class ids): returns the new full-resolution
    scribble layer and the full-resolution region to erase. Pixels painted with a class get it, pixels
    whose fresh stroke was removed again get their value from when the image was opened (`loaded`),
    pixels painted with the eraser colour are erased (all label kinds) and cleared from the scribbles."""
    if before.shape != after.shape:
        raise ValueError(f"edit changed the layer size from {before.shape} to {after.shape}")
    H, W = stored.shape
    rows, cols = render.row_map(H, before.shape[0]), render.row_map(W, before.shape[1])
    up_after = after[rows[:, None], cols[None, :]]
    changed = (before != after)[rows[:, None], cols[None, :]]
    out = stored.copy()
    paint = changed & (up_after >= 0)
    out[paint] = ids_to_indices(up_after[paint], classes)
    restore = changed & (up_after == NO_CLASS)
    out[restore] = loaded[restore]
    erase = changed & (up_after == ERASE)
    out[erase] = IGNORE
    return out, erase


def image_title(ctx: AppContext, sess: Session, info: ImageInfo | None) -> str:
    if info is None:
        return "**No image yet.** Upload images or press **Load sample images** (Images tab) to start."
    ids = [i.id for i in ctx.images()]
    pos = f"{ids.index(info.id) + 1}/{len(ids)}" if info.id in ids else "?"
    return (f"**{md(info.name)}** <span class='muted'>&nbsp; image {pos} · {info.width}×{info.height} px · "
            f"split: {info.split}</span>")


def image_status(ctx: AppContext, info: ImageInfo | None, classes: list[ClassInfo]) -> str:
    """Labelled pixels per class, prediction and uncertainty of one image (markdown)."""
    if info is None:
        return ""
    counts = ctx.repo.labelled_pixel_counts(image_id=info.id)
    parts = []
    for c in classes:
        n = counts.get(c.index, 0)
        if n:
            parts.append(f"<span class='swatch' style='background:{c.colour}'></span>{md(c.name)}: {n:,}")
    labelled = " · ".join(parts) if parts else "no labels yet"
    points = len(ctx.repo.points(info.id))
    pred = "prediction ✓" if info.has_prediction else "no prediction yet"
    unc = f" · uncertainty {info.uncertainty:.3f}" if info.uncertainty is not None else ""
    feats = ""
    if not ctx.engine.has_features(info.id):
        failure = ctx.engine.feature_failure(info.id)
        feats = f" · ⚠ {md(failure)}" if failure else " · computing features…"
    pts = f" · {points} point{'s' if points != 1 else ''}" if points else ""
    return f"**Labelled pixels:** {labelled}{pts}  \n{pred}{unc}{feats}"
