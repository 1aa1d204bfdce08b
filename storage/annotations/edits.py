"""Edit transactions on one image: scribble layers and masks, points, strokes, erasing, clearing,
undo and redo (per author and client), with the checks their input gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from core.labels import IGNORE

from ..context import Ctx
from ..convert import (
    annotation_info,
    check_client,
    check_finite,
    check_raster,
    check_region,
    clean_author,
    clean_text,
    project_classes,
)
from ..errors import NotFoundError, ValidationError
from ..models import Annotation, Image, LabelClass
from ..rasterize import (
    NONE,
    Event,
    fold,
    indices_to_class_map,
    paint_on_top,
    render_scribble,
)
from ..records import AnnotationInfo
from .history import (
    Loader,
    Rendered,
    append_and_refresh,
    append_row,
    event_of,
    index_of,
    load_events,
    locked_image,
    on_image,
    refresh_image,
    render,
    write_cached,
)

MAX_RADIUS = 10_000.0


def raster_class_map(
    s: Session, im: Image, raster: Any, what: str, value_to_class_id: Mapping[int, int] | None = None
) -> tuple[np.ndarray, dict[str, int]]:
    """Validate a raster; return it with {str(value): class_id}. Values are current class indices unless
    `value_to_class_id` maps them (imports: dataset index -> class id)."""
    if value_to_class_id is None:
        classes = project_classes(s, im.project_id)
        arr = check_raster(raster, im.height, im.width, len(classes), what)
        return arr, indices_to_class_map(arr, [c.id for c in classes])
    arr = check_raster(raster, im.height, im.width, IGNORE, what)
    cmap: dict[str, int] = {}
    for v in np.unique(arr).tolist():
        if v == IGNORE:
            continue
        if int(v) not in value_to_class_id:
            raise ValidationError(
                f"{what} uses value {v}, which is not in its class list; add the class or "
                "set those pixels to 255"
            )
        cmap[str(int(v))] = int(value_to_class_id[int(v)])
    return arr, cmap


def save_scribbles(
    ctx: Ctx, image_id: int, raster: Any, author: str, client: str | None = None
) -> AnnotationInfo:
    check_client(client)

    def fn(s: Session) -> tuple[AnnotationInfo, Rendered | None]:
        im = locked_image(s, image_id)
        arr, cmap = raster_class_map(s, im, raster, "scribble raster")
        events = load_events(s, im.id)
        folded = fold(events)
        current = folded.scribble
        loader = Loader(s)
        if current is not None:
            layer = render_scribble((im.height, im.width), folded, loader)
            if np.array_equal(layer.to_indices(index_of(s, im.project_id)), arr):
                row = s.get(Annotation, current.id)
                assert row is not None
                return annotation_info(row, active=True), None
        return append_and_refresh(
            s, im, events, "scribble", author, raster_array=arr, loader=loader, class_map=cmap, client=client
        )

    return write_cached(ctx, fn)


def add_mask(
    ctx: Ctx,
    image_id: int,
    raster: Any,
    author: str,
    source: str,
    value_to_class_id: Mapping[int, int] | None = None,
) -> AnnotationInfo:
    def fn(s: Session) -> tuple[AnnotationInfo, Rendered]:
        im = locked_image(s, image_id)
        arr, cmap = raster_class_map(s, im, raster, "mask raster", value_to_class_id)
        return append_and_refresh(
            s,
            im,
            load_events(s, im.id),
            "mask",
            author,
            raster_array=arr,
            class_map=cmap,
            source=clean_text(source, "source", 200, allow_empty=True),
        )

    return write_cached(ctx, fn)


def check_xy(im: Image, x: Any, y: Any, margin: float = 0.0) -> tuple[float, float]:
    """A position in image pixels (x = column, y = row), at most `margin` pixels outside the image."""
    fx, fy = check_finite(x, "x"), check_finite(y, "y")
    lo = -0.5 - margin
    if not (lo <= fx <= im.width - 0.5 + margin and lo <= fy <= im.height - 0.5 + margin):
        raise ValidationError(
            f"point ({fx}, {fy}) is outside the {im.width}x{im.height} image; x is the column "
            f"(0..{im.width - 1}), y the row (0..{im.height - 1}), in image pixels"
        )
    return fx, fy


def check_radius(radius: Any) -> float:
    r = check_finite(radius, "radius")
    if not 0 <= r <= MAX_RADIUS:
        raise ValidationError(f"radius {r} must be between 0 and {MAX_RADIUS} pixels")
    return r


def class_of(s: Session, im: Image, class_id: Any) -> LabelClass:
    c = s.get(LabelClass, int(class_id))
    if c is None or c.project_id != im.project_id:
        raise NotFoundError(
            f"class {class_id} is not a class of this image's project; pick one of its classes "
            "(GET /classes lists them)"
        )
    return c


# Transaction bodies: each runs inside one write transaction on the locked image row and returns
# (what it did or None for nothing, what to put in the label cache or None). `ops.apply_op` and the
# public functions below share them.
Result = tuple[AnnotationInfo | None, Rendered | None]


def tx_on_top(ctx: Ctx, s: Session, im: Image, kind: str, author: str, **fields: Any) -> Result:
    """Append a point, stroke or erase stroke; update the cached label map in place when that is exact."""
    cached = ctx.cache.get(im.id, im.label_version)
    events = load_events(s, im.id)
    row = append_row(s, im, kind, author, **fields)
    ev = event_of(row)
    labels = paint_on_top(cached, ev, fold(events)) if cached is not None else None
    if labels is None:
        labels = render(s, im, events + [ev])[0]
    refresh_image(s, im, labels)
    return annotation_info(row, active=kind != "erase"), (im.id, im.label_version, labels)


def tx_remove_point(
    ctx: Ctx, s: Session, im: Image, annotation_id: int | None, x: float | None, y: float | None, author: str
) -> Result:
    events = load_events(s, im.id)
    active = fold(events).points
    if annotation_id is not None:
        target = next((e for e in active if e.id == int(annotation_id)), None)
        if target is None:
            raise NotFoundError(
                f"annotation {annotation_id} is not an active point of image {im.id}; reload points(image_id)"
            )
    else:
        if x is None or y is None:
            raise ValidationError("remove_point needs annotation_id or both x and y")
        fx, fy = check_finite(x, "x"), check_finite(y, "y")
        best: tuple[float, int, Event] | None = None
        for e in active:
            d = float(np.hypot((e.x or 0.0) - fx, (e.y or 0.0) - fy))
            if d <= max(float(e.radius or 0.0), 0.5) and (best is None or (d, -e.seq) < best[:2]):
                best = (d, -e.seq, e)
        if best is None:
            return None, None
        target = best[2]
    _info, rendered = append_and_refresh(
        s,
        im,
        events,
        "point_remove",
        author,
        target_id=target.id,
        class_id=target.class_id,
        x=target.x,
        y=target.y,
        radius=target.radius,
    )
    row = s.get(Annotation, target.id)
    assert row is not None
    return annotation_info(row, active=False), rendered


def tx_clear(ctx: Ctx, s: Session, im: Image, author: str) -> Result:
    events = load_events(s, im.id)
    labels, scribbles, _f = render(s, im, events)
    if not (labels.codes != NONE).any() and not (scribbles.codes != NONE).any():
        return None, None
    full = np.ones((im.height, im.width), dtype=np.uint8)
    return append_and_refresh(s, im, events, "erase", author, raster_array=full, source="clear")


def tx_step(ctx: Ctx, s: Session, im: Image, kind: str, author: str, client: str | None = None) -> Result:
    """Undo (kind="undo") the newest applied edit of this author and client, or redo (kind="redo") the one
    they undid last: nobody's undo takes back another's edit (storage.rasterize.fold)."""
    events = load_events(s, im.id)
    folded = fold(events)
    owner = (clean_author(author), client)
    target = folded.undo_target(owner) if kind == "undo" else folded.redo_target(owner)
    if target is None:
        return None, None
    _info, rendered = append_and_refresh(s, im, events, kind, author, target_id=target.id, client=client)
    row = s.get(Annotation, target.id)
    assert row is not None
    return annotation_info(row, active=kind == "redo"), rendered


def tx_point(
    ctx: Ctx, s: Session, im: Image, class_id: Any, x: Any, y: Any, radius: Any, author: str
) -> Result:
    fx, fy = check_xy(im, x, y)
    return tx_on_top(
        ctx,
        s,
        im,
        "point",
        author,
        class_id=class_of(s, im, class_id).id,
        x=fx,
        y=fy,
        radius=check_radius(radius),
    )


def add_point(
    ctx: Ctx, image_id: int, class_id: int, x: float, y: float, radius: float, author: str
) -> AnnotationInfo:
    return on_image(ctx, image_id, lambda s, im: tx_point(ctx, s, im, class_id, x, y, radius, author))


def remove_point(
    ctx: Ctx, image_id: int, annotation_id: int | None, x: float | None, y: float | None, author: str
) -> AnnotationInfo | None:
    return on_image(ctx, image_id, lambda s, im: tx_remove_point(ctx, s, im, annotation_id, x, y, author))


def erase(ctx: Ctx, image_id: int, region: Any, author: str) -> AnnotationInfo:
    def body(s: Session, im: Image) -> Result:
        mask = check_region(region, im.height, im.width)
        return append_and_refresh(
            s, im, load_events(s, im.id), "erase", author, raster_array=mask.astype(np.uint8)
        )

    return on_image(ctx, image_id, body)


def clear_labels(ctx: Ctx, image_id: int, author: str) -> AnnotationInfo | None:
    return on_image(ctx, image_id, lambda s, im: tx_clear(ctx, s, im, author))


def undo(ctx: Ctx, image_id: int, author: str, client: str | None = None) -> AnnotationInfo | None:
    return on_image(ctx, image_id, lambda s, im: tx_step(ctx, s, im, "undo", author, client))


def redo(ctx: Ctx, image_id: int, author: str, client: str | None = None) -> AnnotationInfo | None:
    return on_image(ctx, image_id, lambda s, im: tx_step(ctx, s, im, "redo", author, client))
