"""Images: validated, content-addressed originals on disk plus one row per (project, content)."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import cast

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.imageio import ImageReadError, load_rgb, pixel_hash

from .context import Ctx
from .convert import check_finite, check_split, get_or_404, image_info
from .errors import ConflictError, ValidationError
from .files import sanitize_filename, sha256_bytes
from .models import GroundTruth, Image, Project
from .records import ImageInfo
from .thumbnails import remove_thumbnails

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 512 * 1024 * 1024
_EXT = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "WEBP": ".webp",
    "GIF": ".gif",
}


def _extension(data: bytes) -> tuple[str, str]:
    with PILImage.open(io.BytesIO(data)) as img:
        fmt = (img.format or "").upper()
    ext = _EXT.get(fmt, "." + "".join(ch for ch in fmt.lower() if ch.isalnum())[:5] if fmt else ".img")
    return fmt, ext


def _has_gt(s: Session, image_ids: Iterable[int]) -> set[int]:
    ids = list(image_ids)
    if not ids:
        return set()
    return set(s.scalars(select(GroundTruth.image_id).where(GroundTruth.image_id.in_(ids))))


def info(s: Session, im: Image) -> ImageInfo:
    return image_info(im, bool(_has_gt(s, [im.id])))


def prepare(data: bytes, filename: str) -> dict[str, object]:
    """Validate an upload completely before anything is written. Raises ValidationError."""
    name = sanitize_filename(filename)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValidationError(f"{name}: image data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise ValidationError(f"{name}: the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValidationError(
            f"{name}: {len(data):,} bytes is larger than the {MAX_UPLOAD_BYTES:,}-byte limit"
        )
    try:
        rgb = load_rgb(data, name)
    except ImageReadError as exc:
        raise ValidationError(str(exc)) from None
    except MemoryError:
        raise ValidationError(f"{name}: not enough memory to decode this image; downscale it first") from None
    except Exception:  # a decoder bug must not take the app down (nor show its internals)
        log.exception("decoding %s failed", name)
        raise ValidationError(f"{name}: the image could not be decoded; it may be corrupt") from None
    fmt, ext = _extension(data)
    return {
        "name": name,
        "data": data,
        "hash": sha256_bytes(data),
        "pixel_hash": pixel_hash(rgb),
        "height": int(rgb.shape[0]),
        "width": int(rgb.shape[1]),
        "format": fmt,
        "ext": ext,
    }


def add_image(ctx: Ctx, project_id: int, data: bytes, filename: str, split: str) -> tuple[ImageInfo, bool]:
    """(image, created). Same content already in the project -> (existing image, False)."""
    check_split(split)
    meta = prepare(data, filename)
    relpath = ctx.store.relpath(str(meta["hash"]), str(meta["ext"]))

    def find(s: Session) -> ImageInfo | None:
        get_or_404(s, Project, project_id, "project")
        row = s.scalars(
            select(Image).where(Image.project_id == project_id, Image.content_hash == meta["hash"])
        ).first()
        return None if row is None else info(s, row)

    existing = ctx.db.read(find)
    if existing is not None:
        return existing, False

    def insert(s: Session) -> tuple[ImageInfo, bool]:
        get_or_404(s, Project, project_id, "project", for_update=True)
        row = s.scalars(
            select(Image).where(Image.project_id == project_id, Image.content_hash == meta["hash"])
        ).first()
        if row is not None:
            return info(s, row), False
        row = Image(
            project_id=project_id,
            name=meta["name"],
            content_hash=meta["hash"],
            pixel_hash=meta["pixel_hash"],
            file_path=relpath,
            format=meta["format"],
            file_size=len(cast(bytes, meta["data"])),
            width=meta["width"],
            height=meta["height"],
            split=split,
        )
        s.add(row)
        s.flush()
        return image_info(row), True

    with ctx.store.lock():
        written = ctx.store.put(relpath, meta["data"])  # type: ignore[arg-type]
        try:
            return ctx.db.write(insert)
        except ConflictError:  # the same upload committed concurrently by another host / data folder
            existing = ctx.db.read(find)
            if existing is not None:
                return existing, False
            raise
        except BaseException:
            if written:
                with contextlib.suppress(Exception):
                    remove_unreferenced_files(ctx, [relpath])
            raise


def remove_unreferenced_files(ctx: Ctx, relpaths: Iterable[str]) -> None:
    """Delete stored files no image row references any more. Call with ctx.store.lock() held."""
    paths = sorted(set(relpaths))
    if not paths:
        return
    used = set(
        ctx.db.read(lambda s: list(s.scalars(select(Image.file_path).where(Image.file_path.in_(paths)))))
    )
    for rel in paths:
        if rel not in used:
            ctx.store.remove(rel)
            remove_thumbnails(ctx, PurePosixPath(rel).stem)


def get_image(ctx: Ctx, image_id: int) -> ImageInfo:
    return ctx.db.read(lambda s: info(s, get_or_404(s, Image, image_id, "image")))


def list_images(ctx: Ctx, project_id: int, split: str | None) -> list[ImageInfo]:
    def fn(s: Session) -> list[ImageInfo]:
        get_or_404(s, Project, project_id, "project")
        stmt = select(Image).where(Image.project_id == project_id).order_by(Image.id)
        if split is not None:
            stmt = stmt.where(Image.split == check_split(split))
        rows = list(s.scalars(stmt))
        gt = set(
            s.scalars(
                select(GroundTruth.image_id)
                .join(Image, Image.id == GroundTruth.image_id)
                .where(Image.project_id == project_id)
            )
        )
        return [image_info(r, r.id in gt) for r in rows]

    return ctx.db.read(fn)


def image_path(ctx: Ctx, image_id: int) -> Path:
    rel = ctx.db.read(lambda s: get_or_404(s, Image, image_id, "image").file_path)
    return ctx.store.path(rel)


def image_bytes(ctx: Ctx, image_id: int) -> bytes:
    path = image_path(ctx, image_id)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ValidationError(
            f"the stored file of image {image_id} is missing ({path}); restore the data "
            "folder from a backup or delete and re-import the image"
        ) from None


def image_rgb(ctx: Ctx, image_id: int, max_side: int | None) -> np.ndarray:
    data = image_bytes(ctx, image_id)
    try:
        rgb = load_rgb(data, f"image {image_id}", at_least=max_side)
    except ImageReadError as exc:
        raise ValidationError(str(exc)) from None
    if max_side is not None:
        if int(max_side) < 1:
            raise ValidationError("max_side must be at least 1")
        info = get_image(ctx, image_id)  # the size from the full image's, whatever scale the JPEG decoded at
        h, w = info.height, info.width
        scale = int(max_side) / max(h, w)
        if scale < 1 or rgb.shape[:2] != (h, w):
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            rgb = np.asarray(
                PILImage.fromarray(rgb).resize(size, PILImage.Resampling.BILINEAR, reducing_gap=2.0)
            )
    return rgb


def set_split(ctx: Ctx, image_id: int, split: str) -> ImageInfo:
    check_split(split)

    def fn(s: Session) -> ImageInfo:
        row = get_or_404(s, Image, image_id, "image", for_update=True)
        row.split = split
        s.flush()
        return info(s, row)

    return ctx.db.write(fn)


def set_image_stats(ctx: Ctx, image_id: int, uncertainty: float | None, has_prediction: bool) -> ImageInfo:
    value = None if uncertainty is None else check_finite(uncertainty, "uncertainty")

    def fn(s: Session) -> ImageInfo:
        row = get_or_404(s, Image, image_id, "image", for_update=True)
        row.uncertainty = value
        row.has_prediction = bool(has_prediction)
        row.stats_updated_at = datetime.now(UTC)
        s.flush()
        return info(s, row)

    return ctx.db.write(fn)


def set_image_scores(ctx: Ctx, scores: Mapping[int, float]) -> int:
    """Store many images' need scores in one transaction (has_prediction set); images deleted meanwhile are
    skipped. Returns how many rows were updated."""
    values = {int(i): check_finite(v, "uncertainty") for i, v in scores.items()}
    if not values:
        return 0
    now = datetime.now(UTC)

    def fn(s: Session) -> int:
        rows = s.scalars(select(Image).where(Image.id.in_(values))).all()
        for row in rows:
            row.uncertainty, row.has_prediction, row.stats_updated_at = values[row.id], True, now
        s.flush()
        return len(rows)

    return ctx.db.write(fn)


def delete_image(ctx: Ctx, image_id: int) -> None:
    with ctx.store.lock():

        def fn(s: Session) -> str:
            row = get_or_404(s, Image, image_id, "image", for_update=True)
            rel = row.file_path
            s.execute(delete(Image).where(Image.id == image_id))
            return rel

        rel = ctx.db.write(fn)
        remove_unreferenced_files(ctx, [rel])


def collect_garbage(ctx: Ctx) -> int:
    """Remove stored files that no image row references (left by a process killed between writing the
    file and committing its row) and stale temporary files. Returns how many files were removed."""
    removed = 0
    with ctx.store.lock():
        referenced = set(ctx.db.read(lambda s: list(s.scalars(select(Image.file_path)))))
        for path in sorted(ctx.store.root.rglob("*")):
            if not path.is_file() or path == ctx.store.root / ".lock":
                continue
            rel = path.relative_to(ctx.store.root).as_posix()
            if rel not in referenced:
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
    return removed
