"""Annotation callbacks: open and navigate images, store strokes, points, undo/redo/clear, train, refine.

Each returns a dict {output name: value}; names it leaves out are not updated (see `layout.bind`).
"""

from __future__ import annotations

import logging

import gradio as gr
import numpy as np

from storage import ClassInfo, NotFoundError
from webapp import imagepanel, render
from webapp.context import AppContext, Session
from webapp.errors import ui_errors

log = logging.getLogger(__name__)

SCRIBBLE, ERASE, POINT = "Scribble", "Erase", "Point"
CLICK_TOLERANCE = 10  # screen pixels around a point that still count as a click on it


def class_choices(classes: list[ClassInfo]) -> list[tuple[str, str]]:
    return [(f"{c.index + 1} · {c.name}" if c.index < 9 else c.name, str(c.id)) for c in classes]


def default_active(classes: list[ClassInfo], current: int | None) -> int | None:
    ids = [c.id for c in classes]
    if current in ids:
        return current
    non_bg = [c.id for c in classes if c.name.lower() != "background"]
    return non_bg[0] if non_bg else (ids[0] if ids else None)


def class_style(classes: list[ClassInfo]) -> str:
    """CSS giving each class radio option its colour (the legend of the brush)."""
    rules = []
    for n, c in enumerate(classes, 1):
        fg = render.text_colour(c.colour)
        rules.append(
            f"#active-class label:nth-of-type({n}){{border-left:14px solid {c.colour} !important;}}"
            f"#active-class label:nth-of-type({n}).selected{{background:{c.colour} !important;color:{fg} !important;}}"
        )
    return f"<style>{''.join(rules)}</style>"


def undo_redo(ctx: AppContext, image_id: int | None) -> dict:
    if image_id is None:
        return {"undo_btn": gr.update(interactive=False), "redo_btn": gr.update(interactive=False)}
    st = ctx.repo.edit_state(image_id)
    return {"undo_btn": gr.update(interactive=st.can_undo), "redo_btn": gr.update(interactive=st.can_redo)}


def show(ctx: AppContext, sess: Session, image_id: int | None) -> dict:
    """Open `image_id` (None: the first image) in the annotation panel."""
    classes = ctx.classes()
    sess.active_class = default_active(classes, sess.active_class)
    out = {
        "active_class": gr.update(choices=class_choices(classes),
                                  value=str(sess.active_class) if sess.active_class is not None else None),
        "class_style": class_style(classes),
    }
    if image_id is None:
        images = ctx.images()
        image_id = images[0].id if images else None
    if image_id is None:
        sess.image_id, sess.baseline, sess.bg_probe, sess.display_size = None, None, None, None
        return out | undo_redo(ctx, None) | {
            "state": sess, "editor": gr.update(value=None), "points_img": None,
            "title": imagepanel.image_title(ctx, sess, None), "info": "",
        }
    parts = imagepanel.load_image(ctx, sess, image_id, classes)
    return out | undo_redo(ctx, image_id) | {
        "state": sess,
        "editor": gr.update(value=parts["editor_value"], brush=_brush(sess)),
        "points_img": parts["points_img"],
        "title": imagepanel.image_title(ctx, sess, parts["info"]),
        "info": imagepanel.image_status(ctx, parts["info"], classes),
        "split": parts["info"].split,
    }


def _brush(sess: Session) -> gr.Brush:
    target = imagepanel.ERASE if sess.erasing else sess.active_class
    return imagepanel.brush(sess.snapshot, target, int(sess.brush_size))


def _reopen(ctx: AppContext, sess: Session) -> dict:
    try:
        return show(ctx, sess, sess.image_id)
    except NotFoundError:
        return show(ctx, sess, None)  # deleted meanwhile (another session): show the first image


@ui_errors
def open_image(ctx: AppContext, sess: Session, image_id: int | None) -> dict:
    return show(ctx, sess, image_id)


@ui_errors
def refresh(ctx: AppContext, sess: Session) -> dict:
    return _reopen(ctx, sess)


