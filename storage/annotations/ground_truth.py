"""Ground-truth label maps (evaluation only, never trained on), one per image at most."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.labels import label_to_png_bytes, read_label_png

from ..context import Ctx
from ..convert import (
    clean_text,
    get_or_404,
)
from ..models import GroundTruth, Image
from ..rasterize import (
    raster_to_indices,
)
from .edits import raster_class_map
from .history import (
    index_of,
    locked_image,
)


def set_ground_truth(
    ctx: Ctx, image_id: int, labels: Any, source: str, value_to_class_id: Mapping[int, int] | None = None
) -> None:
    def fn(s: Session) -> None:
        im = locked_image(s, image_id)
        existing = s.scalars(select(GroundTruth).where(GroundTruth.image_id == im.id)).first()
        if labels is None:
            if existing is not None:
                s.delete(existing)
            return
        arr, cmap = raster_class_map(s, im, labels, "ground-truth mask", value_to_class_id)
        src = clean_text(source, "source", 200, allow_empty=True)
        if existing is None:
            s.add(GroundTruth(image_id=im.id, raster=label_to_png_bytes(arr), class_map=cmap, source=src))
        else:
            existing.raster, existing.class_map, existing.source = label_to_png_bytes(arr), cmap, src
        s.flush()

    ctx.db.write(fn)


def ground_truth(ctx: Ctx, image_id: int) -> np.ndarray | None:
    def fn(s: Session) -> np.ndarray | None:
        im = get_or_404(s, Image, image_id, "image")
        row = s.execute(
            select(GroundTruth.raster, GroundTruth.class_map).where(GroundTruth.image_id == im.id)
        ).first()
        if row is None:
            return None
        raster = read_label_png(row.raster, f"ground truth of image {im.id}")
        return raster_to_indices(raster, row.class_map or {}, index_of(s, im.project_id))

    return ctx.db.read(fn)
