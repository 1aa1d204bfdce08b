"""Thumbnails on disk: one small JPEG per image content and size under `<data>/thumbnails/<side>/`, made
once and then only read, so a gallery of hundreds of images never decodes the originals again (a 12 MP
JPEG takes ~100 ms to decode, its thumbnail well under 1 ms). JPEG originals are decoded at a reduced
scale (PIL's draft mode) when the thumbnail is made. Keyed by the content hash, shared by every project of
the data folder like the originals; removed with them."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageOps

from core.atomic import atomic_write
from core.imageio import ImageReadError, load_rgb

from .context import Ctx
from .convert import get_or_404
from .errors import ValidationError
from .models import Image

FOLDER = "thumbnails"
ORIENTATION = 0x0112  # the EXIF tag
SCREEN = 1536  # the canvas's first picture of a big image (decoded in tens of ms; the original follows)
SIDES = (32, 64, 128, 160, 200, 256, 320, SCREEN)  # the sizes the app asks for; any other is refused


def thumbnail_path(ctx: Ctx, image_id: int, side: int) -> Path:
    """The image's thumbnail (longer side at most `side`, EXIF orientation applied), made on first use."""
    if side not in SIDES:
        raise ValidationError(f"thumbnail side must be one of {', '.join(map(str, SIDES))}")
    content_hash, rel = ctx.db.read(
        lambda s: (lambda row: (row.content_hash, row.file_path))(get_or_404(s, Image, image_id, "image"))
    )
    path = ctx.data_dir / FOLDER / str(side) / content_hash[:2] / f"{content_hash}.jpg"
    if not path.is_file():
        atomic_write(path, _make(ctx.store.read(rel), side, f"image {image_id}"))
    return path


def _make(data: bytes, side: int, name: str) -> bytes:
    img: PILImage.Image
    try:
        with PILImage.open(io.BytesIO(data)) as opened:
            if opened.format == "JPEG":
                opened.draft("RGB", (side, side))  # decode at 1/2, 1/4 or 1/8 scale: far less work
            img = ImageOps.exif_transpose(opened).convert("RGB")
    except Exception:  # what PIL cannot open the project's own loader may (TIFF stacks, 16-bit, ...)
        try:
            img = PILImage.fromarray(load_rgb(data, name))
        except ImageReadError as exc:
            raise ValidationError(str(exc)) from None
    img.thumbnail((side, side), PILImage.Resampling.BILINEAR, reducing_gap=2.0)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def display_file(ctx: Ctx, image_id: int) -> tuple[Path, str]:
    """(file, media type) a browser can show as the image upright: the stored original itself when it is a
    JPEG or PNG without an EXIF rotation (no decode, no re-encode: a 12 MP photo is sent as it is), else a
    JPEG made once from it and kept beside the thumbnails."""
    content_hash, rel, fmt = ctx.db.read(
        lambda s: (lambda row: (row.content_hash, row.file_path, row.format))(
            get_or_404(s, Image, image_id, "image")
        )
    )
    original = ctx.store.path(rel)
    if fmt in ("JPEG", "PNG"):
        with PILImage.open(original) as img:
            if img.getexif().get(ORIENTATION, 1) == 1:
                return original, "image/jpeg" if fmt == "JPEG" else "image/png"
    path = ctx.data_dir / FOLDER / "full" / content_hash[:2] / f"{content_hash}.jpg"
    if not path.is_file():
        rgb = load_rgb(ctx.store.read(rel), f"image {image_id}")
        buf = io.BytesIO()
        PILImage.fromarray(rgb).save(buf, format="JPEG", quality=90)
        atomic_write(path, buf.getvalue())
    return path, "image/jpeg"


def remove_thumbnails(ctx: Ctx, content_hash: str) -> None:
    """Drop an image content's thumbnails and display copy (its original is gone)."""
    for side in (*SIDES, "full"):
        (ctx.data_dir / FOLDER / str(side) / content_hash[:2] / f"{content_hash}.jpg").unlink(missing_ok=True)
