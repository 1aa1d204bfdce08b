"""Row -> record conversion and argument validation shared by the repository modules."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import FeatureConfig
from core.head_meta import HeadMeta
from core.labels import IGNORE

from .errors import NotFoundError, ValidationError
from .models import Annotation, Head, Image, LabelClass, Project, TrainingRun
from .records import SPLITS, AnnotationInfo, ClassInfo, HeadInfo, ImageInfo, ProjectInfo, TrainingRunInfo

MAX_CLASSES = 255  # indices 0..254; 255 means unlabelled


# ------------------------------------------------------------------ lookups
def get_or_404(session: Session, model: type[Any], ident: int, what: str, for_update: bool = False) -> Any:
    stmt = select(model).where(model.id == int(ident))
    if for_update:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).first()
    if row is None:
        raise NotFoundError(
            f"{what} {ident} does not exist (deleted?); reload the list and pick an existing one"
        )
    return row


def project_classes(session: Session, project_id: int) -> list[LabelClass]:
    return list(
        session.scalars(
            select(LabelClass).where(LabelClass.project_id == project_id).order_by(LabelClass.index)
        )
    )


# ------------------------------------------------------------------ records
def project_info(p: Project, image_count: int = 0, class_count: int = 0) -> ProjectInfo:
    return ProjectInfo(
        p.id, p.name, p.description, dict(p.settings or {}), p.created_at, image_count, class_count
    )


def class_info(c: LabelClass) -> ClassInfo:
    return ClassInfo(c.id, c.name, c.colour, c.index, c.project_id)


def image_info(im: Image, has_gt: bool = False) -> ImageInfo:
    return ImageInfo(
        id=im.id,
        project_id=im.project_id,
        name=im.name,
        content_hash=im.content_hash,
        width=im.width,
        height=im.height,
        split=im.split,
        pixel_hash=im.pixel_hash,
        format=im.format,
        file_size=im.file_size,
        created_at=im.created_at,
        labelled_pixels=im.labelled_pixels,
        label_version=im.label_version,
        has_ground_truth=has_gt,
        has_prediction=bool(im.has_prediction),
        uncertainty=im.uncertainty,
        stats_updated_at=im.stats_updated_at,
    )


def annotation_info(a: Annotation, active: bool = False) -> AnnotationInfo:
    class_ids = tuple(sorted({int(v) for v in (a.class_map or {}).values() if v is not None}))
    return AnnotationInfo(
        id=a.id,
        image_id=a.image_id,
        seq=a.seq,
        kind=a.kind,
        author=a.author,
        created_at=a.created_at,
        class_id=a.class_id,
        class_ids=class_ids,
        x=a.x,
        y=a.y,
        radius=a.radius,
        source=a.source,
        target_id=a.target_id,
        active=active,
    )


def head_meta(h: Head) -> HeadMeta:
    """The row's head record; a row the current code cannot read (written by hand, or damaged) still names its
    backbone, so the engine sees it does not fit rather than failing."""
    stored = dict(h.meta or {})
    stored.setdefault("backbone", h.backbone)
    stored.setdefault("backbone_weights", h.backbone_weights)  # (HeadMeta.from_dict: weights_id wins)
    stored.setdefault("classes", [str(c.get("name", "")) for c in (h.classes or [])])
    stored.setdefault("long_side", FeatureConfig.long_side)
    try:
        return HeadMeta.from_dict(stored)
    except (TypeError, ValueError):
        return HeadMeta(
            h.backbone, h.backbone_weights, [], 0, feature_version=0, extra={"unreadable": stored}
        )


def head_info(h: Head) -> HeadInfo:
    classes = tuple(
        ClassInfo(int(c["id"]), str(c["name"]), str(c["colour"]), int(c["index"]), h.project_id)
        for c in (h.classes or [])
    )
    return HeadInfo(
        h.id,
        h.project_id,
        h.weights_sha256,
        h.size_bytes,
        classes,
        head_meta(h),
        dict(h.metrics or {}),
        h.created_at,
    )


def run_info(r: TrainingRun) -> TrainingRunInfo:
    return TrainingRunInfo(
        r.id,
        r.project_id,
        r.head_id,
        dict(r.settings or {}),
        r.seconds,
        r.loss,
        dict(r.metrics or {}),
        {str(k): int(v) for k, v in (r.pixel_counts or {}).items()},
        r.labelled_pixels,
        r.created_at,
    )


# ------------------------------------------------------------------ validation
def clean_text(value: Any, what: str, max_len: int, allow_empty: bool = False) -> str:
    text = unicodedata.normalize("NFC", str(value if value is not None else ""))
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C").strip()
    if not text and not allow_empty:
        raise ValidationError(f"{what} must not be empty; give it a name")
    if len(text) > max_len:
        raise ValidationError(f"{what} is {len(text)} characters long; use at most {max_len}")
    return text


CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def check_client(client: Any) -> str | None:
    """A client id (one per browser tab or script: undo and redo act on its own edits) or None."""
    if client is not None and (not isinstance(client, str) or not CLIENT_ID.match(client)):
        raise ValidationError(
            "client must be a string of 1 to 64 letters, digits or _ . : - (one per browser tab or script: "
            "undo and redo act on its own edits)"
        )
    return client


def clean_author(author: Any) -> str:
    """Author / session tag: control characters dropped, truncated to 100 characters (never an error)."""
    return clean_text(str(author if author is not None else "")[:400], "author", 400, allow_empty=True)[:100]


def parse_colour(colour: str | Sequence[int]) -> str:
    """'#rrggbb' (also 'rrggbb', '#rgb') or an (r, g, b) triple -> '#rrggbb' lowercase."""
    if isinstance(colour, str):
        s = colour.strip().lower().lstrip("#")
        if re.fullmatch(r"[0-9a-f]{3}", s):
            s = "".join(ch * 2 for ch in s)
        if re.fullmatch(r"[0-9a-f]{6}", s):
            return "#" + s
    else:
        try:
            vals = [int(v) for v in colour]
        except (TypeError, ValueError):
            vals = []
        if len(vals) == 3 and all(0 <= v <= 255 for v in vals):
            return "#{:02x}{:02x}{:02x}".format(*vals)
    raise ValidationError(
        f"colour {colour!r} is not valid; use '#rrggbb' (e.g. '#ff8800') or an (r, g, b) triple"
    )


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValidationError(f"split {split!r} is not valid; use one of {', '.join(SPLITS)}")
    return split


def check_raster(raster: Any, height: int, width: int, num_classes: int, what: str) -> np.ndarray:
    """An HxW uint8 raster of class indices 0..K-1 or 255."""
    arr = np.asarray(raster)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValidationError(f"{what} must be a 2-D HxW array of class indices, got shape {arr.shape}")
    if arr.shape != (height, width):
        raise ValidationError(
            f"{what} has shape {arr.shape} but the image is {height}x{width} (HxW); "
            "send the raster at the image's full resolution"
        )
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer)):
        raise ValidationError(f"{what} must hold integer class indices, got dtype {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > IGNORE):
        raise ValidationError(f"{what} has values outside 0..255")
    arr = arr.astype(np.uint8, copy=False)
    bad = np.unique(arr[(arr != IGNORE) & (arr >= num_classes)])
    if bad.size:
        raise ValidationError(
            f"{what} uses class index {int(bad[0])}, but the project has {num_classes} classes "
            f"(0..{num_classes - 1}); use 255 for unlabelled or add the class first"
        )
    return np.ascontiguousarray(arr)


def check_region(region: Any, height: int, width: int) -> np.ndarray:
    arr = np.asarray(region)
    if arr.ndim != 2 or arr.shape != (height, width):
        raise ValidationError(
            f"erase region must be an HxW boolean array of shape {(height, width)}, got {arr.shape}"
        )
    return arr.astype(bool)


def check_finite(value: Any, what: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(f):
        raise ValidationError(f"{what} must be finite, got {value!r}")
    return f