@ui_errors
def step(ctx: AppContext, sess: Session, delta: int) -> dict:
    """Previous (-1) / next (+1) image in the gallery's order."""
    live = [i.id for i in ctx.images()]
    ids = [i for i in sess.order if i in set(live)] or live
    if not ids:
        return show(ctx, sess, None)
    pos = ids.index(sess.image_id) if sess.image_id in ids else -delta
    return show(ctx, sess, ids[(pos + delta) % len(ids)])


@ui_errors
def next_uncertain(ctx: AppContext, sess: Session) -> dict:
    image_id = ctx.engine.most_uncertain(ctx.project_id, exclude=sess.image_id)
    if image_id is None:
        raise gr.Error("No uncertainty scores yet: label two classes and train, then every image gets a score.")
    return show(ctx, sess, image_id)


@ui_errors
def pick_gallery(ctx: AppContext, sess: Session, index: int | None) -> dict:
    if index is None or not 0 <= index < len(sess.order):
        return {}
    return show(ctx, sess, sess.order[index])


@ui_errors
def set_active_class(ctx: AppContext, sess: Session, value: str | None) -> dict:
    if value is None or value == "":
        return {}
    sess.active_class = int(value)
    out = {"mode": SCRIBBLE} if sess.erasing else {}  # picking a class while erasing means: paint it
    sess.erasing = False
    if sess.active_class not in dict(sess.snapshot):  # a class the editor does not know yet: reload it
        return _reopen(ctx, sess) | out
    return out | {"state": sess, "editor": gr.update(brush=_brush(sess))}


@ui_errors
def set_brush_size(ctx: AppContext, sess: Session, size: float) -> dict:
    sess.brush_size = max(1, int(size))
    return {"state": sess, "editor": gr.update(brush=_brush(sess))} if sess.snapshot else {"state": sess}


@ui_errors
def set_mode(ctx: AppContext, sess: Session, mode: str) -> dict:
    """Scribble and Erase paint in the editor (with the class colour or the eraser colour), Point shows the
    clickable image. The panel is reloaded on a switch: the other mode may have changed the labels."""
    point = mode == POINT
    sess.erasing = mode == ERASE
    out = _reopen(ctx, sess)
    out["editor"] = {**out["editor"], "visible": not point}
    out["points_img"] = gr.update(value=out["points_img"], visible=point)
    out["point_radius"] = gr.update(visible=point)
    out["brush_size"] = gr.update(visible=not point)
    return out


def _after_edit(ctx: AppContext, sess: Session, auto: bool) -> None:
    if auto:
        ctx.engine.request_train(ctx.project_id)


@ui_errors
def editor_input(ctx: AppContext, sess: Session, value: dict | None, auto: bool) -> dict:
    """Store what the user just painted or erased (exactly the changed pixels)."""
    if sess.image_id is None or not value or sess.baseline is None or sess.loaded is None:
        return {}
    layers = value.get("layers") or []
    if not layers or layers[0] is None or not imagepanel.same_background(value.get("background"), sess):
        bg = value.get("background")
        log.debug("editor value ignored (reloading or another image): background %s, %d layer(s), expected %s",
                  None if bg is None else np.asarray(bg).shape, len(layers), sess.display_size)
        return {}  # the editor is (re)loading, or the value belongs to the previously shown image
    after = imagepanel.decode_layer(np.asarray(layers[0]), sess.snapshot)
    if after.shape != sess.baseline.shape or np.array_equal(after, sess.baseline):
        log.debug("editor value without changes (layer %s, baseline %s)", after.shape, sess.baseline.shape)
        return {}
    classes = ctx.classes()
    stored = ctx.repo.scribble_layer(sess.image_id)
    if stored.shape != sess.loaded.shape:
        return {}
    new, erase = imagepanel.apply_strokes(stored, sess.loaded, sess.baseline, after, classes)
    paint = (new != stored) & ~erase
    if paint.any():
        layer = stored.copy()
        layer[paint] = new[paint]
        ctx.repo.save_scribbles(sess.image_id, layer)
    sess.baseline = after
    if erase.any():
        ctx.repo.erase(sess.image_id, erase)
        _after_edit(ctx, sess, auto)
        return _reopen(ctx, sess)  # the erased labels leave the editor's background
    _after_edit(ctx, sess, auto)
    info = ctx.repo.get_image(sess.image_id)
    sess.labels_version = info.label_version
    return undo_redo(ctx, sess.image_id) | {"state": sess, "info": imagepanel.image_status(ctx, info, classes)}


