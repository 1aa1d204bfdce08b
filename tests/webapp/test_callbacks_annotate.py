"""Annotation callbacks as plain functions: opening and navigating images (the canvas's value), training,
refinement. Edits themselves go through the REST API (tests/webapp/test_api.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest

from engine import jobs
from tests.webapp.conftest import paint
from webapp import callbacks_annotate as cba
from webapp import callbacks_classes as cbc
from webapp import callbacks_page as cbp
from webapp import callbacks_views as cbv
from webapp.context import Session
from webapp.layout import CLASS_OUT, RESOLUTION_OUT, SHOW
from webapp.ui import bind

LEFT = (slice(40, 44), slice(5, 50))  # the 112x84 test image: red on the left, blue on the right
RIGHT = (slice(20, 23), slice(62, 108))


def open_first(ctx, sess) -> dict:
    out = cbp.page_load(ctx, sess, cbv.SORTS[0])
    assert sess.image_id is not None
    return out


def canvas(out: dict) -> dict:
    return json.loads(out["canvas"])


def test_page_load_on_an_empty_project_guides_the_user(ctx, sess):
    out = cbp.page_load(ctx, sess, cbv.SORTS[0])
    assert sess.image_id is None and "Load sample images" in out["title"]
    assert out["gallery"]["value"] == [] and "Features" in out["status"]
    assert canvas(out)["image"] is None and canvas(out)["api"] == "/api/v1/projects/default"
    assert set(out) <= set(CLASS_OUT + ["state", "gallery", "status", "split", "timer", *RESOLUTION_OUT])


def test_the_canvas_gets_the_image_and_the_class_table(labelled_ctx, sess):
    ctx = labelled_ctx
    out = open_first(ctx, sess)
    value = canvas(out)
    assert value["image"] == {
        "id": sess.image_id,
        "name": "two.png",
        "width": 112,
        "height": 84,
        "labelled": False,
        "label_version": 0,
    }
    assert [(c["name"], c["index"]) for c in value["classes"]] == [("background", 0), ("red", 1), ("blue", 2)]
    assert all(c["color"].startswith("#") and len(c["color"]) == 7 for c in value["classes"])
    # labels stored by the API show up in the image's status line
    paint(ctx, sess.image_id, "red", *LEFT)
    again = cba.show(ctx, sess, sess.image_id)
    assert "red: 180" in again["info"]


def test_a_reload_returns_to_the_image_in_the_url(labelled_ctx, sess):
    ctx = labelled_ctx
    from tests.images import png_bytes, two_colour

    second = ctx.engine.repo.add_image(ctx.project_id, png_bytes(two_colour(seed=3)), "second.png")
    request = SimpleNamespace(query_params={"image": str(second.id)})
    out = cbp.page_load(ctx, sess, cbv.SORTS[0], request)
    assert sess.image_id == second.id and canvas(out)["image"]["id"] == second.id
    assert out["gallery"]["selected_index"] == 1  # the gallery highlights the open image
    for bad in ({"image": "999"}, {"image": "x"}, {}):
        other = Session()
        cbp.page_load(ctx, other, cbv.SORTS[0], SimpleNamespace(query_params=bad))
        assert other.image_id != second.id  # unknown ids fall back to the first image


def test_adding_a_class_switches_the_brush_and_deleting_reloads_labels(labelled_ctx, sess):
    ctx = labelled_ctx
    open_first(ctx, sess)
    out = cbc.quick_add(ctx, sess, "grass")
    value = canvas(out)
    assert value["select"] == next(c["id"] for c in value["classes"] if c["name"] == "grass")
    paint(ctx, sess.image_id, "red", *LEFT)
    nonce = value["nonce"]
    out = cbc.delete(ctx, sess, str(next(c.id for c in ctx.classes() if c.name == "red")), cbc.DROP, None)
    assert canvas(out)["nonce"] > nonce and canvas(out)["select"] is None


def test_training_errors_are_messages_and_success_updates_views(labelled_ctx, sess):
    ctx = labelled_ctx
    open_first(ctx, sess)
    with pytest.raises(gr.Error, match="No labelled pixels"):
        cba.train(ctx, sess)
    paint(ctx, sess.image_id, "red", *LEFT)
    with pytest.raises(gr.Error, match="Only the class 'red'"):
        cba.train(ctx, sess)
    assert (ctx.engine.repo.label_map(sess.image_id)[LEFT] == 1).all()  # nothing lost
    paint(ctx, sess.image_id, "blue", *RIGHT)
    trained = cba.train(ctx, sess)
    assert "Trained on" in trained["status"] and "red" in trained["status"]  # this fit's figures at once
    labels = ctx.engine.prediction(ctx.project_id, sess.image_id).labels
    w = labels.shape[1]
    assert (labels[:, : int(w * 0.4)] == 1).mean() > 0.95 and (labels[:, int(w * 0.6) :] == 2).mean() > 0.95
    view = cbv.render_view(ctx, sess, cbv.UNC, 1.0, 5)
    assert "Entropy" in view["view_note"]


def test_navigation(labelled_ctx, sess):
    ctx = labelled_ctx
    from tests.images import png_bytes, two_colour

    second = ctx.engine.repo.add_image(ctx.project_id, png_bytes(two_colour(seed=5)), "second.png")
    open_first(ctx, sess)
    first = sess.image_id
    paint(ctx, first, "red", *LEFT)
    paint(ctx, first, "blue", *RIGHT)
    cba.train(ctx, sess)
    out = cba.step(ctx, sess, +1)
    assert sess.image_id == second.id and out["gallery"]["selected_index"] == 1
    window = [i["id"] for i in canvas(out)["window"]]
    assert len(window) == 2 * cba.WINDOW + 1 and window[cba.WINDOW - 1 : cba.WINDOW + 2] == [
        first,
        second.id,
        first,
    ]
    out = cba.navigated(ctx, sess, first, 3)  # the canvas paged by itself: the session follows
    assert sess.image_id == first and canvas(out)["nav"] == 3 and canvas(out)["image"]["id"] == first
    cba.navigated(ctx, sess, second.id, 2)  # an older page turn arriving late does not lower the count
    assert sess.nav == 3
    out = cba.navigated(ctx, sess, second.id, 4, +1)  # at its window's end: the server pages on from there
    assert sess.image_id == first and canvas(out)["nav"] == 4
    cba.navigated(ctx, sess, second.id, 5)
    cba.step(ctx, sess, +1)
    assert sess.image_id == first
    ctx.engine.features(second.id, wait=60)
    jobs.update_stats(ctx.engine, ctx.project_id, ctx.engine.head(ctx.project_id), lambda: False)
    cba.next_uncertain(ctx, sess)
    assert sess.image_id == second.id


def test_the_status_timer_runs_only_while_there_is_background_work(labelled_ctx, sess):
    ctx = labelled_ctx
    open_first(ctx, sess)
    ctx.engine.features(sess.image_id, wait=60)
    out = cbv.tick(ctx, sess, cbv.KM, 0.5, 5, cbv.SORTS[0])
    assert out["timer"].active is False  # idle: the page sends nothing until something happens
    assert "gallery" not in cbv.tick(ctx, sess, cbv.KM, 0.5, 5, cbv.SORTS[0])  # nothing new: nothing redrawn
    # another tab or client imports an image: the stream's news (relayed by the canvas) brings it in
    from tests.images import png_bytes, two_colour

    (new,) = ctx.engine.import_uploads(ctx.project_id, [("new.png", png_bytes(two_colour(seed=3)))]).image_ids
    out = cbv.tick(ctx, sess, cbv.KM, 0.5, 5, cbv.SORTS[0])
    assert "gallery" in out and new in sess.order


def test_bind_runs_callbacks_under_the_session_lock_and_skips_missing_outputs(labelled_ctx, sess):
    handler = bind(labelled_ctx, lambda c, s: cba.show(c, s, s.image_id), SHOW + ["view_img"])
    values = handler(sess)
    assert len(values) == len(SHOW) + 1
    assert isinstance(values[-1], dict) and values[-1].get("__type__") == "update"  # gr.skip()


def test_suggest_shows_needy_regions_and_opens_one_zoomed(labelled_ctx, sess):
    ctx = labelled_ctx
    from tests.images import png_bytes, two_colour

    novel = two_colour(seed=5)
    novel[:, 40:] = (30, 200, 40)  # a colour the head has never seen: it is unsure there
    second = ctx.engine.repo.add_image(ctx.project_id, png_bytes(novel), "second.png").id
    open_first(ctx, sess)
    with pytest.raises(gr.Error, match="No suggestions yet"):
        cba.suggest(ctx, sess)
    first = sess.image_id
    paint(ctx, first, "red", *LEFT)
    paint(ctx, first, "blue", *RIGHT)
    cba.train(ctx, sess)
    ctx.engine.features(second, wait=60)
    out = cba.suggest(ctx, sess)
    items = out["suggestions"]["value"]
    assert out["suggestions"]["visible"] and 1 <= len(items) <= 5 and "need" in items[0][1]
    assert len({image for image, _ in sess.suggestions}) == len(sess.suggestions)  # one region per image
    image_id, box = sess.suggestions[0]
    opened = cba.pick_suggestion(ctx, sess, 0)
    assert sess.image_id == image_id and canvas(opened)["focus"] == list(box)
    assert (
        canvas(cba.show(ctx, sess, sess.image_id))["focus"] is None
    )  # the zoom is applied once, not on every redraw

    # Labelling the whole first image: it needs nothing more, so "next most uncertain" leaves it.
    full = np.ones((84, 112), np.uint8)
    ctx.engine.repo.add_mask(first, full)
    jobs.update_stats(ctx.engine, ctx.project_id, ctx.engine.head(ctx.project_id), lambda: False)
    assert ctx.engine.repo.get_image(first).uncertainty == 0.0
    sess.image_id = first
    cba.next_uncertain(ctx, sess)
    assert sess.image_id == second
    cba.suggest(ctx, sess)
    assert [image for image, _ in sess.suggestions] == [second]


def test_the_gallery_shows_a_page_at_a_time_and_follows_navigation(ctx, sess):
    from tests.images import png_bytes

    rng = np.random.default_rng(0)
    n = cbv.GALLERY_PAGE + 5
    ids = [
        ctx.engine.repo.add_image(
            ctx.project_id, png_bytes(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)), f"{i}.png"
        ).id
        for i in range(n)
    ]
    cba.show(ctx, sess, ids[0])
    out = cbv.gallery(ctx, sess, cbv.SORTS[0])
    assert len(out["gallery"]["value"]) == cbv.GALLERY_PAGE and out["gallery"]["selected_index"] == 0
    assert out["gallery_range"] == f"Images 1–{cbv.GALLERY_PAGE} of {n}"
    assert all(path.endswith(".jpg") for path, _caption in out["gallery"]["value"])  # thumbnails on disk
    second = cbv.turn_page(ctx, sess, +1)
    assert len(second["gallery"]["value"]) == 5 and second["gallery"]["selected_index"] is None
    assert cbv.turn_page(ctx, sess, +1)["gallery_range"] == second["gallery_range"]  # the last page stays
    picked = cba.pick_gallery(ctx, sess, 2)  # an index on the page shown
    assert sess.image_id == ids[cbv.GALLERY_PAGE + 2] and picked["gallery"]["selected_index"] == 2
    assert cbv.resort(ctx, sess, cbv.SORTS[3])["gallery_range"].startswith(
        "Images 1–"
    )  # a new order: its top
    cba.show(ctx, sess, ids[cbv.GALLERY_PAGE + 2])
    cbv.gallery(ctx, sess, cbv.SORTS[0])
    back = cba.step(ctx, sess, +3)  # past the end: wraps to the first image, on the first page
    assert sess.image_id == ids[0] and back["gallery_range"].startswith("Images 1–")
    assert back["gallery"]["selected_index"] == 0


def test_u_walks_down_the_need_ranking_that_the_gallery_sorts_by(ctx, sess):
    from tests.images import png_bytes, two_colour

    ids = [
        ctx.engine.repo.add_image(ctx.project_id, png_bytes(two_colour(seed=n)), f"{n}.png").id
        for n in range(4)
    ]
    for image_id, need in zip(ids, (0.2, 0.9, None, 0.5), strict=True):
        ctx.engine.repo.set_image_stats(image_id, need, need is not None)
    ranking = [i.id for i in cbv.sorted_images(ctx.images(), cbv.SORTS[1])]
    assert ranking == [ids[1], ids[3], ids[0], ids[2]]  # unscored last
    open_first(ctx, sess)  # (opens ids[0])
    walk = []
    for _ in range(4):
        cba.next_uncertain(ctx, sess)
        walk.append(sess.image_id)
    # never the image already open, never back and forth: then from the top again
    assert walk == [ids[1], ids[3], ids[0], ids[1]]
