"""Page load: everything a freshly opened (or reloaded) tab needs, read from storage (so every tab sees
the labels other tabs stored)."""

from __future__ import annotations

from webapp import callbacks_classes, callbacks_views
from webapp.context import AppContext, Session
from webapp.errors import ui_errors


@ui_errors
def page_load(ctx: AppContext, sess: Session, sort: str) -> dict:
    out = callbacks_classes.class_outputs(ctx, sess, None)  # includes opening the first image
    out |= callbacks_views.gallery(ctx, sess, sort)
    out["status"] = callbacks_views.status_text(ctx)
    if sess.image_id is not None:
        out["split"] = ctx.repo.get_image(sess.image_id).split
    return out
