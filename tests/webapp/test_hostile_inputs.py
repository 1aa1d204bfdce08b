"""Reliability: every kind of hostile or odd file (tests/hostile.py), through the upload path the page uses
and through the server-folder import, ends as an imported image or a clear refusal in words; the app keeps
working and the database passes its integrity check."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from bench.hostile import HOSTILE, INTERNALS, disk_name
from tests.images import png_bytes, two_colour
from webapp import callbacks_data as cbd
from webapp import callbacks_views as cbv

IMPORTED = {
    "cmyk-jpeg",
    "16-bit-png",
    "16-bit-tiff",
    "float-tiff",
    "palette",
    "palette-transparent",
    "rgba",
    "grey-alpha",
    "greyscale-jpeg",
    "exif-rotated",
    "broken-exif",
    "animated-gif",
    "tiff-stack",
    "1x1",
    "bmp",
    "webp",
    "no-extension-jpeg",
    "traversal-name",
    "very-long-name",
    "unicode-name",
    "control-chars-name",
    "zip-slip",
}
REFUSED = set(HOSTILE) - IMPORTED


def _check_report(report, key: str) -> None:
    messages = [m for _, m in report.failed] + [m for _, m in report.skipped]
    shown = [n for n in (*report.imported, *report.duplicates)] + [
        n for n, _ in (*report.failed, *report.skipped)
    ]
    for text in messages + shown:
        assert not INTERNALS.search(text), (key, text)
    for name in shown:  # names are shown sanitised: no folders, no control characters
        assert "/" not in name and "\\x00" not in name and not any(ord(ch) < 32 for ch in name), (key, name)
    if key in IMPORTED:
        assert report.imported or report.duplicates, (key, report)
    else:
        assert not report.imported and (report.failed or report.skipped), (key, report)
        assert all(m.strip() for m in messages), key


def test_every_hostile_upload_is_imported_or_refused_in_words(ctx, sess):
    assert len(HOSTILE) >= 30
    for key, (name, make) in HOSTILE.items():
        report = ctx.engine.repo.import_uploads(ctx.project_id, [(name, make())])
        _check_report(report, key)
    _still_healthy(ctx, sess)


def test_every_hostile_file_in_a_server_folder_is_imported_or_refused(ctx, sess, tmp_path: Path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    written = {}
    for key, (name, make) in HOSTILE.items():
        path = folder / f"{key}-{disk_name(name)}"
        path.write_bytes(make())
        written[path.name] = key
    out = cbd.import_folder(ctx, sess, str(folder), cbv.SORTS[0])
    assert not INTERNALS.search(out["import_report"])
    imported = {i.name for i in ctx.images()}

    def stored(
        fname: str,
    ) -> set[str]:  # a TIFF is stored as PNG planes: <stem>.png or <stem>_plane000.png, ...
        if not fname.lower().endswith((".tif", ".tiff")):
            return {fname} & imported
        stem = fname.rsplit(".", 1)[0]
        return {n for n in imported if n == f"{stem}.png" or n.startswith(f"{stem}_plane")}

    for fname, key in written.items():
        if key in IMPORTED and not fname.endswith(".zip"):  # a folder import does not open zips
            assert stored(fname), key
        elif key in REFUSED:
            assert not stored(fname), key
    _still_healthy(ctx, sess)


def _still_healthy(ctx, sess) -> None:
    before = len(ctx.images())
    good = ctx.engine.repo.add_image(ctx.project_id, png_bytes(two_colour(seed=77)), "after.png")
    assert len(ctx.images()) == before + 1 and ctx.engine.repo.image_rgb(good.id).shape == (84, 112, 3)
    db = Path(ctx.engine.repo.data_dir) / "probeseg.db"
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    assert np.asarray(ctx.engine.thumbnail(good.id)).size > 0
