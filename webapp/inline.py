"""Images that travel inside the event's response as data URLs. Gradio writes every image a callback returns
into its cache folder (the uploads folder here) and serves it from there: a new file per view change, per
gallery page and per suggestion strip, kept until Gradio's hourly clean-up. The page's pictures are small
(a view at display size, thumbnails), so they go inline instead, and the uploads folder holds only uploads
in flight."""

from __future__ import annotations

import base64
import io
import mimetypes
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from gradio.component_meta import ComponentMeta
from gradio.components.gallery import GalleryData, GalleryImage, GalleryVideo
from gradio.data_classes import ImageData
from PIL import Image


def data_url(value: np.ndarray | str | Path, fmt: str = "jpeg") -> str:
    """An image file (sent as it is) or an RGB array (encoded as `fmt`) as a data URL."""
    if isinstance(value, str | Path):
        mime = mimetypes.guess_type(str(value))[0] or "image/jpeg"
        data = Path(value).read_bytes()
    else:
        buf = io.BytesIO()
        Image.fromarray(np.asarray(value, np.uint8)).save(buf, format=fmt.upper(), quality=85)
        mime, data = f"image/{fmt}", buf.getvalue()
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _image_postprocess(self: gr.Image, value: Any) -> ImageData | None:
    fmt = self.format or "jpeg"
    return None if value is None else ImageData(url=data_url(value, fmt), orig_name=f"view.{fmt}")


def _gallery_postprocess(self: gr.Gallery, value: Any) -> GalleryData:
    items: list[GalleryImage | GalleryVideo] = []
    for item in value or []:
        img, caption = item if isinstance(item, tuple | list) else (item, None)
        name = Path(img).name if isinstance(img, str | Path) else "image.jpeg"
        items.append(GalleryImage(image=ImageData(url=data_url(img), orig_name=name), caption=caption))
    return GalleryData(root=items)


def _template(base: type, name: str, postprocess: Any, doc: str) -> Any:
    """A subclass of a Gradio component that only changes `postprocess`. A subclass, not a patched instance:
    Gradio rebuilds a component from its class on every update of its properties. `is_template` makes the
    page draw it with the base component's own front end; `type.__new__` skips ComponentMeta's, which would
    write a .pyi stub beside this file at import."""
    attrs = {"__module__": __name__, "__qualname__": name, "__doc__": doc, "is_template": True}
    return type.__new__(ComponentMeta, name, (base,), attrs | {"postprocess": postprocess})


InlineImage = _template(gr.Image, "InlineImage", _image_postprocess, "gr.Image whose values are data URLs.")
InlineGallery = _template(
    gr.Gallery,
    "InlineGallery",
    _gallery_postprocess,
    "gr.Gallery whose images (with captions) are data URLs.",
)
