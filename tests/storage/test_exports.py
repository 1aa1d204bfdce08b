"""Exports: palette PNG zip, COCO RLE (decoded back), head files, and the whole-project archive round trip."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from safetensors.numpy import save as st_save

from core.labels import read_label_png, voc_palette
from storage import Repository, ValidationError, coco

from .conftest import class_ids, rgb_png

N = 255


# ------------------------------------------------------------------ RLE
def test_rle_known_vectors() -> None:
    assert coco.encode(np.ones((2, 2), bool)) == {"size": [2, 2], "counts": "04"}
    assert coco.encode(np.array([[0, 1], [1, 1]], bool), compressed=False)["counts"] == [1, 3]
    assert coco.encode(np.zeros((3, 2), bool), compressed=False)["counts"] == [6]
    assert coco.counts_to_string([100]) == "T3" and coco.string_to_counts("T3") == [100]
    m = np.array([[1, 0, 0], [1, 1, 0]], bool)  # column-major: 1 1 | 0 1 | 0 0
    assert coco.rle_counts(m) == [0, 2, 1, 1, 2]


def test_rle_round_trips_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    shapes = [(1, 1), (1, 7), (7, 1), (13, 13), (40, 33), (200, 3)]
    for h, w in shapes:
        for density in (0.0, 0.02, 0.5, 0.98, 1.0):
            m = rng.random((h, w)) < density
            for compressed in (True, False):
                rle = coco.encode(m, compressed)
                np.testing.assert_array_equal(coco.decode(rle), m)
    big = np.zeros((500, 500), bool)
    big[100:400, 50:60] = True  # long runs: multi-group and negative differences
    big[0, 0] = True
    assert coco.string_to_counts(coco.counts_to_string(coco.rle_counts(big))) == coco.rle_counts(big)
    assert coco.bbox(big[100:, 40:]) == [10.0, 0.0, 10.0, 300.0]


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


def test_export_label_pngs(repo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    p, _cls, (a, b, c) = _labelled_project(repo)
    path = repo.export_label_pngs(p.id, tmp_path / "out" / "labels")
    assert path.name == "labels.zip"
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["classes.txt", "same.png", "same_2.png"]
        np.testing.assert_array_equal(read_label_png(zf.read("same.png")), repo.label_map(a.id))
        np.testing.assert_array_equal(read_label_png(zf.read("same_2.png")), repo.label_map(b.id))
        import io

        from PIL import Image
        img = Image.open(io.BytesIO(zf.read("same.png")))
        assert img.mode == "P" and img.getpalette()[:9] == voc_palette()[:3].reshape(-1).tolist()
        assert zf.read("classes.txt").decode().splitlines() == ["background #000000", "cat #800000", "dog #00ff00"]
    pred = {c.id: np.full((3, 3), 2, np.uint8)}
    ppath = repo.export_label_pngs(p.id, tmp_path / "pred.zip", predictions=pred)
    with zipfile.ZipFile(ppath) as zf:
        assert sorted(zf.namelist()) == ["classes.txt", "unlabelled.png"]
        assert (read_label_png(zf.read("unlabelled.png")) == 2).all()
    with pytest.raises(ValidationError, match="shape"):
        repo.export_label_pngs(p.id, tmp_path / "x.zip", predictions={c.id: np.zeros((2, 2), np.uint8)})
    with pytest.raises(ValidationError, match="class indices"):
        repo.export_label_pngs(p.id, tmp_path / "x.zip", predictions={c.id: np.full((3, 3), 7, np.uint8)})


def test_export_coco_decodes_back_to_the_label_maps(repo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    p, _cls, (a, b, _c) = _labelled_project(repo)
    doc = json.loads(repo.export_coco(p.id, tmp_path / "coco").read_text())
    assert [c["name"] for c in doc["categories"]] == ["background", "cat", "dog"]
    assert [c["id"] for c in doc["categories"]] == [1, 2, 3]
    assert {i["id"] for i in doc["images"]} == {a.id, b.id}
    for im in doc["images"]:
        rebuilt = np.full((im["height"], im["width"]), N, np.uint8)
        for ann in (x for x in doc["annotations"] if x["image_id"] == im["id"]):
            m = coco.decode(ann["segmentation"])
            assert isinstance(ann["segmentation"]["counts"], str)
            assert ann["area"] == int(m.sum()) and ann["bbox"] == coco.bbox(m)
            assert not (rebuilt[m] != N).any()  # one class per pixel
            rebuilt[m] = ann["category_id"] - 1
        np.testing.assert_array_equal(rebuilt, repo.label_map(im["id"]))


def test_export_head_writes_the_one_head_format(repo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from core.head import LinearHead, head_to_bytes, load_head

    p = repo.create_project("h")
    repo.add_class(p.id, "cat")
    trained = LinearHead(6, 2)
    with torch.no_grad():
        trained.conv.weight.normal_()
    weights = head_to_bytes(trained)
    head = repo.save_head(p.id, weights, {"backbone": "dinov2_vits14", "backbone_weights": "sha:abc", "long_side": 224,
                                          "feature_version": 2, "train": {"loss": 0.1}}, {"miou": 0.5})
    st, js = repo.export_head(head.id, tmp_path / "heads")
    assert st.read_bytes() == weights and st.parent == js.parent == tmp_path / "heads" / f"head-{head.id}"
    loaded, meta = load_head(st.parent)  # what `app.py predict --head` reads
    assert torch.equal(loaded.conv.weight, trained.conv.weight)
    assert meta.backbone == "dinov2_vits14" and meta.weights_id == "sha:abc" and meta.long_side == 224
    assert meta.classes == ["background", "cat"] and meta.train == {"loss": 0.1}
    assert meta.features["timm_model"] == "vit_small_patch14_dinov2.lvd142m" and meta.features["ignore_index"] == 255
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
        "images": [], "heads": [], "runs": [],
    }
    for im in repo.list_images(project_id):
        seq_of = {h.id: h.seq for h in repo.history(im.id)}
        gt = repo.ground_truth(im.id)
        snap["images"].append({
            "info": (im.name, im.content_hash, im.pixel_hash, im.width, im.height, im.split, im.format,
                     im.file_size, im.created_at, im.labelled_pixels, im.has_ground_truth, im.has_prediction,
                     im.uncertainty, im.stats_updated_at),
            "bytes": repo.image_bytes(im.id),
            "labels": repo.label_map(im.id).tolist(),
            "scribbles": repo.scribble_layer(im.id).tolist(),
            "gt": None if gt is None else gt.tolist(),
            "points": [(cname.get(pt.class_id), pt.class_index, pt.x, pt.y, pt.radius, pt.author, pt.created_at)
                       for pt in repo.points(im.id)],
            "history": [(h.seq, h.kind, h.author, h.created_at, h.source, h.active, h.x, h.y, h.radius,
                         cname.get(h.class_id), sorted(cname[i] for i in h.class_ids), seq_of.get(h.target_id))
                        for h in repo.history(im.id)],
            "state": (repo.edit_state(im.id).version, repo.edit_state(im.id).can_undo, repo.edit_state(im.id).can_redo),
            "counts": repo.labelled_pixel_counts(image_id=im.id),
        })
    for h in repo.list_heads(project_id):
        snap["heads"].append((h.backbone, h.backbone_weights, h.weights_sha256, h.size_bytes, h.meta, h.metrics,
                              h.created_at, [(c.name, c.colour, c.index) for c in h.classes], repo.head_weights(h.id)))
    for r in repo.list_training_runs(project_id):
        snap["runs"].append((r.settings, r.seconds, r.loss, r.metrics, r.pixel_counts, r.labelled_pixels,
                             r.created_at, r.head_id is not None))
    return snap


def test_project_archive_round_trip_into_an_empty_data_folder(repo, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    p, (cat, dog), (a, _b, _c) = _labelled_project(repo)
    repo.reorder_classes(p.id, [dog.id, cat.id, repo.list_classes(p.id)[0].id])
    repo.recolour_class(cat.id, "#abcdef")
    extra = repo.add_class(p.id, "extra")
    repo.add_point(a.id, extra.id, 3, 3, 0)
    repo.undo(a.id)
    repo.delete_class(extra.id, mode="delete_labels")  # history keeps a point of a deleted class
    head = repo.save_head(p.id, _safetensors(), {"backbone": "dinov2_vits14", "backbone_weights": "w1"}, {"miou": 0.4})
    repo.record_training_run(p.id, {"lr": 0.01, "epochs": 3}, 12.5, 0.31, {"miou": 0.4}, {"cat": 9, "dog": 7},
                             head_id=head.id)
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


def test_heads_and_training_runs(repo) -> None:  # type: ignore[no-untyped-def]
    p = repo.create_project("h")
    assert repo.latest_head(p.id) is None
    h1 = repo.save_head(p.id, _safetensors(), {"backbone": "b", "backbone_weights": "w"})
    repo.add_class(p.id, "cat")
    h2 = repo.save_head(p.id, _safetensors(), {"backbone": "b"}, {"miou": 0.1})
    assert repo.latest_head(p.id).id == h2.id and [h.id for h in repo.list_heads(p.id)] == [h1.id, h2.id]
    assert [c.name for c in h1.classes] == ["background"] and [c.name for c in h2.classes] == ["background", "cat"]
    assert repo.head_weights(h1.id) == _safetensors()
    assert repo.set_head_metrics(h1.id, {"miou": 0.2}).metrics == {"miou": 0.2}
    with pytest.raises(ValidationError, match="safetensors"):
        repo.save_head(p.id, b"\x00" * 4, {})
    with pytest.raises(ValidationError, match="JSON"):
        repo.save_head(p.id, _safetensors(), {"x": object()})
    r = repo.record_training_run(p.id, {"lr": 1e-3}, 2.0, 0.5, {"miou": 0.3}, {0: 10, 1: 5}, head_id=h2.id)
    assert r.labelled_pixels == 15 and r.pixel_counts == {"0": 10, "1": 5} and r.head_id == h2.id
    assert [x.id for x in repo.list_training_runs(p.id)] == [r.id]
    with pytest.raises(ValidationError):
        repo.record_training_run(p.id, {}, float("nan"), None, None, None)


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
