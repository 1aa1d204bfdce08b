"""Annotation callbacks as plain functions: strokes, erasing, points, history, training, refinement."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from core.labels import IGNORE
from tests.webapp.conftest import class_id, colour_of, editor_value
from webapp import callbacks_annotate as cba
from webapp import callbacks_page as cbp
from webapp import callbacks_views as cbv
from webapp.context import Session
from webapp.layout import CLASS_OUT, SHOW
from webapp.ui import bind

LEFT = (slice(40, 44), slice(5, 50))  # display = full size for the 112x84 test image
RIGHT = (slice(20, 23), slice(62, 108))


def open_first(ctx, sess) -> dict:
    out = cbp.page_load(ctx, sess, cbv.SORTS[0])
    assert sess.image_id is not None
    return out


def test_page_load_on_an_empty_project_guides_the_user(ctx, sess):
    out = cbp.page_load(ctx, sess, cbv.SORTS[0])
    assert sess.image_id is None and "Load sample images" in out["title"]
    assert out["gallery"] == [] and "Features" in out["status"]
    assert set(out) <= set(CLASS_OUT + ["state", "gallery", "status", "split"])


def test_strokes_are_stored_at_once_and_survive_a_reload(labelled_ctx, sess):
    ctx = labelled_ctx
    out = open_first(ctx, sess)
    assert out["editor"]["value"]["layers"] == []  # stored labels live in the background
    red, blue = colour_of(ctx, "red"), colour_of(ctx, "blue")
    res = cba.editor_input(ctx, sess, editor_value(out, [(red, LEFT)]), False)
    labels = ctx.repo.label_map(sess.image_id)
    assert (labels[LEFT] == 1).all() and (labels != IGNORE).sum() == 4 * 45
    assert "red: 180" in res["info"] and res["undo_btn"]["interactive"] is True
    # The next event carries all strokes so far: only the new one is new.
    cba.editor_input(ctx, sess, editor_value(out, [(red, LEFT), (blue, RIGHT)]), False)
    labels = ctx.repo.label_map(sess.image_id)
    assert (labels[RIGHT] == 2).all() and (labels[LEFT] == 1).all()
    assert len(ctx.repo.history(sess.image_id)) == 2
    # A new tab (or a reload) shows them in the editor's background.
    other = Session()
    again = cbp.page_load(ctx, other, cbv.SORTS[0])
    bg = again["editor"]["value"]["background"]
    assert bg[42, 20, 0] < 200 and bg[10, 20, 0] > 190  # tinted where labelled, the image elsewhere
    assert "red: 180" in again["info"] and "blue: 138" in again["info"]


def test_stale_or_foreign_editor_values_are_ignored(labelled_ctx, sess):
    ctx = labelled_ctx
    out = open_first(ctx, sess)
    value = editor_value(out, [(colour_of(ctx, "red"), LEFT)])
    value["background"] = np.zeros_like(value["background"])  # the previous image's canvas
    assert cba.editor_input(ctx, sess, value, False) == {}
    assert cba.editor_input(ctx, sess, {"background": None, "layers": [], "composite": None}, False) == {}
    assert cba.editor_input(ctx, sess, None, False) == {}
    assert (ctx.repo.label_map(sess.image_id) == IGNORE).all()


def test_erase_mode_erases_stored_labels(labelled_ctx, sess):
    ctx = labelled_ctx
    out = open_first(ctx, sess)
    cba.editor_input(ctx, sess, editor_value(out, [(colour_of(ctx, "red"), LEFT)]), False)
    out = cba.set_mode(ctx, sess, cba.ERASE)
    assert sess.erasing and out["editor"]["visible"] is True
    res = cba.editor_input(ctx, sess, editor_value(out, [("#ffffff", (slice(38, 46), slice(5, 20)))]), False)
    labels = ctx.repo.label_map(sess.image_id)
    assert not (labels[40:44, 5:20] != IGNORE).any() and (labels[40:44, 20:50] == 1).all()
    assert "editor" in res  # reloaded: the erased labels leave the background
    cba.set_active_class(ctx, sess, str(class_id(ctx, "blue")))
    assert not sess.erasing


def test_points_add_and_remove(labelled_ctx, sess):
    ctx = labelled_ctx
    open_first(ctx, sess)
    out = cba.set_mode(ctx, sess, cba.POINT)
    assert out["points_img"]["visible"] is True and out["editor"]["visible"] is False
    scale = sess.point_scale
    res = cba.point_click(ctx, sess, 30 * scale, 20 * scale, 8, False)
    pts = ctx.repo.points(sess.image_id)
    assert len(pts) == 1 and pts[0].class_index == 1 and (round(pts[0].x), round(pts[0].y)) == (30, 20)
    assert "1 point" in res["info"]
    cba.point_click(ctx, sess, 31 * scale, 21 * scale, 8, False)  # a click on it removes it
    assert ctx.repo.points(sess.image_id) == []


def test_undo_redo_clear(labelled_ctx, sess):
    ctx = labelled_ctx
    out = open_first(ctx, sess)
    cba.editor_input(ctx, sess, editor_value(out, [(colour_of(ctx, "red"), LEFT)]), False)
    cba.undo(ctx, sess, False)
    assert (ctx.repo.label_map(sess.image_id) == IGNORE).all()
    out = cba.redo(ctx, sess, False)
    assert (ctx.repo.label_map(sess.image_id)[LEFT] == 1).all() and out["redo_btn"]["interactive"] is False
    cba.clear(ctx, sess, False)
    assert (ctx.repo.label_map(sess.image_id) == IGNORE).all()
    cba.undo(ctx, sess, False)
    assert (ctx.repo.label_map(sess.image_id)[LEFT] == 1).all()


def test_training_errors_are_messages_and_success_updates_views(labelled_ctx, sess):
    ctx = labelled_ctx
    out = open_first(ctx, sess)
    with pytest.raises(gr.Error, match="No labelled pixels"):
        cba.train(ctx, sess)
    cba.editor_input(ctx, sess, editor_value(out, [(colour_of(ctx, "red"), LEFT)]), False)
    with pytest.raises(gr.Error, match="Only the class 'red'"):
        cba.train(ctx, sess)
    assert (ctx.repo.label_map(sess.image_id)[LEFT] == 1).all()  # nothing lost
    cba.editor_input(ctx, sess, editor_value(out, [(colour_of(ctx, "red"), LEFT), (colour_of(ctx, "blue"), RIGHT)]),
                     True)
    cba.train(ctx, sess)
    view = cbv.render_view(ctx, sess, cbv.PRED, 1.0, None, 5)
    pal = np.array([[0, 0, 0], [128, 0, 0], [0, 128, 0]], np.float32)
    img = view["view_img"].astype(np.float32)
    h, w = img.shape[:2]
    near = ((img[..., None, :] - pal) ** 2).sum(-1).argmin(-1)
    assert (near[:, : int(w * 0.4)] == 1).mean() > 0.95 and (near[:, int(w * 0.6):] == 2).mean() > 0.95
    assert "Prediction overlay" in view["view_note"]


def test_refine_and_navigation(labelled_ctx, sess):
    ctx = labelled_ctx
    from tests.images import png_bytes, two_colour

    second = ctx.repo.add_image(ctx.project_id, png_bytes(two_colour(seed=5)), "second.png")
    out = open_first(ctx, sess)
    first = sess.image_id
    cba.editor_input(ctx, sess, editor_value(out, [(colour_of(ctx, "red"), LEFT), (colour_of(ctx, "blue"), RIGHT)]),
                     False)
    cba.train(ctx, sess)
    with pytest.raises(gr.Error, match="(?i)confidence threshold"):
        cba.refine(ctx, sess, 1.5, None)
    before = (ctx.repo.label_map(first) != IGNORE).sum()
    cba.refine(ctx, sess, 0.5, None)
    assert (ctx.repo.label_map(first) != IGNORE).sum() > before
    cba.step(ctx, sess, +1)
    assert sess.image_id == second.id
    cba.step(ctx, sess, +1)
    assert sess.image_id == first
    ctx.engine.features(second.id, wait=60)
    ctx.engine.update_uncertainty(ctx.project_id)
    cba.next_uncertain(ctx, sess)
    assert sess.image_id == second.id


def test_bind_runs_callbacks_under_the_session_lock_and_skips_missing_outputs(labelled_ctx, sess):
    handler = bind(labelled_ctx, cba.refresh, SHOW + ["view_img"])
    values = handler(sess)
    assert len(values) == len(SHOW) + 1
    assert isinstance(values[-1], dict) and values[-1].get("__type__") == "update"  # gr.skip()
