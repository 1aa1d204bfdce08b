"""Images: content addressing, sanitised names, and every kind of bad or odd input file."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.imageio import load_rgb
from storage import NotFoundError, ValidationError, sanitize_filename

from .conftest import png_bytes, rgb_png


def _files(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "images").rglob("*") if p.is_file() and p.name != ".lock")


def _jpeg(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def test_content_addressed_and_deduplicated(repo, data_dir, project) -> None:  # type: ignore[no-untyped-def]
    data = rgb_png(6, 8)
    a = repo.add_image(project.id, data, "a.png")
    digest = hashlib.sha256(data).hexdigest()
    assert a.content_hash == digest and (a.width, a.height, a.format) == (8, 6, "PNG")
    assert _files(data_dir) == [data_dir / "images" / digest[:2] / f"{digest}.png"]
    assert repo.image_bytes(a.id) == data and repo.image_path(a.id).read_bytes() == data
    again = repo.add_image(project.id, data, "copy-with-other-name.png")
    assert again.id == a.id and len(repo.list_images(project.id)) == 1
    other = repo.create_project("other")
    b = repo.add_image(other.id, data, "b.png")  # same content in another project: its own row, one file
    assert b.id != a.id and len(_files(data_dir)) == 1
    repo.delete_image(a.id)
    assert len(_files(data_dir)) == 1  # still used by the other project
    repo.delete_image(b.id)
    assert _files(data_dir) == []
    with pytest.raises(NotFoundError):
        repo.get_image(a.id)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("../../etc/passwd.png", "passwd.png"),
        ("C:\\Users\\me\\..\\photo.jpg", "photo.jpg"),
        ("/abs/path/x.png", "x.png"),
        ("..", "image"),
        ("", "image"),
        ("evil\x00na\x1bme\n.png", "evilname.png"),
        (".hidden.png", "hidden.png"),
        ("a<b>c:d|e?.png", "a_b_c_d_e_.png"),
    ],
)
def test_sanitize_filename(raw: str, expected: str) -> None:
    assert sanitize_filename(raw) == expected


def test_sanitize_filename_caps_length() -> None:
    name = sanitize_filename("x" * 1000 + ".png")
    assert name.endswith(".png") and len(name.encode()) <= 200


def test_upload_names_are_sanitised(repo, project) -> None:  # type: ignore[no-untyped-def]
    im = repo.add_image(project.id, rgb_png(3, 3), "../../../tmp/evil\x07.png")
    assert im.name == "evil.png"


def test_image_rgb_and_downsampling(repo, project) -> None:  # type: ignore[no-untyped-def]
    data = rgb_png(30, 50, seed=4)
    im = repo.add_image(project.id, data, "a.png")
    np.testing.assert_array_equal(repo.image_rgb(im.id), load_rgb(data))
    small = repo.image_rgb(im.id, max_side=10)
    assert small.shape == (6, 10, 3) and small.dtype == np.uint8
    assert repo.image_rgb(im.id, max_side=100).shape == (30, 50, 3)


def test_split_stats_and_delete_cascades(repo, project, image) -> None:  # type: ignore[no-untyped-def]
    assert repo.set_split(image.id, "val").split == "val"
    with pytest.raises(ValidationError, match="train, val, unassigned"):
        repo.set_split(image.id, "test")
    info = repo.set_image_stats(image.id, uncertainty=0.25, has_prediction=True)
    assert (info.uncertainty, info.has_prediction) == (0.25, True) and info.stats_updated_at is not None
    assert repo.set_image_stats(image.id, None, False).uncertainty is None
    with pytest.raises(ValidationError):
        repo.set_image_stats(image.id, float("inf"), True)
    cat = repo.list_classes(project.id)[1]
    repo.add_point(image.id, cat.id, 1, 1, 1)
    repo.set_ground_truth(image.id, np.zeros((image.height, image.width), np.uint8))
    repo.delete_image(image.id)
    assert repo.list_images(project.id) == [] and repo.labelled_pixel_counts(project_id=project.id) == {}


# ------------------------------------------------------------------ odd but valid images
def _cmyk_jpeg() -> bytes:
    return _jpeg(Image.new("CMYK", (20, 10), (0, 255, 255, 0)))  # red in CMYK


def _png16() -> bytes:
    arr = np.tile(np.linspace(0, 65535, 16, dtype=np.uint16), (8, 1))
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _palette_png() -> bytes:
    img = Image.new("P", (4, 2))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putdata([0, 1, 0, 1, 1, 0, 1, 0])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _rgba_png() -> bytes:
    arr = np.zeros((2, 2, 4), np.uint8)
    arr[0, 0] = (255, 0, 0, 255)  # opaque red
    arr[0, 1] = (0, 0, 255, 0)  # fully transparent -> white
    return png_bytes(arr)


def test_cmyk_jpeg_is_normalised_to_rgb(repo, project) -> None:  # type: ignore[no-untyped-def]
    im = repo.add_image(project.id, _cmyk_jpeg(), "cmyk.jpg")
    rgb = repo.image_rgb(im.id)
    assert rgb.shape == (10, 20, 3) and (im.width, im.height) == (20, 10)
    assert rgb[5, 10, 0] > 200 and rgb[5, 10, 1] < 60 and rgb[5, 10, 2] < 60


def test_16bit_png(repo, project) -> None:  # type: ignore[no-untyped-def]
    im = repo.add_image(project.id, _png16(), "deep.png")
    rgb = repo.image_rgb(im.id)
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 16, 3)
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255 and (np.diff(rgb[0, :, 0].astype(int)) >= 0).all()


def test_palette_and_rgba_png(repo, project) -> None:  # type: ignore[no-untyped-def]
    pal = repo.image_rgb(repo.add_image(project.id, _palette_png(), "pal.png").id)
    assert pal[0, 0].tolist() == [255, 0, 0] and pal[0, 1].tolist() == [0, 0, 255]
    rgba = repo.image_rgb(repo.add_image(project.id, _rgba_png(), "alpha.png").id)
    assert rgba[0, 0].tolist() == [255, 0, 0] and rgba[0, 1].tolist() == [255, 255, 255]


def test_exif_rotated_photo(repo, project) -> None:  # type: ignore[no-untyped-def]
    stored = np.zeros((30, 40, 3), np.uint8)  # H=30, W=40 as stored in the file
    stored[:15] = (255, 0, 0)  # top half red
    stored[15:] = (0, 0, 255)  # bottom half blue
    img = Image.fromarray(stored)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    im = repo.add_image(project.id, _jpeg(img, exif=exif.tobytes(), quality=95), "rotated.jpg")
    assert (im.width, im.height) == (30, 40)  # width and height swapped
    rgb = repo.image_rgb(im.id).astype(int)
    assert rgb.shape == (40, 30, 3)
    # clockwise rotation: the stored top (red) is now on the right, the stored bottom (blue) on the left
    right, left = rgb[5:35, 20:28].mean(axis=(0, 1)), rgb[5:35, 2:10].mean(axis=(0, 1))
    assert right[0] > 200 and right[2] < 60
    assert left[2] > 200 and left[0] < 60
    # labels use the displayed orientation
    cat = repo.list_classes(project.id)[1]
    repo.add_point(im.id, cat.id, x=29, y=39, radius=0)
    assert repo.label_map(im.id).shape == (40, 30) and repo.label_map(im.id)[39, 29] == 1


@pytest.mark.parametrize("h, w", [(1, 1), (13, 13)])
def test_tiny_images(repo, project, h, w) -> None:  # type: ignore[no-untyped-def]
    im = repo.add_image(project.id, rgb_png(h, w, seed=h), f"tiny{h}.png")
    assert (im.height, im.width) == (h, w) and repo.image_rgb(im.id).shape == (h, w, 3)
    cat = repo.list_classes(project.id)[1]
    repo.add_point(
        im.id, cat.id, 0, 0, 2
    )  # a disk clipped at the corner: (0,0) (0,1) (0,2) (1,0) (1,1) (2,0)
    assert (repo.label_map(im.id) == 1).sum() == (1 if h == 1 else 6)


def test_60_megapixel_jpeg_is_kept_and_downsampled_for_features(repo, db_url, project) -> None:  # type: ignore[no-untyped-def]
    if db_url is not None:
        pytest.skip("image decoding does not depend on the database; run once, on SQLite")
    w, h = 10_000, 6_000
    img = Image.new("RGB", (w, h), (30, 120, 200))
    img.paste((250, 250, 0), (0, 0, 100, 100))
    data = _jpeg(img, quality=70)
    im = repo.add_image(project.id, data, "huge.jpg")
    assert (im.width, im.height) == (w, h) and im.width * im.height >= 60_000_000
    assert repo.image_bytes(im.id) == data  # the original is kept byte for byte
    small = repo.image_rgb(im.id, max_side=1000)
    assert small.shape == (600, 1000, 3)
    assert small[2, 2].tolist()[2] < 80 and abs(int(small[300, 500, 2]) - 200) < 10


# ------------------------------------------------------------------ bad input: clear error, nothing left behind
def _bomb_png() -> bytes:
    """A tiny PNG whose header claims 100000 x 100000 pixels (10 gigapixels)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _truncated_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    data = _jpeg(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    return data[: len(data) // 2]


def _corrupt_png() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8))


