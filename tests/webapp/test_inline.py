"""The page's pictures travel inside the response: nothing is written to the uploads folder per render."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from webapp.inline import InlineGallery, InlineImage


def _decoded(url: str) -> Image.Image:
    head, data = url.split(",", 1)
    assert head.startswith("data:image/") and head.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_views_and_galleries_are_data_urls_and_write_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    view = InlineImage(format="jpeg")
    rgb = np.zeros((30, 40, 3), np.uint8)
    out = view.postprocess(rgb)
    assert out.path is None and _decoded(out.url).size == (40, 30)
    assert view.get_block_name() == "image"  # drawn by gr.Image's own front end
    thumb = tmp_path / "t.jpg"
    Image.fromarray(rgb).save(thumb)
    gallery = InlineGallery()
    data = gallery.postprocess([(str(thumb), "a caption"), (rgb, "an array")]).root
    assert [item.caption for item in data] == ["a caption", "an array"]
    assert all(item.image.path is None and item.image.url.startswith("data:image/") for item in data)
    assert gallery.get_block_name() == "gallery"
    assert not (tmp_path / "uploads").exists() or not any((tmp_path / "uploads").rglob("*"))


def test_the_components_are_rebuilt_from_their_class_and_leave_no_stub_behind():
    """Gradio rebuilds a component from its class on every property update (so a patched instance would
    lose its postprocess), and would write a .pyi stub beside a component subclass at import."""
    from pathlib import Path

    import webapp.inline as inline

    rebuilt = InlineImage(**InlineImage(format="jpeg").constructor_args)
    assert rebuilt.postprocess(np.zeros((2, 2, 3), np.uint8)).url.startswith("data:image/jpeg")
    assert not Path(inline.__file__).with_suffix(".pyi").exists()
