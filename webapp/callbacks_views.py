"""View callbacks: the side panel's analysis image (what the canvas does not show: K-means, PCA, the
uncertainty boxes, side by side), the gallery, and the status tick that brings in new heads and features."""

from __future__ import annotations

import gradio as gr
import numpy as np

from core.clusters import overlay
from engine import need_key
from storage import ClassInfo, ImageInfo, NotFoundError
from webapp import imagepanel, render
from webapp.context import AppContext, Session
from webapp.errors import ui_errors
from webapp.text import md

# The canvas shows the prediction, its confidence and its uncertainty, with the one set of class toggles;
# the panel shows the rest.
KM, KMP, PCA, UNC, SBS = (
    "K-means (image)",
    "K-means (project)",
    "PCA-RGB",
    "Where to label",
    "Side by side",
)
VIEW_MODES = (KM, KMP, PCA, UNC, SBS)
SORTS = ("Upload order", "Most uncertain first", "Least labelled first", "Name")
GALLERY_PAGE = 48  # thumbnails a gallery page shows (6 rows of 8)
SBS_SIDE = 512


def _legend(classes: list[ClassInfo]) -> str:
    return " ".join(
        f"<span class='swatch' style='background:{c.colour}'></span>{md(c.name)}" for c in classes
    )


def view_image(
    ctx: AppContext, sess: Session, mode: str, opacity: float, k: int
) -> tuple[np.ndarray, str, bool]:
    """(image, note, complete) for the current image; `complete` is False while features are missing."""
    image_id = sess.image_id
    assert image_id is not None  # (render_view answers "no image" itself)
    side = render.VIEW_MAX_SIDE if mode != SBS else SBS_SIDE
    rgb = render.fit_rgb(ctx.engine.display_rgb(image_id, side), side)
    size = rgb.shape[:2]
    if not ctx.engine.has_features(image_id):
        ctx.engine.ensure_features([image_id], priority=True)
        failure = ctx.engine.feature_failure(image_id)
        if failure:
            return render.placeholder(size, f"Cannot compute features:\n{failure}"), failure, True
        prog = ctx.engine.feature_progress()
        text = f"Computing features… ({prog.done}/{prog.total})" if prog.total else "Computing features…"
        return render.placeholder(size, text), text, False
    classes = ctx.classes()
    pal = render.palette(classes)
    if mode in (KM, KMP):
        km = (
            ctx.engine.kmeans(image_id, int(k), size)
            if mode == KM
            else ctx.engine.kmeans_project(ctx.project_id, image_id, int(k), size)
        )
        if km is None:  # (the features went away meanwhile: a resolution change)
            return _computing(size)
        scope = (
            "this image"
            if mode == KM
            else "the project's images (one clustering: a colour is the same cluster everywhere)"
        )
        return (
            overlay(rgb, km.colour_map(), float(opacity)),
            f"K-means with k = {k} on the patch features of {scope}; no labels used. Clusters that follow "
            "object outlines show the backbone's shape prior.",
            True,
        )
    if mode == PCA:
        pca = ctx.engine.pca(image_id, size)
        if pca is None:
            return _computing(size)
        return pca, "First three principal components of the patch features as RGB.", True
    pred = ctx.engine.prediction(ctx.project_id, image_id, size)
    if mode == SBS:
        labels = render.downscale_labels(ctx.records.label_map(image_id), size)
        panels = [rgb, render.tint(rgb, labels, pal, 0.85)]
        if pred is None:
            panels.append(render.placeholder(size, "No prediction yet"))
            note = "Original · labels. "
        else:
            colours = render.label_colours(pred.labels, pal)
            panels += [colours, overlay(rgb, colours, float(opacity))]
            note = "Original · labels (top); prediction · prediction over the image (bottom). "
        return render.side_by_side(panels), note + _legend(classes), True
    if pred is None:
        return (
            rgb,
            (
                "No trained head yet: label at least two classes; training starts automatically after "
                "each edit (or press Train)."
            ),
            True,
        )
    spots = ctx.engine.hotspots(ctx.project_id, image_id, size)  # (UNC)
    img = render.draw_boxes(render.heat_overlay(rgb, pred.entropy, "magma"), [s.box for s in spots])
    where = (
        f"Boxes 1–{len(spots)} mark the unlabelled regions the head is least sure of: a few strokes "
        "there help most."
        if spots
        else "No strongly uncertain unlabelled region."
    )
    return (
        img,
        f"Entropy of the prediction (bright = uncertain, mean {pred.uncertainty:.3f}). {where}",
        True,
    )


def _computing(size: tuple[int, int]) -> tuple[np.ndarray, str, bool]:
    return render.placeholder(size, "Computing features…"), "Computing features…", False


@ui_errors
def render_view(ctx: AppContext, sess: Session, mode: str, opacity: float, k: int) -> dict:
    if sess.image_id is None:
        sess.view_ready, sess.head_id = True, ctx.engine.head_version(ctx.project_id)
        return {"state": sess, "view_img": None, "view_note": ""}
    sess.head_id = ctx.engine.head_version(ctx.project_id)
    try:
        img, note, complete = view_image(ctx, sess, mode, opacity, k)
    except NotFoundError:
        sess.image_id = None
        return {"state": sess, "view_img": None, "view_note": "This image was deleted."}
    sess.view_ready = complete
    return {"state": sess, "view_img": img, "view_note": note}


