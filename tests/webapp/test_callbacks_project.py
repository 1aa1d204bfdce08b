"""Classes, images, views, evaluation and export callbacks as plain functions."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from tests.images import png_bytes, two_colour
from tests.webapp.conftest import class_id, colour_of, paint
from webapp import callbacks_annotate as cba
from webapp import callbacks_classes as cbc
from webapp import callbacks_data as cbd
from webapp import callbacks_export as cbe
from webapp import callbacks_page as cbp
from webapp import callbacks_views as cbv

LEFT = (slice(40, 44), slice(5, 50))
RIGHT = (slice(20, 23), slice(62, 108))


def label_and_train(ctx, sess):
    cbp.page_load(ctx, sess, cbv.SORTS[0])
    paint(ctx, sess.image_id, "red", *LEFT)
    paint(ctx, sess.image_id, "blue", *RIGHT)
    cba.train(ctx, sess)


def test_class_lifecycle(ctx, sess):
    out = cbc.quick_add(ctx, sess, "cat")
    cat = class_id(ctx, "cat")
    assert json.loads(out["canvas"])["select"] == cat and out["quick_class_name"] == ""
    assert "cat" in out["classes_table"]
    with pytest.raises(gr.Error, match="already the colour"):
        cbc.add(ctx, sess, "dog", colour_of(ctx, "cat"), True)
    cbc.add(ctx, sess, "dog", "#123456", True)
    assert colour_of(ctx, "dog") == "#123456"
    with pytest.raises(gr.Error, match="(?i)type a name"):
        cbc.add(ctx, sess, "  ", None, False)
    with pytest.raises(gr.Error, match="(?i)already has a class"):
        cbc.add(ctx, sess, "CAT", None, False)
    cbc.rename(ctx, sess, str(cat), "kitten")
    cbc.recolour(ctx, sess, str(cat), "rgb(10, 20, 30)")
    assert colour_of(ctx, "kitten") == "#0a141e"
    cbc.move(ctx, sess, str(cat), +1)
    assert [c.name for c in ctx.classes()] == ["background", "dog", "kitten"]
    assert cbc.move(ctx, sess, str(cat), +1) == {}  # already last
    assert cbc.pick(ctx, sess, str(cat)) == {"class_name": "kitten", "class_colour": "#0a141e"}


def test_deleting_a_class_in_use_needs_a_choice_and_loses_nothing_by_accident(labelled_ctx, sess):
    ctx = labelled_ctx
    cbp.page_load(ctx, sess, cbv.SORTS[0])
    paint(ctx, sess.image_id, "red", *LEFT)
    red, blue = class_id(ctx, "red"), class_id(ctx, "blue")
    with pytest.raises(gr.Error, match="is in use"):
        cbc.delete(ctx, sess, str(red), cbc.KEEP, None)
    assert (ctx.engine.repo.label_map(sess.image_id)[LEFT] == 1).all()
    with pytest.raises(gr.Error, match="gets the labels"):
        cbc.delete(ctx, sess, str(red), cbc.REASSIGN, None)
    cbc.delete(ctx, sess, str(red), cbc.REASSIGN, str(blue))
    assert [c.name for c in ctx.classes()] == ["background", "blue"]
    assert (ctx.engine.repo.label_map(sess.image_id)[LEFT] == 1).all()  # now blue, at index 1
    out = cbc.delete(ctx, sess, str(blue), cbc.DROP, None)
    assert (ctx.engine.repo.label_map(sess.image_id) == 255).all()
    assert [c["name"] for c in json.loads(out["canvas"])["classes"]] == ["background"]
    with pytest.raises(gr.Error, match="at least one class"):
        cbc.delete(ctx, sess, str(class_id(ctx, "background")), cbc.DROP, None)


def test_uploads_report_bad_files_without_losing_good_ones(ctx, sess, tmp_path: Path):
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(two_colour()))
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("inside/a.png", png_bytes(two_colour(seed=3)))
    out = cbd.upload(ctx, sess, [str(good), str(bad), str(archive)], cbv.SORTS[0])
    assert "2 imported" in out["import_report"] and "1 failed" in out["import_report"]
    assert "notes\\.png" in out["import_report"]  # file names are escaped for Markdown
    assert sess.image_id is not None and len(out["gallery"]["value"]) == 2
    assert cbd.upload(ctx, sess, None, cbv.SORTS[0]) == {}


def test_samples_folder_import_split_and_delete(ctx, sess, tmp_path: Path):
    out = cbd.load_samples(ctx, sess, cbv.SORTS[0])
    n = len(ctx.images())
    assert n >= 3 and "imported" in out["import_report"] and len(out["gallery"]["value"]) == n
    again = cbd.load_samples(ctx, sess, cbv.SORTS[0])
    assert "duplicates" in again["import_report"] and len(ctx.images()) == n
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "x.png").write_bytes(png_bytes(two_colour(seed=9)))
    cbd.import_folder(ctx, sess, str(folder), cbv.SORTS[0])
    assert len(ctx.images()) == n + 1
    with pytest.raises(gr.Error, match="not a folder"):
        cbd.import_folder(ctx, sess, str(tmp_path / "missing"), cbv.SORTS[0])
    cbd.set_split(ctx, sess, "val")
    assert ctx.engine.repo.get_image(sess.image_id).split == "val"
    doomed = sess.image_id
    cbd.delete_image(ctx, sess, cbv.SORTS[0])
    assert not ctx.engine.image_exists(doomed) and sess.image_id not in (None, doomed)


def test_voc_import_enables_evaluation(ctx, sess, tiny_voc):
    root, labels = tiny_voc
    out = cbd.import_voc(ctx, sess, str(root), str(labels), cbv.SORTS[0])
    assert "5 imported" in out["import_report"] and {"red", "blue"} <= {c.name for c in ctx.classes()}
    assert "No ground truth" not in cbe.evaluation(ctx, sess)["eval_md"]
    ctx.engine.ensure_features(project_id=ctx.project_id)
    assert ctx.engine.worker.wait_idle(120)
    cba.train(ctx, sess)
    res = cbe.evaluation(ctx, sess)
    assert "mIoU" in res["eval_md"] and "| red |" in res["eval_md"]
    assert "never trained on" in res["eval_md"]  # the page says which images trained the head
    plot = res["eval_plot"]  # mIoU against labelled pixels trained on, never empty once a head is scored
    trained = ctx.engine.training_images(ctx.project_id)
    assert all(i.split != "val" for i in trained) and len(trained) < len(ctx.images())
    assert len(plot) >= 1 and plot["labelled pixels"].iloc[-1] == sum(i.labelled_pixels for i in trained)
    ev = ctx.engine.evaluate(ctx.project_id)
    assert ev.scores.miou > 0.5 and ev.split == "val"


def test_every_view_renders(labelled_ctx, sess):
    ctx = labelled_ctx
    label_and_train(ctx, sess)
    for mode in cbv.VIEW_MODES:
        out = cbv.render_view(ctx, sess, mode, 0.5, 3)
        assert out["view_img"].ndim == 3 and out["view_note"], mode
    assert "Entropy" in cbv.render_view(ctx, sess, cbv.UNC, 0.5, 3)["view_note"]
    sbs = cbv.render_view(ctx, sess, cbv.SBS, 0.5, 3)
    rgb = ctx.engine.repo.image_rgb(ctx.engine.repo.list_images(ctx.project_id)[0].id)
    ph, pw = (sbs["view_img"].shape[0] - 8) / 2, (sbs["view_img"].shape[1] - 8) / 2  # four panels, 2 x 2
    assert ph.is_integer() and abs(ph / pw - rgb.shape[0] / rgb.shape[1]) < 0.01
    assert "prediction over the image" in sbs["view_note"]
    tick = cbv.tick(ctx, sess, cbv.KM, 0.5, 3, cbv.SORTS[0])
    assert "Last training" in tick["status"] and "view_img" not in tick  # nothing new to draw
    items = cbv.gallery(ctx, sess, cbv.SORTS[1])["gallery"]["value"]
    assert "318 px" in items[0][1] and "need " in items[0][1]  # compact: pixels and need for labels


def test_exports(labelled_ctx, sess):
    ctx = labelled_ctx
    with pytest.raises(gr.Error, match="No trained head"):
        cbe.export_head(ctx, sess)
    label_and_train(ctx, sess)
    links = cbe.download_links(ctx, False)  # VOC, COCO and the archive download through the REST route
    assert "format=voc'" in links and "format=coco'" in links and "format=archive'" in links
    assert "predictions=true" in cbe.export_links(ctx, sess, True)["export_links"]
    [bundle] = cbe.export_head(ctx, sess)["export_files"]  # one download
    unpacked = Path(bundle).parent / "unpacked"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(unpacked)
    files = sorted(str(p) for p in unpacked.rglob("head.*"))[::-1]  # head.safetensors, head.json
    assert (
        files[0].endswith("head.safetensors")
        and json.loads(Path(files[1]).read_text())["backbone"] == "dinov2_vits14"
    )
    from cli.main import main  # the exported head is what the command line predicts with

    image = Path(files[0]).parent.parent / "two.png"
    image.write_bytes(ctx.engine.repo.image_bytes(ctx.engine.repo.list_images(ctx.project_id)[0].id))
    out = Path(files[0]).parent.parent / "predicted"
    assert (
        main(
            [
                "predict",
                "--head",
                str(Path(files[0]).parent),
                "--images",
                str(image),
                "--out",
                str(out),
                "--no-cache",
            ]
        )
        == 0
    )
    assert (out / "two.png").is_file()
    assert np.asarray(cbe.progress_table(ctx)).size == 0  # no ground truth: no mIoU points


def test_folder_import_reads_nothing_outside_the_import_roots(ctx, sess, tmp_path: Path):
    import dataclasses

    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png_bytes(two_colour(seed=3)))
    (outside / "passwords.txt").write_text("x")
    inside = tmp_path / "inside"
    inside.mkdir()
    (inside / "ok.png").write_bytes(png_bytes(two_colour(seed=4)))
    (inside / "leak.png").symlink_to(outside / "secret.png")
    (inside / "linked-dir").symlink_to(outside, target_is_directory=True)
    (tmp_path / "escape").symlink_to(outside, target_is_directory=True)
    messages = []
    for attempt in (
        str(outside),
        str(inside / ".." / ".." / outside.name),
        str(tmp_path / "escape"),
        "/etc",
        "/no/such/folder",
        str(tmp_path / "data"),
        str(tmp_path / "data" / "images"),
    ):
        with pytest.raises(gr.Error) as err:
            cbd.import_folder(ctx, sess, attempt, cbv.SORTS[0])
        messages.append(str(err.value))
    # The same answer whether the folder exists or not, naming only where imports are allowed.
    assert len(set(messages)) == 1 and "import folders" in messages[0] and "etc" not in messages[0]
    with pytest.raises(gr.Error):  # the root itself holds the data folder: importing it would read projects
        cbd.import_folder(ctx, sess, str(tmp_path), cbv.SORTS[0])
    out = cbd.import_folder(ctx, sess, str(inside), cbv.SORTS[0])
    names = {i.name for i in ctx.images()}
    assert names == {"ok.png"}  # neither the symlinked file nor the symlinked folder was read
    assert "secret" not in out["import_report"] and "passwords" not in out["import_report"]
    assert "outside the import folders" in out["import_report"]
    off = dataclasses.replace(ctx, import_roots=())
    with pytest.raises(gr.Error, match="--import-root"):
        cbd.import_folder(off, sess, str(inside), cbv.SORTS[0])


def test_user_text_is_shown_as_typed_never_as_markup(ctx, sess):
    from webapp import imagepanel
    from webapp.text import md

    hostile = "<img src=x onerror=alert(1)>**bold**|cell"
    cls = ctx.engine.repo.add_class(ctx.project_id, hostile)
    info = ctx.engine.repo.add_image(ctx.project_id, png_bytes(two_colour(seed=1)), f"{hostile}.png")
    labels = np.full((info.height, info.width), 255, np.uint8)
    labels[2:6, 2:6] = cls.index
    ctx.engine.repo.save_scribbles(info.id, labels)
    info = ctx.engine.repo.get_image(info.id)
    rendered = [
        imagepanel.image_title(ctx, sess, info),
        imagepanel.image_status(ctx, info, ctx.classes()),
        cbv._legend(ctx.classes()),
    ]
    assert md(info.name) in rendered[0]  # the stored (sanitised) file name, escaped
    import re

    for text in rendered:  # no raw tag, no bold markers, no unescaped table pipe
        assert "<img" not in text and "**bold**" not in text and not re.search(r"(?<!\\)\|cell", text), text
    for text in rendered[1:]:
        assert md(hostile) in text
    assert md(hostile) == "&lt;img src=x onerror=alert\\(1\\)&gt;\\*\\*bold\\*\\*\\|cell"


def test_uploads_are_received_in_the_data_folder_and_deleted_once_imported(ctx, sess, tmp_path: Path):
    import dataclasses

    from webapp.server import prepare_upload_dir

    stale = tmp_path / "data" / "uploads" / "old" / "left-over.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    import os

    before = os.environ.get("GRADIO_TEMP_DIR")
    try:
        folder = prepare_upload_dir(tmp_path / "data")
        assert not stale.exists() and os.environ["GRADIO_TEMP_DIR"] == str(folder)  # emptied at start-up
    finally:
        if before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = before
    up = folder / "a1b2" / "photo.png"
    up.parent.mkdir()
    up.write_bytes(png_bytes(two_colour(seed=6)))
    ctx2 = dataclasses.replace(ctx, upload_dir=str(folder))
    cbd.upload(ctx2, sess, [str(up)], cbv.SORTS[0])
    assert [i.name for i in ctx.images()] == ["photo.png"]
    assert not up.exists() and not up.parent.exists() and folder.is_dir()


def test_tiff_settings_coco_and_napari_imports_from_the_images_tab(ctx, sess, tmp_path: Path, tiny_voc):
    import io
    import json

    import numpy as np
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(
        buf, (np.arange(3 * 20 * 30).reshape(3, 20, 30) * 20).astype(np.uint16), photometric="minisblack"
    )
    stack = tmp_path / "stack.tif"
    stack.write_bytes(buf.getvalue())
    with pytest.raises(gr.Error, match="whole numbers"):
        cbd.upload(ctx, sess, [str(stack)], cbv.SORTS[0], plane="first")
    with pytest.raises(gr.Error, match="percentiles"):
        cbd.upload(ctx, sess, [str(stack)], cbv.SORTS[0], low=90, high=10)
    out = cbd.upload(ctx, sess, [str(stack)], cbv.SORTS[0], plane="2", channels="", low=1, high=99)
    assert [i.name for i in ctx.images()] == ["stack_plane002.png"]
    assert "imported plane 2" in out["import_report"] and "whole import" in out["import_report"]

    # COCO: a file inside the import root, its images in the folder typed above
    root, labels = tiny_voc
    names = sorted(p.name for p in (root / "JPEGImages").iterdir())
    from PIL import Image

    w, h = Image.open(root / "JPEGImages" / names[0]).size
    doc = {
        "images": [{"id": 1, "file_name": names[0], "width": w, "height": h}],
        "categories": [{"id": 1, "name": "red"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]}
        ],
    }
    (tmp_path / "coco.json").write_text(json.dumps(doc))
    with pytest.raises(gr.Error, match="COCO JSON file"):
        cbd.import_coco(ctx, sess, str(root / "JPEGImages"), "", False, cbv.SORTS[0])
    out = cbd.import_coco(
        ctx, sess, str(root / "JPEGImages"), str(tmp_path / "coco.json"), True, cbv.SORTS[0]
    )
    assert "1 imported" in out["import_report"] and "red" in {c.name for c in ctx.classes()}

    # napari / ilastik masks: 0 = unlabelled
    napari = tmp_path / "napari"
    napari.mkdir()
    from core.labels import read_label_png, write_label_png

    for p in labels.iterdir():
        m = read_label_png(p)
        write_label_png(napari / p.name, np.where(m == 255, 0, m + 1).astype(np.uint8))
    q = ctx.engine.repo.create_project("napari")
    report = ctx.engine.repo.import_voc(q.id, root, napari, zero_is_unlabelled=True)
    first = report.image_ids[0]
    stem = ctx.engine.repo.get_image(first).name.rsplit(".", 1)[0]
    np.testing.assert_array_equal(ctx.engine.repo.label_map(first), read_label_png(labels / f"{stem}.png"))


def test_an_uploaded_archive_or_voc_zip_is_offered_as_a_project_never_as_loose_images(
    labelled_ctx, sess, tmp_path
):
    ctx = labelled_ctx
    [im] = ctx.images()
    red = next(c for c in ctx.classes() if c.name == "red")
    ctx.engine.repo.add_point(im.id, red.id, 10, 10, 3)
    archive = ctx.engine.repo.export_project(ctx.project_id, tmp_path / "mine-project.zip")
    voc = ctx.engine.repo.export_voc(ctx.project_id, tmp_path / "mine-voc.zip")
    before = len(ctx.images())

    out = cbd.upload(ctx, sess, [str(archive)], cbv.SORTS[0])
    assert len(ctx.images()) == before  # nothing imported as loose images
    assert out["bundle_box"]["visible"] is True and "project archive" in out["bundle_md"]
    assert out["bundle_name"] == "mine" and out["bundle_merge_btn"]["visible"] is False
    made = cbd.import_bundle(ctx, sess, "restored", False, cbv.SORTS[0])
    restored = ctx.engine.repo.find_project("restored")
    assert restored is not None and restored.image_count == 1 and "restored" in made["import_report"]
    assert made["bundle_box"]["visible"] is False and sess.bundle is None

    out = cbd.upload(ctx, sess, [str(voc)], cbv.SORTS[0])
    assert "VOC dataset" in out["bundle_md"] and out["bundle_merge_btn"]["visible"] is True
    merged = cbd.import_bundle(ctx, sess, "", True, cbv.SORTS[0])
    assert len(ctx.images()) == before and "merged" in merged["import_report"]  # the same image: no double
    with pytest.raises(gr.Error, match="already exists"):  # (through the page: a toast, see ui.bind)
        cbd.upload(ctx, sess, [str(archive)], cbv.SORTS[0])
        cbd.import_bundle(ctx, sess, "restored", False, cbv.SORTS[0])


def test_a_page_open_across_a_restart_keeps_working(labelled_ctx, sess):
    """Gradio checks a value against the choices a component was built with when the session lost its
    updates (a server restart): the class pickers take any value and refuse what is not a class of this
    project in words (the class toggles are the canvas's, in the page)."""
    from webapp.layout import build

    ctx = labelled_ctx
    demo, ui = build(ctx)
    assert ui.class_pick.preprocess("12345") == "12345"  # no "not in the list of choices" error
    with pytest.raises(gr.Error, match="not in this project"):
        cbc.rename(ctx, sess, "12345", "x")
    demo.close()


def test_the_images_tab_sets_the_projects_resolution(labelled_ctx, sess):
    ctx = labelled_ctx
    [image] = ctx.images()
    out = cbp.page_load(ctx, sess, cbv.SORTS[0])
    assert out["resolution"] == "112" and "112 px" in out["resolution_md"] and "112 px" in out["header"]
    assert "dinov2_vits14" in out["header"] and "licence: Apache-2.0" in out["header"]  # the weights' licence
    out = cbd.set_resolution(ctx, sess, "7px")
    assert out["resolution"] == "7px" and "7 image px a token" in out["header"]
    assert "16 x 12 tokens (7 px a token)" in out["info"]  # the image panel says the new grid
    assert ctx.engine.features(image.id, wait=120).grid == (12, 16)
    with pytest.raises(gr.Error, match="not understood"):
        cbd.set_resolution(ctx, sess, "<b>fine</b>")
    assert ctx.engine.project_config(ctx.project_id).resolution == "7px"