BAD = [
    ("truncated.jpg", _truncated_jpeg, "truncated"),
    ("corrupt.png", _corrupt_png, "corrupt"),
    (
        "notes.jpg",
        lambda: b"this is a text file, not a photo\n" * 10,
        "not an image in a format probeseg reads",
    ),
    ("bomb.png", _bomb_png, "more than 120,000,000 pixels, too many to decode safely"),
    ("empty.png", lambda: b"", "empty"),
]


@pytest.mark.parametrize("name, make, message", BAD, ids=[b[0] for b in BAD])
def test_bad_files_fail_clearly_and_leave_nothing(repo, data_dir, project, name, make, message) -> None:  # type: ignore[no-untyped-def]
    before_files, before_rows = _files(data_dir), repo.list_images(project.id)
    with pytest.raises(ValidationError, match=message) as exc:
        repo.add_image(project.id, make(), name)
    assert name in str(exc.value) and str(exc.value).count(name) == 1
    assert "<" not in str(exc.value) and "0x" not in str(exc.value)  # no object reprs
    assert _files(data_dir) == before_files and repo.list_images(project.id) == before_rows
    assert not [p for p in (data_dir / "images").rglob(".tmp-*")]


def test_failed_insert_removes_the_new_file(repo, data_dir, project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import storage.images

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("simulated database failure")

    monkeypatch.setattr(storage.images.Image, "__init__", boom)
    with pytest.raises(RuntimeError):
        repo.add_image(project.id, rgb_png(4, 4), "a.png")
    assert _files(data_dir) == []


def test_image_scores_are_stored_in_one_write(repo, project, image) -> None:  # type: ignore[no-untyped-def]
    other = repo.add_image(project.id, rgb_png(20, 30, seed=3), "other.png")
    assert repo.set_image_scores({}) == 0
    assert repo.set_image_scores({image.id: 0.5, other.id: 1.5, 9999: 2.0}) == 2  # a deleted id is skipped
    got = {i.id: (i.uncertainty, i.has_prediction) for i in repo.list_images(project.id)}
    assert got == {image.id: (0.5, True), other.id: (1.5, True)}
    with pytest.raises(ValidationError):
        repo.set_image_scores({image.id: float("nan")})
    assert repo.get_image(image.id).uncertainty == 0.5  # nothing written by the refused call


def test_thumbnails_are_made_once_upright_and_go_with_the_image(repo, project, data_dir) -> None:  # type: ignore[no-untyped-def]
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 400x300 landscape, displayed 300x400 portrait
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    im = repo.add_image(project.id, _jpeg(img, exif=exif.tobytes()), "rotated.jpg")
    path = repo.thumbnail_path(im.id, 160)
    assert path.is_relative_to(repo.thumbnail_folder) and path.suffix == ".jpg"
    assert Image.open(path).size == (120, 160)  # upright, longer side 160
    reads = []
    original = repo._ctx.store.read
    repo._ctx.store.read = lambda rel: reads.append(rel) or original(rel)
    try:
        assert repo.thumbnail_path(im.id, 160) == path and reads == []  # kept on disk: no decode
        repo.thumbnail_path(im.id, 64)
        assert len(reads) == 1
    finally:
        repo._ctx.store.read = original
    with pytest.raises(ValidationError, match="thumbnail side"):
        repo.thumbnail_path(im.id, 161)
    shown, media = repo.display_file(im.id)  # rotated: an upright JPEG copy, made once
    assert media == "image/jpeg" and Image.open(shown).size == (300, 400) and shown.is_relative_to(data_dir)
    plain = repo.add_image(project.id, rgb_png(20, 30, seed=4), "plain.png")
    assert repo.display_file(plain.id) == (repo.image_path(plain.id), "image/png")  # sent as stored
    repo.delete_image(im.id)
    assert not path.exists() and not shown.exists()