def caption(ctx: AppContext, info: ImageInfo, classes: list[ClassInfo]) -> str:
    """One short line under a thumbnail: labelled pixels and uncertainty (details are in the image info)."""
    labelled = f"{info.labelled_pixels:,} px" if info.labelled_pixels else "unlabelled"
    unc = f" · need {info.uncertainty:.1f}" if info.uncertainty is not None else ""
    return f"{info.name} · {labelled}{unc}"


def sorted_images(images: list[ImageInfo], sort: str) -> list[ImageInfo]:
    if sort == SORTS[1]:
        return sorted(images, key=need_key)
    if sort == SORTS[2]:
        return sorted(images, key=lambda i: (i.labelled_pixels, i.id))
    if sort == SORTS[3]:
        return sorted(images, key=lambda i: (i.name.lower(), i.id))
    return list(images)


@ui_errors
def gallery(ctx: AppContext, sess: Session, sort: str) -> dict:
    """The gallery in `sort` order, on the page that holds the open image."""
    sess.order = [i.id for i in sorted_images(ctx.images(), sort)]
    return {"state": sess} | page(ctx, sess, None)


@ui_errors
def resort(ctx: AppContext, sess: Session, sort: str) -> dict:
    """The gallery in a newly chosen order, from its first page (the top of the new order)."""
    sess.order = [i.id for i in sorted_images(ctx.images(), sort)]
    return {"state": sess} | page(ctx, sess, 0)


def page(ctx: AppContext, sess: Session, start: int | None) -> dict:
    """One page of the gallery (GALLERY_PAGE thumbnails from position `start` of the order; None: the page
    holding the open image): a page is built at once, never all of a project's hundreds of images."""
    order = sess.order
    if start is None:
        at = order.index(sess.image_id) if sess.image_id in order else 0
        start = at - at % GALLERY_PAGE
    start = max(0, min(start, (max(len(order), 1) - 1) // GALLERY_PAGE * GALLERY_PAGE))
    sess.page = order[start : start + GALLERY_PAGE]
    infos = {i.id: i for i in ctx.images()}
    classes = ctx.classes()
    items = [
        (str(ctx.engine.thumbnail_path(i)), caption(ctx, infos[i], classes)) for i in sess.page if i in infos
    ]
    shown = f"Images {start + 1}–{start + len(sess.page)} of {len(order)}" if order else "No images yet"
    return {"gallery": gr.update(value=items, selected_index=selected(sess)), "gallery_range": shown}


@ui_errors
def turn_page(ctx: AppContext, sess: Session, delta: int) -> dict:
    """The previous (-1) or next (+1) page of the gallery."""
    first = sess.order.index(sess.page[0]) if sess.page and sess.page[0] in sess.order else 0
    return {"state": sess} | page(ctx, sess, first + delta * GALLERY_PAGE)


def follow(ctx: AppContext, sess: Session) -> dict:
    """The gallery after the open image changed: its highlight, on the page that holds it."""
    if sess.image_id in sess.page or sess.image_id not in sess.order:
        return {"gallery": gr.update(selected_index=selected(sess))}
    return page(ctx, sess, None)


def selected(sess: Session) -> int | None:
    """The gallery position of the open image on the page shown (the highlight follows navigation)."""
    return sess.page.index(sess.image_id) if sess.image_id in sess.page else None


def background_busy(ctx: AppContext) -> bool:
    """Work whose progress the status line shows: the page timer runs only while there is some."""
    return ctx.engine.feature_progress().busy or ctx.engine.training_status(ctx.project_id).state != "idle"


def timer(ctx: AppContext) -> gr.Timer:
    return gr.Timer(active=background_busy(ctx))


def status_text(ctx: AppContext) -> str:
    prog = ctx.engine.feature_progress()
    st = ctx.engine.training_status(ctx.project_id)
    # one line (a steady page: the status never pushes the canvas down); failures first, so they show
    line = f"**Features:** {prog.describe()} · **Training:** {st.describe()}"
    if prog.failed:
        line = (
            f"⚠ {len(prog.failed)} image(s) failed: "
            + "; ".join(md(r) for _, r in prog.failed[:3])
            + " · "
            + line
        )
    if st.last is not None and st.last.pixel_counts:
        counts = " · ".join(f"{md(n)}: {c:,}" for n, c in st.last.pixel_counts.items())
        line += f" · **Trained on** {counts}"
    return line


@ui_errors
def tick(ctx: AppContext, sess: Session, mode: str, opacity: float, k: int, sort: str) -> dict:
    """While background work runs, and when the project's event stream had news (the canvas relays it): the
    status line; the view when a new head arrived or features finished; the gallery when the head or the
    images changed. The timer switches itself off when nothing is left to show."""
    out: dict = {"status": status_text(ctx), "timer": timer(ctx)}
    head = ctx.engine.head_version(ctx.project_id)
    new_head = head != sess.head_id
    if sess.image_id is not None and (new_head or not sess.view_ready):
        out |= render_view(ctx, sess, mode, opacity, k)
        try:
            info = ctx.records.get_image(sess.image_id)
            out["info"] = imagepanel.image_status(ctx, info, ctx.classes())
        except NotFoundError:
            pass
    if new_head or {i.id for i in ctx.images()} != set(sess.order):  # (images added or deleted elsewhere)
        out |= gallery(ctx, sess, sort)
    sess.head_id = head
    return out