@ui_errors
def point_click(ctx: AppContext, sess: Session, x: float, y: float, radius: float, auto: bool) -> dict:
    """A click on a point removes it; a click elsewhere adds a point of the active class."""
    if sess.image_id is None:
        return {}
    if sess.active_class is None:
        raise gr.Error("Pick a class first (Classes tab: add one).")
    ix, iy = float(x) / sess.point_scale, float(y) / sess.point_scale
    tolerance = CLICK_TOLERANCE / sess.point_scale
    near = [(np.hypot(p.x - ix, p.y - iy), p) for p in ctx.repo.points(sess.image_id)]
    near = [(d, p) for d, p in near if d <= max(p.radius, tolerance)]
    if near:
        ctx.repo.remove_point(sess.image_id, annotation_id=min(near, key=lambda t: t[0])[1].annotation_id)
    else:
        ctx.repo.add_point(sess.image_id, sess.active_class, ix, iy,
                           radius=max(1.0, float(radius) / sess.point_scale))
    _after_edit(ctx, sess, auto)
    classes = ctx.classes()
    info = ctx.repo.get_image(sess.image_id)
    view, scale = imagepanel.labelled_view(ctx, info, classes)
    point_view, sess.point_scale = imagepanel.point_image(view, scale)
    sess.labels_version = info.label_version
    return undo_redo(ctx, sess.image_id) | {
        "state": sess, "points_img": point_view, "info": imagepanel.image_status(ctx, info, classes)}


def _history_op(ctx: AppContext, sess: Session, op, auto: bool, nothing: str) -> dict:
    if sess.image_id is None:
        return {}
    if op(sess.image_id) is None:
        gr.Info(nothing)
        return {}
    _after_edit(ctx, sess, auto)
    return _reopen(ctx, sess)


@ui_errors
def undo(ctx: AppContext, sess: Session, auto: bool) -> dict:
    return _history_op(ctx, sess, ctx.repo.undo, auto, "Nothing to undo on this image.")


@ui_errors
def redo(ctx: AppContext, sess: Session, auto: bool) -> dict:
    return _history_op(ctx, sess, ctx.repo.redo, auto, "Nothing to redo on this image.")


@ui_errors
def clear(ctx: AppContext, sess: Session, auto: bool) -> dict:
    return _history_op(ctx, sess, ctx.repo.clear_labels, auto, "This image has no labels to clear.")


@ui_errors
def train(ctx: AppContext, sess: Session) -> dict:
    """Train now on every labelled image (cached features) and wait for the result."""
    outcome = ctx.engine.train_now(ctx.project_id, timeout=600)
    gr.Info(f"Trained in {outcome.seconds:.2f} s on {outcome.trained_pixels:,} labelled pixels.")
    return {"state": sess}


@ui_errors
def refine(ctx: AppContext, sess: Session, threshold: float, visible: list[str] | None) -> dict:
    """Turn the prediction's confident pixels (of the visible classes) into editable labels."""
    if sess.image_id is None:
        return {}
    allowed = None
    if visible is not None:
        classes = ctx.classes()
        keep = {int(v) for v in visible}
        allowed = np.array([c.id in keep for c in classes], bool)
    added = ctx.engine.refine(ctx.project_id, sess.image_id, float(threshold), allowed)
    if not added:
        gr.Info(f"No unlabelled pixel is predicted with confidence ≥ {threshold:.2f}; lower the threshold.")
        return {}
    gr.Info(f"Added {added:,} labelled pixels from the prediction; erase or paint over the mistakes.")
    return _reopen(ctx, sess)
