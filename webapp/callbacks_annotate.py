"""Annotation callbacks: open and navigate images, train. Strokes, points, undo, redo, clear and Refine do
not pass through here: the canvas sends them to the REST API (webapp/api.py) as this tab's edits.

Each returns a dict {output name: value}; names it leaves out are not updated (see `layout.bind`).
"""

from __future__ import annotations

import gradio as gr

from storage import ImageInfo
from webapp import imagepanel, render
from webapp.callbacks_views import follow, status_text
from webapp.canvas import canvas_value
from webapp.context import AppContext, Session
from webapp.errors import ui_errors
from webapp.text import md

SUGGEST_SIDE = 200  # thumbnail size of a suggestion


def _in_order(ctx: AppContext, sess: Session) -> list[ImageInfo]:
    """The project's images in the gallery's order (upload order before the gallery was drawn)."""
    live = {i.id: i for i in ctx.images()}
    return [live[i] for i in sess.order if i in live] or list(live.values())


WINDOW = 8  # images on each side of the open one that the canvas can page to by itself


def _window(order: list[ImageInfo], image_id: int | None) -> list[ImageInfo]:
    """The images around `image_id` in the gallery's order (wrapping, as Previous and Next do: a small
    project repeats), the open one in the middle: the canvas pages through them with p / n without waiting
    for the server."""
    ids = [i.id for i in order]
    if image_id not in ids or len(ids) < 2:
        return []
    pos, n = ids.index(image_id), len(ids)
    return [order[(pos + d) % n] for d in range(-WINDOW, WINDOW + 1)]


def show(ctx: AppContext, sess: Session, image_id: int | None) -> dict:
    """Open `image_id` (None: the first image) in the canvas."""
    classes = ctx.classes()
    order = _in_order(ctx, sess)
    if image_id is None:
        image_id = order[0].id if order else None
    info = ctx.records.get_image(image_id) if image_id is not None else None
    if info is not None:
        ctx.engine.ensure_features([info.id], priority=True)
    sess.image_id = None if info is None else info.id
    select, sess.select_class = sess.select_class, None
    focus, sess.focus = sess.focus, None
    sess.view_ready = False
    out = {
        "state": sess,
        "canvas": canvas_value(
            ctx.project_name, info, classes, sess.nonce, select, focus, _window(order, image_id), sess.nav
        ),
        "title": imagepanel.image_title(ctx, sess, info),
        "info": imagepanel.image_status(ctx, info, classes),
    } | follow(ctx, sess)  # the gallery's highlight follows navigation, to another page if need be
    if info is not None:
        out["split"] = info.split
    out["current_image"] = (
        "No image open."
        if info is None
        else f"Current image: **{md(info.name)}** ({info.width} x {info.height})"
    )
    return out


@ui_errors
def navigated(ctx: AppContext, sess: Session, image_id: int, seq: int, step: int = 0) -> dict:
    """The canvas paged to `image_id` by itself (p / n within its window; `seq` counts its page turns): the
    session, title, panel and gallery follow, and the canvas's value names the same image again. `step`
    (-1 / +1): it reached its window's end; page on from `image_id` here."""
    sess.nav = max(sess.nav, int(seq))
    sess.image_id = int(image_id)
    return step_(ctx, sess, step) if step in (-1, 1) else show(ctx, sess, int(image_id))


@ui_errors
def step(ctx: AppContext, sess: Session, delta: int) -> dict:
    """Previous (-1) / next (+1) image in the gallery's order (the buttons when no canvas pages)."""
    return step_(ctx, sess, delta)


def step_(ctx: AppContext, sess: Session, delta: int) -> dict:
    ids = [i.id for i in _in_order(ctx, sess)]
    if not ids:
        return show(ctx, sess, None)
    pos = ids.index(sess.image_id) if sess.image_id in ids else -delta
    return show(ctx, sess, ids[(pos + delta) % len(ids)])


@ui_errors
def next_uncertain(ctx: AppContext, sess: Session) -> dict:
    """The "u" key: down the need ranking, one image further each time (the images "u" opened are skipped until
    every scored image has been opened once; then it starts again from the top)."""
    here = [sess.image_id] if sess.image_id is not None else []
    image_id = ctx.engine.most_uncertain(ctx.project_id, exclude=sess.walked + here)
    if image_id is None and sess.walked:
        sess.walked.clear()
        image_id = ctx.engine.most_uncertain(ctx.project_id, exclude=here)
    if image_id is None:
        raise gr.Error(
            "No uncertainty scores yet: label two classes and train, then every image gets a score."
        )
    sess.walked.append(image_id)
    return show(ctx, sess, image_id)


@ui_errors
def suggest(ctx: AppContext, sess: Session, n: int = 5) -> dict:
    """The regions across the project that need labels most (core.active: the gallery's order too), as
    thumbnails with their box; picking one opens the image zoomed to it."""
    found = ctx.engine.suggest(ctx.project_id, n)
    if not found:
        raise gr.Error(
            "No suggestions yet: label two classes so a head is trained (or every region is labelled "
            "or already certain)."
        )
    sess.suggestions = [(int(str(r.key)), r.box) for r in found]
    items = []
    for rank, r in enumerate(found, start=1):
        info = ctx.records.get_image(int(str(r.key)))
        thumb = ctx.engine.thumbnail(info.id, SUGGEST_SIDE)
        scale = thumb.shape[1] / info.width
        x0, y0, x1, y1 = (int(round(v * scale)) for v in r.box)
        box = (x0, y0, x1, y1)
        items.append((render.draw_boxes(thumb, [box]), f"{rank}. {info.name} · need {r.score:.1f}"))
    return {"state": sess, "suggestions": gr.update(value=items, visible=True)}


@ui_errors
def pick_suggestion(ctx: AppContext, sess: Session, index: int | None) -> dict:
    if index is None or not 0 <= index < len(sess.suggestions):
        return {}
    image_id, box = sess.suggestions[index]
    sess.focus = box
    return show(ctx, sess, image_id)


@ui_errors
def pick_gallery(ctx: AppContext, sess: Session, index: int | None) -> dict:
    if index is None or not 0 <= index < len(sess.page):
        return {}
    return show(ctx, sess, sess.page[index])


@ui_errors
def train(ctx: AppContext, sess: Session) -> dict:
    """Train now on every labelled image (cached features) and wait for the result."""
    outcome = ctx.engine.train_now(ctx.project_id, timeout=600)
    gr.Info(f"Trained in {outcome.seconds:.2f} s on {outcome.trained_pixels:,} labelled pixels.")
    return {"state": sess, "status": status_text(ctx)}  # the status line shows this fit's figures
