"""Exports and exchange formats: VOC layout and COCO (both read back), TIFF and napari-style imports, head files,
and the whole-project archive round trip."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save as st_save

from core.head_meta import HeadMeta
from core.labels import read_label_png, voc_palette
from core.tiff import TiffOptions
from storage import Repository, ValidationError

from .conftest import class_ids, rgb_png

N = 255


# ------------------------------------------------------------------ fixtures
def _labelled_project(repo: Repository):  # type: ignore[no-untyped-def]
    p = repo.create_project("export me", description="d", settings={"backbone": "dinov2_vits14"})
    cat, dog = repo.add_class(p.id, "cat"), repo.add_class(p.id, "dog", "#00ff00")
    a = repo.add_image(p.id, rgb_png(6, 8, 1), "same.png")
    b = repo.add_image(p.id, rgb_png(5, 4, 2), "sub/same.png")
    c = repo.add_image(p.id, rgb_png(3, 3, 3), "unlabelled.png")
    scr = np.full((6, 8), N, np.uint8)
    scr[0] = 1
    scr[1, :4] = 2
    repo.save_scribbles(a.id, scr, author="alice")
    repo.add_point(a.id, dog.id, 6, 4, 1, author="bob")
    repo.add_point(a.id, cat.id, 0, 5, 0)
    repo.undo(a.id)
    mask = np.zeros((5, 4), np.uint8)
    mask[0] = N
    repo.add_mask(b.id, mask, source="noisy")
    region = np.zeros((5, 4), bool)
    region[4] = True
    repo.erase(b.id, region)
    repo.set_ground_truth(a.id, np.ones((6, 8), np.uint8), source="gt")
    repo.set_split(a.id, "train")
    repo.set_split(b.id, "val")
    repo.set_image_stats(b.id, 0.75, True)
    return p, (cat, dog), (a, b, c)


def _safetensors() -> bytes:
    return st_save({"weight": np.arange(12, dtype=np.float32).reshape(3, 4), "bias": np.zeros(3, np.float32)})


def test_export_voc_is_a_voc_layout_that_imports_and_trains_back(repo, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    p, _cls, (a, b, c) = _labelled_project(repo)
    path = repo.export_voc(p.id, tmp_path / "out" / "voc")
    assert path.name == "voc.zip"
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "voc")
    assert names == {
        "JPEGImages/same.png",
        "JPEGImages/same_2.png",
        "JPEGImages/unlabelled.png",
        "labels/same.png",
        "labels/same_2.png",
        "SegmentationClass/same.png",
        "ImageSets/Segmentation/train.txt",
        "ImageSets/Segmentation/val.txt",
        "ImageSets/Segmentation/trainval.txt",
        "classes.txt",
    }
    root = tmp_path / "voc"
    assert (root / "classes.txt").read_text().splitlines() == [
        "background #000000",
        "cat #800000",
        "dog #00ff00",
    ]
    assert (root / "ImageSets/Segmentation/train.txt").read_text().split() == ["same"]
    assert (root / "ImageSets/Segmentation/val.txt").read_text().split() == ["same_2"]
    img = Image.open(root / "labels" / "same.png")
    assert img.mode == "P" and img.getpalette()[:9] == voc_palette()[:3].reshape(-1).tolist()

    # The project's own VOC import reads it back to an equal project.
    q = repo.create_project("round trip")
    report = repo.import_voc(q.id, root, None)
    assert len(report.imported) == 3 and not report.failed, report
    assert [(k.name, k.colour) for k in repo.list_classes(q.id)] == [
        (k.name, k.colour) for k in repo.list_classes(p.id)
    ]
    back = {im.name.rsplit(".", 1)[0]: im for im in repo.list_images(q.id)}
    for stem, original in (("same", a), ("same_2", b), ("unlabelled", c)):
        np.testing.assert_array_equal(repo.label_map(back[stem].id), repo.label_map(original.id))
        assert back[stem].split == repo.get_image(original.id).split
        gt = repo.ground_truth(original.id)
        got = repo.ground_truth(back[stem].id)
        assert (gt is None and got is None) or np.array_equal(gt, got)

    # `train` and `evaluate` read it as it is.
    from cli.main import main

    monkeypatch.setenv("PROBESEG_CACHE", str(tmp_path / "cache"))
    assert (
        main(
            [
                "train",
                "--data",
                str(root),
                "--labels",
                str(root / "labels"),
                "--label-kind",
                "scribble",
                "--weights",
                "random",
                "--long-side",
                "28",
                "--split",
                "trainval",
                "--out",
                str(tmp_path / "h"),
            ]
        )
        == 0
    )
    assert main(["evaluate", "--data", str(root), "--head", str(tmp_path / "h"), "--split", "train"]) == 0

    pred = {c.id: np.full((3, 3), 2, np.uint8)}
    with zipfile.ZipFile(repo.export_voc(p.id, tmp_path / "pred.zip", predictions=pred)) as zf:
        assert [n for n in zf.namelist() if n.startswith("labels/")] == ["labels/unlabelled.png"]
        assert (read_label_png(zf.read("labels/unlabelled.png")) == 2).all()
    with pytest.raises(ValidationError, match="shape"):
        repo.export_voc(p.id, tmp_path / "x.zip", predictions={c.id: np.zeros((2, 2), np.uint8)})
    with pytest.raises(ValidationError, match="class indices"):
        repo.export_voc(p.id, tmp_path / "x.zip", predictions={c.id: np.full((3, 3), 7, np.uint8)})


def test_import_coco_reads_rle_and_polygons_into_labels_or_ground_truth(repo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    p, _cls, (a, b, _c) = _labelled_project(repo)
    exported = json.loads(repo.export_coco(p.id, tmp_path / "coco").read_text())
    folder = tmp_path / "images"
    folder.mkdir()
    for im in exported["images"]:
        (folder / im["file_name"]).write_bytes(repo.image_bytes(im["id"]))
    # One more image with a polygon (COCO's other mask form) and one whose file_name tries to leave the folder.
    (folder / "poly.png").write_bytes(rgb_png(10, 12, 9))
    exported["images"] += [
        {"id": 900, "file_name": "poly.png", "width": 12, "height": 10},
        {"id": 901, "file_name": "../outside.png", "width": 2, "height": 2},
    ]
    (tmp_path / "outside.png").write_bytes(rgb_png(2, 2, 4))
    exported["annotations"].append(
        {
            "id": 999,
            "image_id": 900,
            "category_id": 3,
            "iscrowd": 0,
            "segmentation": [[2, 2, 9, 2, 9, 7, 2, 7]],
        }
    )
    coco_file = tmp_path / "in.json"
    coco_file.write_text(json.dumps(exported))

    q = repo.create_project("from coco")
    report = repo.import_coco(q.id, coco_file, folder)
    assert len(report.imported) == 3 and report.annotations == 2  # image b holds only background: nothing
    assert [f for f, _ in report.failed] == ["outside.png"] and "outside the images folder" in report.failed[
        0
    ][1]
    assert [k.name for k in repo.list_classes(q.id)] == ["background", "cat", "dog"]
    back = {im.name: im for im in repo.list_images(q.id)}
    for im in exported["images"][:2]:
        expected = repo.label_map(im["id"])
        np.testing.assert_array_equal(
            repo.label_map(back[im["file_name"]].id), np.where(expected == 0, N, expected)
        )
    poly = repo.label_map(back["poly.png"].id)
    assert set(np.unique(poly)) == {2, N} and 30 <= (poly == 2).sum() <= 56

    g = repo.create_project("coco as ground truth")
    repo.import_coco(g.id, coco_file, folder, as_ground_truth=True, fill_background=True)
    gt = repo.ground_truth(next(im.id for im in repo.list_images(g.id) if im.name == "poly.png"))
    assert set(np.unique(gt)) == {0, 2}  # pixels of no annotation are background
    with pytest.raises(ValidationError, match="not a COCO file"):
        (tmp_path / "bad.json").write_text("{}")
        repo.import_coco(g.id, tmp_path / "bad.json", folder)


def test_export_coco_decodes_back_to_the_label_maps(repo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pycocotools.coco import COCO

    p, _cls, (a, b, _c) = _labelled_project(repo)
    for with_background in (False, True):
        path = repo.export_coco(
            p.id, tmp_path / f"coco-{with_background}", include_background=with_background
        )
        doc = json.loads(path.read_text())
        names = ["background", "cat", "dog"] if with_background else ["cat", "dog"]
        assert [c["name"] for c in doc["categories"]] == names
        assert [c["id"] for c in doc["categories"]] == [1, 2, 3][-len(names) :]
        assert {i["id"] for i in doc["images"]} == {a.id, b.id}
        api = COCO(str(path))  # pycocotools reads the file as it is
        for im in doc["images"]:
            rebuilt = np.full((im["height"], im["width"]), N, np.uint8)
            for ann in api.loadAnns(api.getAnnIds(imgIds=[im["id"]])):
                m = api.annToMask(ann).astype(bool)
                assert isinstance(ann["segmentation"]["counts"], str)
                assert ann["area"] == int(m.sum())
                rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
                assert ann["bbox"] == [cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1]
                assert not (rebuilt[m] != N).any()  # one class per pixel
                rebuilt[m] = ann["category_id"] - 1
            expected = repo.label_map(im["id"])
            if not with_background:
                expected = np.where(expected == 0, N, expected)
            np.testing.assert_array_equal(rebuilt, expected)


def test_export_head_writes_the_one_head_format(repo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from core.head import LinearHead, head_to_bytes, load_head

    p = repo.create_project("h")
    repo.add_class(p.id, "cat")
    trained = LinearHead(6, 2)
    with torch.no_grad():
        trained.conv.weight.normal_()
    weights = head_to_bytes(trained)
    head = repo.save_head(
        p.id,
        weights,
        HeadMeta("dinov2_vits14", "sha:abc", ["a", "b"], 224, train={"loss": 0.1}),
        {"miou": 0.5},
    )
    st, js = repo.export_head(head.id, tmp_path / "heads")
    assert st.read_bytes() == weights and st.parent == js.parent == tmp_path / "heads" / f"head-{head.id}"
    loaded, meta = load_head(st.parent)  # what `app.py predict --head` reads
    assert torch.equal(loaded.conv.weight, trained.conv.weight)
    assert meta.backbone == "dinov2_vits14" and meta.weights_id == "sha:abc" and meta.long_side == 224
    assert meta.classes == ["background", "cat"] and meta.train == {"loss": 0.1}
    assert (
        meta.features["timm_model"] == "vit_small_patch14_dinov2.lvd142m"
        and meta.features["ignore_index"] == 255
    )
    assert meta.extra["metrics"] == {"miou": 0.5} and meta.extra["head_id"] == head.id
    assert [c["colour"] for c in meta.extra["classes"]][0] == "#000000"
    assert json.loads(js.read_text())["format"] == 1


# ------------------------------------------------------------------ whole-project archive
def _snapshot(repo: Repository, project_id: int) -> dict:  # type: ignore[type-arg]
    """Everything about a project, with database ids replaced by stable keys."""
    classes = repo.list_classes(project_id)
    cname = {c.id: c.name for c in classes}
    proj = repo.get_project(project_id)
    snap: dict = {  # type: ignore[type-arg]
        "project": (proj.name, proj.description, proj.settings, proj.created_at),
        "classes": [(c.name, c.colour, c.index) for c in classes],
        "images": [],
        "heads": [],
        "runs": [],
    }
    for im in repo.list_images(project_id):
        seq_of = {h.id: h.seq for h in repo.history(im.id)}
        gt = repo.ground_truth(im.id)
        snap["images"].append(
            {
                "info": (
                    im.name,
                    im.content_hash,
                    im.pixel_hash,
                    im.width,
                    im.height,
                    im.split,
                    im.format,
                    im.file_size,
                    im.created_at,
                    im.labelled_pixels,
                    im.has_ground_truth,
                    im.has_prediction,
                    im.uncertainty,
                    im.stats_updated_at,
                ),
                "bytes": repo.image_bytes(im.id),
                "labels": repo.label_map(im.id).tolist(),
                "scribbles": repo.scribble_layer(im.id).tolist(),
                "gt": None if gt is None else gt.tolist(),
                "points": [
                    (cname.get(pt.class_id), pt.class_index, pt.x, pt.y, pt.radius, pt.author, pt.created_at)
                    for pt in repo.points(im.id)
                ],
                "history": [
                    (
                        h.seq,
                        h.kind,
                        h.author,
                        h.created_at,
                        h.source,
                        h.active,
                        h.x,
                        h.y,
                        h.radius,
                        cname.get(h.class_id),
                        sorted(cname[i] for i in h.class_ids),
                        seq_of.get(h.target_id),
                    )
                    for h in repo.history(im.id)
                ],
                "state": (
                    repo.edit_state(im.id).version,
                    repo.edit_state(im.id).can_undo,
                    repo.edit_state(im.id).can_redo,
                ),
                "counts": repo.labelled_pixel_counts(image_id=im.id),
            }
        )
    for h in repo.list_heads(project_id):
        snap["heads"].append(
            (
                h.weights_sha256,
                h.size_bytes,
                h.meta,
                h.metrics,
                h.created_at,
                [(c.name, c.colour, c.index) for c in h.classes],
                repo.head_weights(h.id),
            )
        )
    for r in repo.list_training_runs(project_id):
        snap["runs"].append(
            (
                r.settings,
                r.seconds,
                r.loss,
                r.metrics,
                r.pixel_counts,
                r.labelled_pixels,
                r.created_at,
                r.head_id is not None,
            )
        )
    return snap


def test_project_archive_round_trip_into_an_empty_data_folder(repo, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    p, (cat, dog), (a, _b, _c) = _labelled_project(repo)
    repo.reorder_classes(p.id, [dog.id, cat.id, repo.list_classes(p.id)[0].id])
    repo.recolour_class(cat.id, "#abcdef")
    extra = repo.add_class(p.id, "extra")
    repo.add_point(a.id, extra.id, 3, 3, 0)
    repo.undo(a.id)
    repo.delete_class(extra.id, mode="delete_labels")  # history keeps a point of a deleted class
    head = repo.save_head(
        p.id,
        _safetensors(),
        HeadMeta("dinov2_vits14", "w1", ["cat", "dog"], 0, class_ids=[5, 6]),
        {"miou": 0.4},
    )
    repo.record_training_run(
        p.id, {"lr": 0.01, "epochs": 3}, 12.5, 0.31, {"miou": 0.4}, {"cat": 9, "dog": 7}, head_id=head.id
    )
    repo.record_training_run(p.id, {"lr": 0.01}, 3.0, None, None, {"cat": 2})
    before = _snapshot(repo, p.id)

    archive = repo.export_project(p.id, tmp_path / "backup")
    assert archive.suffix == ".zip"
    with zipfile.ZipFile(archive) as zf:
        assert all(not n.startswith(("/", "..")) and ".." not in n.split("/") for n in zf.namelist())

    monkeypatch.delenv("DATABASE_URL", raising=False)
    with Repository.open(tmp_path / "fresh") as fresh:  # an empty data folder (SQLite)
        assert fresh.list_projects() == []
        imported = fresh.import_project(archive)
        assert imported.name == "export me" and imported.image_count == 3
        assert _snapshot(fresh, imported.id) == before
        # undo/redo keep working on the imported history
        a2 = next(i for i in fresh.list_images(imported.id) if i.name == "same.png")
        assert fresh.redo(a2.id) is not None
        from storage import ConflictError

        with pytest.raises(ConflictError, match="already exists"):
            fresh.import_project(archive)
        again = fresh.import_project(archive, name="copy")
        assert _snapshot(fresh, again.id)["images"] == before["images"]


def test_import_project_rejects_bad_archives(repo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValidationError, match="not a readable zip"):
        repo.import_project(bad)
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("x.txt", "hi")
    with pytest.raises(ValidationError, match="no project.json"):
        repo.import_project(tmp_path / "empty.zip")
    p, _cls, _imgs = _labelled_project(repo)
    good = repo.export_project(p.id, tmp_path / "good.zip")
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            if not info.filename.startswith("images/"):
                dst.writestr(info, src.read(info))
    n_projects = len(repo.list_projects())
    with pytest.raises(ValidationError, match="incomplete"):
        repo.import_project(broken, name="broken")
    assert len(repo.list_projects()) == n_projects


def test_projects(repo) -> None:  # type: ignore[no-untyped-def]
    from storage import ConflictError, NotFoundError

    p = repo.create_project("One", settings={"a": 1})
    with pytest.raises(ConflictError):
        repo.create_project("one")
    assert repo.find_project("one").id == p.id and repo.find_project("nope") is None
    assert repo.rename_project(p.id, "Two").name == "Two"
    assert repo.update_project_settings(p.id, {"b": 2, "a": None}).settings == {"b": 2}
    q = repo.create_project("Three")
    im = repo.add_image(q.id, rgb_png(3, 3), "a.png")
    repo.add_point(im.id, class_ids(repo, q.id)["background"], 1, 1, 1)
    assert [x.name for x in repo.list_projects()] == ["Two", "Three"]
    assert repo.list_projects()[1].image_count == 1
    repo.delete_project(q.id)
    with pytest.raises(NotFoundError):
        repo.get_project(q.id)
    assert not [f for f in (repo.data_dir / "images").rglob("*.png")]


def test_tiff_uploads_become_planes_with_one_intensity_rule(repo) -> None:  # type: ignore[no-untyped-def]
    from tests.core.test_tiff import tiff_bytes

    p = repo.create_project("tiffs")
    stack = (np.arange(3 * 6 * 7, dtype=np.uint16).reshape(3, 6, 7) * 100).astype(np.uint16)
    single = np.full((6, 7), 4100, np.uint16)
    report = repo.import_uploads(
        p.id,
        [
            ("stack.tif", tiff_bytes(stack, photometric="minisblack")),
            ("one.tiff", tiff_bytes(single)),
            ("bad.tif", b"II*\x00garbage"),
        ],
    )
    assert report.imported == ("stack_plane000.png", "stack_plane001.png", "stack_plane002.png", "one.png")
    assert report.failed[0][0] == "bad.tif" and "not a readable TIFF" in report.failed[0][1]
    assert any("3 planes" in n for n in report.notes) and any("whole import" in n for n in report.notes)
    ims = {im.name: im for im in repo.list_images(p.id)}
    one = repo.image_rgb(ims["one.png"].id)
    first = repo.image_rgb(ims["stack_plane000.png"].id)
    # One rule for the whole import: 4100 is also the stack's value at plane 0, (5, 6), and gets the same grey.
    assert one.shape == (6, 7, 3) and len(np.unique(one)) == 1 and stack[0, 5, 6] == 4100
    assert one[0, 0, 0] == first[5, 6, 0] and 0 < one[0, 0, 0] < 255

    report = repo.import_uploads(
        p.id, [("stack2.tif", tiff_bytes(stack + 1, photometric="minisblack"))], tiff=TiffOptions(plane=1)
    )
    assert report.imported == ("stack2_plane001.png",) and "imported plane 1" in report.notes[0]


def test_voc_labels_with_zero_as_unlabelled(repo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.labels import write_label_png

    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "JPEGImages" / "a.png").write_bytes(rgb_png(4, 5, 1))
    (root / "classes.txt").write_text("background\ncat\n")
    (root / "ilastik").mkdir()
    mask = np.zeros((4, 5), np.uint8)
    mask[0] = 2  # cat in napari's counting (1 = the first class)
    mask[3] = 1
    write_label_png(root / "ilastik" / "a.png", mask)
    p = repo.create_project("napari")
    report = repo.import_voc(p.id, root, "ilastik", zero_is_unlabelled=True)
    assert report.annotations == 1
    labels = repo.label_map(report.image_ids[0])
    assert (labels[0] == 1).all() and (labels[3] == 0).all() and (labels[1:3] == N).all()


def test_exports_of_an_exif_rotated_photo_read_upright_as_they_are(repo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Phone photos carry an orientation tag that PIL's Image.open and torchvision's VOC loader do not apply:
    JPEGImages/ holds the pixels upright without the tag, the size of the label PNG; COCO says that size."""
    import io

    from pycocotools import mask as rle

    p = repo.create_project("phone")
    cat = repo.add_class(p.id, "thing")
    stored = np.zeros((30, 40, 3), np.uint8)
    stored[:15] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40x30, shown 30x40
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    im = repo.add_image(p.id, buf.getvalue(), "phone.jpg")
    repo.add_point(im.id, cat.id, x=25, y=35, radius=2)
    plain = repo.add_image(p.id, rgb_png(12, 16), "plain.png")
    with zipfile.ZipFile(repo.export_voc(p.id, tmp_path / "voc.zip")) as zf:
        photo = Image.open(io.BytesIO(zf.read("JPEGImages/phone.jpg")))
        labels = read_label_png(zf.read("labels/phone.png"))
        assert photo.size == (labels.shape[1], labels.shape[0]) == (30, 40)
        assert photo.getexif().get(0x0112) is None  # no tag left to rotate it a second time
        assert np.asarray(photo)[5:35, 20:28, 0].mean() > 200  # the stored top (red) is on the right
        assert zf.read("JPEGImages/plain.png") == repo.image_bytes(plain.id)  # upright files go as stored
    doc = json.loads(repo.export_coco(p.id, tmp_path / "coco.json").read_text())
    [image] = doc["images"]
    [ann] = doc["annotations"]
    assert (image["width"], image["height"]) == (30, 40)
    assert rle.decode(ann["segmentation"]).shape == (40, 30)
