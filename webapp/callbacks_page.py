"""Page load: everything a freshly opened (or reloaded) tab needs, read from storage (so every tab sees
the labels other tabs stored)."""

from __future__ import annotations

import gradio as gr

from webapp import callbacks_classes, callbacks_data, callbacks_views
from webapp.context import AppContext, Session
from webapp.errors import ui_errors


@ui_errors
def page_load(ctx: AppContext, sess: Session, sort: str, request: gr.Request | None = None) -> dict:
    """A reload returns to the image in the URL (?image=ID, which the canvas keeps up to date)."""
    wanted = _image_in_url(request)
    if (
        wanted is not None
        and ctx.engine.image_exists(wanted)
        and ctx.records.get_image(wanted).project_id == ctx.project_id
    ):
        sess.image_id = wanted
    out = callbacks_classes.class_outputs(ctx, sess, None)  # includes opening the image
    out |= callbacks_views.gallery(ctx, sess, sort)
    out["status"] = callbacks_views.status_text(ctx)
    out["timer"] = callbacks_views.timer(ctx)
    out |= callbacks_data.resolution_outputs(ctx)  # (another tab may have changed it)
    if sess.image_id is not None:
        out["split"] = ctx.records.get_image(sess.image_id).split
    return out


def _image_in_url(request: gr.Request | None) -> int | None:
    try:
        value = request.query_params.get("image") if request is not None else None
        return int(value) if value else None
    except (AttributeError, TypeError, ValueError):
        return None
