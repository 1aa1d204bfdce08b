"""Imports: folders, zips (zip-slip, non-images, limits), uploads and VOC-layout datasets."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.labels import VOC_CLASSES, write_label_png
from storage import ValidationError

from .conftest import rgb_png


def _jpg(h: int, w: int, seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)  # ZipInfo keeps hostile names as they are
    return buf.getvalue()


def test_import_folder(repo, project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(rgb_png(4, 4, 1))
    (folder / "b.jpg").write_bytes(_jpg(5, 6, 2))
    (folder / "z-copy.png").write_bytes(rgb_png(4, 4, 1))
    (folder / "broken.jpg").write_bytes(b"not really a jpeg")
    (folder / "notes.txt").write_text("hello")
    (folder / "photo-without-extension").write_bytes(_jpg(7, 5, 4))  # recognised by content
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / "sub" / "c.png").write_bytes(rgb_png(3, 3, 3))
    report = repo.import_folder(project.id, folder)
    assert report.imported == ("a.png", "b.jpg", "photo-without-extension") and report.duplicates == (
        "z-copy.png",
    )
    assert [f[0] for f in report.failed] == ["broken.jpg"] and "not an image in a format" in report.failed[0][
        1
    ]
    assert [s[0] for s in report.skipped] == ["notes.txt"]
    assert len(report.image_ids) == 4 and report.image_ids[0] == report.image_ids[-1]
    assert "3 imported" in report.summary() and not report.ok
    deep = repo.import_folder(project.id, folder, recursive=True)
    assert deep.imported == ("c.png",)
    with pytest.raises(ValidationError, match="not a folder"):
        repo.import_folder(project.id, tmp_path / "missing")


def test_import_zip_is_zip_slip_safe_and_reports(repo, project, data_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = _zip(
        {
            "a.png": rgb_png(4, 4, 1),
            "nested/dir/b.jpg": _jpg(5, 5, 2),
            "../../../../evil.png": rgb_png(4, 4, 3),
            "/etc/absolute.png": rgb_png(4, 4, 4),
            "..\\..\\windows.png": rgb_png(4, 4, 5),
            "__MACOSX/._a.png": b"junk",
            "readme.txt": b"hi",
            "broken.png": b"\x89PNG garbage",
            "dup.png": rgb_png(4, 4, 1),
        }
    )
    report = repo.import_zip(project.id, data)
    assert report.imported == ("a.png", "b.jpg", "evil.png", "absolute.png", "windows.png")
    assert report.duplicates == ("dup.png",)
    assert [f[0] for f in report.failed] == ["broken.png"]
    assert {s[0] for s in report.skipped} == {"_a.png", "readme.txt"}
    names = {i.name for i in repo.list_images(project.id)}
    assert names == {"a.png", "b.jpg", "evil.png", "absolute.png", "windows.png"}
    # nothing was written outside the data folder's image store
    written = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert all(data_dir in p.parents for p in written)
    assert not list(tmp_path.parent.glob("evil.png")) and not Path("/etc/absolute.png").exists()
    # a zip given as a path works the same
    zpath = tmp_path / "more.zip"
    zpath.write_bytes(_zip({"z.png": rgb_png(2, 2, 9)}))
    assert repo.import_zip(project.id, zpath).imported == ("z.png",)


def test_zip_limits(repo, project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import storage.imports as imports

    monkeypatch.setattr(imports, "MAX_ZIP_MEMBER_BYTES", 100)
    report = repo.import_zip(project.id, _zip({"big.png": rgb_png(32, 32), "bad.zip.png": b""}))
    assert report.failed[0][0] == "big.png" and "limit" in report.failed[0][1]
    monkeypatch.setattr(imports, "MAX_ZIP_TOTAL_BYTES", 10)
    report = repo.import_zip(project.id, _zip({"a.png": rgb_png(8, 8)}))
    assert report.imported == () and "unpack to" in report.failed[0][1]
    monkeypatch.setattr(imports, "MAX_ZIP_MEMBERS", 1)
    assert "members" in repo.import_zip(project.id, _zip({"a.png": b"1", "b.png": b"2"})).failed[0][1]
    assert "not a readable zip" in repo.import_zip(project.id, b"PK\x03\x04 nonsense").failed[0][1]
    assert repo.list_images(project.id) == []


def test_import_uploads(repo, project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "up.png"
    p.write_bytes(rgb_png(3, 3, 1))
    z = tmp_path / "batch.zip"
    z.write_bytes(_zip({"in-zip.png": rgb_png(3, 3, 2)}))
    report = repo.import_uploads(
        project.id, [p, z, ("../mem.png", rgb_png(3, 3, 3)), ("doc.pdf", b"%PDF"), tmp_path / "missing.png"]
    )
    assert report.imported == ("up.png", "in-zip.png", "mem.png")
    assert report.skipped[0][0] == "doc.pdf" and report.failed[0][0] == "missing.png"


def _voc(root: Path, classes_txt: str | None = "background\ncat #ff0000\ndog\n") -> None:
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "labels").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for i, stem in enumerate(["a", "b", "c"]):
        (root / "JPEGImages" / f"{stem}.jpg").write_bytes(_jpg(6, 8, i))
    gt = np.zeros((6, 8), np.uint8)
    gt[:3] = 1
    gt[5] = 255  # VOC "void" border
    write_label_png(root / "SegmentationClass" / "a.png", gt)
    gt_b = np.full((6, 8), 2, np.uint8)
    write_label_png(root / "SegmentationClass" / "b.png", gt_b)
    write_label_png(root / "SegmentationClass" / "c.png", np.zeros((3, 3), np.uint8))  # wrong size
    sparse = np.full((6, 8), 255, np.uint8)
    sparse[0, :2] = 1
    sparse[4, 4] = 2
    write_label_png(root / "labels" / "a.png", sparse)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nb\n")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("c\n")
    if classes_txt is not None:
        (root / "classes.txt").write_text(classes_txt)


def test_import_voc(repo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "voc"
    _voc(root)
    p = repo.create_project("voc")
    dog = repo.add_class(p.id, "dog")  # already there, at index 1: matched by name, not by index
    report = repo.import_voc(p.id, root)
    assert report.imported == ("a.jpg", "b.jpg", "c.jpg") and report.classes_added == ("cat",)
    assert report.ground_truths == 2 and report.annotations == 1
    assert [f[0] for f in report.failed] == [
        "c.png (ground truth)"
    ] and "match the image size" in report.failed[0][1]
    classes = {c.name: c for c in repo.list_classes(p.id)}
    assert classes["cat"].index == 2 and classes["cat"].colour == "#ff0000" and classes["dog"].id == dog.id
    imgs = {i.name: i for i in repo.list_images(p.id)}
    assert [imgs[n].split for n in ("a.jpg", "b.jpg", "c.jpg")] == ["train", "train", "val"]
    gt = repo.ground_truth(imgs["a.jpg"].id)
    assert gt is not None and (gt[:3] == 2).all() and (gt[3:5] == 0).all() and (gt[5] == 255).all()
    assert (repo.ground_truth(imgs["b.jpg"].id) == 1).all()
    lm = repo.label_map(imgs["a.jpg"].id)
    assert lm[0, 0] == lm[0, 1] == 2 and lm[4, 4] == 1 and (lm != 255).sum() == 3
    [mask] = repo.history(imgs["a.jpg"].id)
    assert mask.kind == "mask" and mask.author == "import" and mask.source == "voc:a.png"
    again = repo.import_voc(p.id, root)  # re-import: duplicates, labels not stacked twice
    assert again.duplicates == ("a.jpg", "b.jpg", "c.jpg") and again.annotations == 0
    assert len(repo.history(imgs["a.jpg"].id)) == 1


def test_import_voc_defaults_to_the_21_voc_classes(repo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "voc"
    _voc(root, classes_txt=None)
    p = repo.create_project("voc")
    report = repo.import_voc(p.id, root, labels_dir="labels")
    assert [c.name for c in repo.list_classes(p.id)] == list(VOC_CLASSES)
    assert len(report.classes_added) == 20
    with pytest.raises(ValidationError, match="JPEGImages"):
        repo.import_voc(p.id, tmp_path)


def test_a_zip_without_images_is_a_failure_with_its_reason(repo, project) -> None:  # type: ignore[no-untyped-def]
    def zipped(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        return buf.getvalue()

    report = repo.import_uploads(
        project.id,
        [
            ("empty.zip", zipped({})),
            ("notes.zip", zipped({"a.txt": b"hello", "b.csv": b"1,2"})),
            ("ok.png", rgb_png(8, 8)),
        ],
    )
    assert len(report.imported) == 1  # the mixed upload's image is in, and each zip says why it is not
    assert dict(report.failed) == {
        "empty.zip": "the zip is empty",
        "notes.zip": "no images in this zip (2 other file(s) skipped)",
    }
