"""The history of an image's labels: every edit is a row; the current labels are a replay
(`rasterize.fold`) of the rows. Reading and replaying it, and appending to it (each append refreshes the
image's per-class pixel counts and bumps its label version, in the same transaction).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.labels import label_to_png_bytes, read_label_png

from ..context import Ctx
from ..convert import (
    annotation_info,
    clean_author,
    get_or_404,
    project_classes,
)
from ..errors import ValidationError
from ..models import Annotation, Image
from ..rasterize import (
    Event,
    Folded,
    Labels,
    fold,
    render_layers,
)
from ..records import AnnotationInfo

Rendered = tuple[int, int, Labels]  # (image id, label version, label map) for the label cache


def load_events(s: Session, image_id: int) -> list[Event]:
    rows = s.execute(
        select(
            Annotation.id,
            Annotation.seq,
            Annotation.kind,
            Annotation.class_id,
            Annotation.x,
            Annotation.y,
            Annotation.radius,
            Annotation.target_id,
            Annotation.class_map,
            Annotation.path,
            Annotation.author,
            Annotation.client,
        )
        .where(Annotation.image_id == image_id)
        .order_by(Annotation.seq)
    )
    return [event_of(r) for r in rows]


def path_of(value: Any) -> tuple[tuple[float, float], ...] | None:
    return None if value is None else tuple((float(x), float(y)) for x, y in value)


class Loader:
    """Loads and decodes raster blobs on demand, once each."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.cache: dict[int, np.ndarray] = {}

    def prime(self, annotation_id: int, raster: np.ndarray) -> None:
        """Use an in-memory raster (just written) instead of decoding its blob again."""
        self.cache[annotation_id] = raster

    def __call__(self, ev: Event) -> np.ndarray:
        if ev.id not in self.cache:
            blob = self.s.scalar(select(Annotation.raster).where(Annotation.id == ev.id))
            if blob is None:
                raise ValidationError(f"annotation {ev.id} has no raster; the database is inconsistent")
            self.cache[ev.id] = read_label_png(blob, f"annotation {ev.id}")
        return self.cache[ev.id]


def render(
    s: Session, im: Image, events: list[Event] | None = None, loader: Loader | None = None
) -> tuple[Labels, Labels, Folded]:
    """(label map, scribble layer, folded history) of an image."""
    folded = fold(load_events(s, im.id) if events is None else events)
    labels, scribbles = render_layers((im.height, im.width), folded, loader or Loader(s))
    return labels, scribbles, folded


def current_labels(ctx: Ctx, s: Session, im: Image) -> tuple[Labels, Rendered | None]:
    """The image's label map, from the cache when possible; second item: what to cache (None on a hit)."""
    cached = ctx.cache.get(im.id, im.label_version)
    if cached is not None:
        return cached, None
    labels, _scr, _f = render(s, im)
    return labels, (im.id, im.label_version, labels)


def index_of(s: Session, project_id: int) -> dict[int, int]:
    return {c.id: c.index for c in project_classes(s, project_id)}


# ------------------------------------------------------------------ writing history
def refresh_image(s: Session, im: Image, labels: Labels | None = None) -> Labels:
    """Recompute the image's cached counts from its history (or from `labels`) and bump its label version."""
    if labels is None:
        labels, _scr, _f = render(s, im)
    counts = labels.counts()
    im.label_counts = {str(k): v for k, v in counts.items()}
    im.labelled_pixels = int(sum(counts.values()))
    im.label_version = int(im.label_version or 0) + 1
    s.flush()
    return labels


def append_row(s: Session, im: Image, kind: str, author: str, **fields: Any) -> Annotation:
    im.history_seq = int(im.history_seq or 0) + 1
    row = Annotation(image_id=im.id, seq=im.history_seq, kind=kind, author=clean_author(author), **fields)
    s.add(row)
    s.flush()
    return row


def event_of(row: Any) -> Event:
    """The replay's event of an annotation row (an `Annotation`, or a selected row of its columns)."""
    return Event(
        row.id,
        row.seq,
        row.kind,
        row.class_id,
        row.x,
        row.y,
        row.radius,
        row.target_id,
        dict(row.class_map or {}),
        path_of(row.path),
        (row.author, row.client),
    )


def locked_image(s: Session, image_id: int) -> Image:
    return get_or_404(s, Image, image_id, "image", for_update=True)


def write_cached(ctx: Ctx, fn: Any) -> Any:
    """Run a write returning (result, rendered|None); feed the label cache after the commit."""
    result, rendered = ctx.db.write(fn)
    if rendered is not None:
        ctx.cache.put(*rendered)
    return result


def append_and_refresh(
    s: Session,
    im: Image,
    events: list[Event],
    kind: str,
    author: str,
    raster_array: np.ndarray | None = None,
    loader: Loader | None = None,
    **fields: Any,
) -> tuple[AnnotationInfo, Rendered]:
    if raster_array is not None:
        fields["raster"] = label_to_png_bytes(raster_array)
    row = append_row(s, im, kind, author, **fields)
    loader = loader or Loader(s)
    if raster_array is not None:
        loader.prime(row.id, raster_array)
    labels, _scr, _f = render(s, im, events + [event_of(row)], loader)
    refresh_image(s, im, labels)
    return annotation_info(row, active=kind not in ("undo", "redo")), (im.id, im.label_version, labels)


def on_image(ctx: Ctx, image_id: int, body: Any) -> Any:
    """Run body(session, locked image) in one write transaction, feeding the label cache after the commit."""
    return write_cached(ctx, lambda s: body(s, locked_image(s, image_id)))
