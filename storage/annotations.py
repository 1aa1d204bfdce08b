"""Versioned annotations of one image: every edit appends a row; undo/redo append rows too.

The current labels are a replay (`rasterize.fold`) of the history. Each write also refreshes the image's
cached per-class pixel counts and bumps its label version, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.labels import IGNORE, label_to_png_bytes, read_label_png

from .context import Ctx
from .convert import (
    annotation_info,
    check_client,
    check_finite,
    check_raster,
    check_region,
    clean_author,
    clean_text,
    get_or_404,
    project_classes,
)
from .errors import NotFoundError, ValidationError
from .models import Annotation, GroundTruth, Image, LabelClass
from .rasterize import (
    NONE,
    Event,
    Folded,
    Labels,
    centre_pixel,
    fold,
    indices_to_class_map,
    paint_on_top,
    raster_to_indices,
    region_of,
    render_layers,
    render_scribble,
)
from .records import AnnotationInfo, EditState, PointInfo

MAX_RADIUS = 10_000.0
Rendered = tuple[int, int, Labels]  # (image id, label version, label map) for the label cache


# ------------------------------------------------------------------ reading history
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
    return [
        Event(
            r.id,
            r.seq,
            r.kind,
            r.class_id,
            r.x,
            r.y,
            r.radius,
            r.target_id,
            dict(r.class_map or {}),
            _path(r.path),
            (r.author, r.client),
        )
        for r in rows
    ]


def _path(value: Any) -> tuple[tuple[float, float], ...] | None:
    return None if value is None else tuple((float(x), float(y)) for x, y in value)


class _Loader:
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
    s: Session, im: Image, events: list[Event] | None = None, loader: _Loader | None = None
) -> tuple[Labels, Labels, Folded]:
    """(label map, scribble layer, folded history) of an image."""
    folded = fold(load_events(s, im.id) if events is None else events)
    labels, scribbles = render_layers((im.height, im.width), folded, loader or _Loader(s))
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


def _event(row: Annotation) -> Event:
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
        _path(row.path),
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


def _append_and_refresh(
    s: Session,
    im: Image,
    events: list[Event],
    kind: str,
    author: str,
    raster_array: np.ndarray | None = None,
    loader: _Loader | None = None,
    **fields: Any,
) -> tuple[AnnotationInfo, Rendered]:
    if raster_array is not None:
        fields["raster"] = label_to_png_bytes(raster_array)
    row = append_row(s, im, kind, author, **fields)
    loader = loader or _Loader(s)
    if raster_array is not None:
        loader.prime(row.id, raster_array)
    labels, _scr, _f = render(s, im, events + [_event(row)], loader)
    refresh_image(s, im, labels)
    return annotation_info(row, active=kind not in ("undo", "redo")), (im.id, im.label_version, labels)


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
        loader = _Loader(s)
        if current is not None:
            layer = render_scribble((im.height, im.width), folded, loader)
            if np.array_equal(layer.to_indices(index_of(s, im.project_id)), arr):
                row = s.get(Annotation, current.id)
                assert row is not None
                return annotation_info(row, active=True), None
        return _append_and_refresh(
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
        return _append_and_refresh(
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
    ev = _event(row)
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
    _info, rendered = _append_and_refresh(
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
    return _append_and_refresh(s, im, events, "erase", author, raster_array=full, source="clear")


def tx_step(ctx: Ctx, s: Session, im: Image, kind: str, author: str, client: str | None = None) -> Result:
    """Undo (kind="undo") the newest applied edit of this author and client, or redo (kind="redo") the one
    they undid last: nobody's undo takes back another's edit (storage.rasterize.fold)."""
    events = load_events(s, im.id)
    folded = fold(events)
    owner = (clean_author(author), client)
    target = folded.undo_target(owner) if kind == "undo" else folded.redo_target(owner)
    if target is None:
        return None, None
    _info, rendered = _append_and_refresh(s, im, events, kind, author, target_id=target.id, client=client)
    row = s.get(Annotation, target.id)
    assert row is not None
    return annotation_info(row, active=kind == "redo"), rendered


def _on_image(ctx: Ctx, image_id: int, body: Any) -> Any:
    return write_cached(ctx, lambda s: body(s, locked_image(s, image_id)))


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
    return _on_image(ctx, image_id, lambda s, im: tx_point(ctx, s, im, class_id, x, y, radius, author))


def remove_point(
    ctx: Ctx, image_id: int, annotation_id: int | None, x: float | None, y: float | None, author: str
) -> AnnotationInfo | None:
    return _on_image(ctx, image_id, lambda s, im: tx_remove_point(ctx, s, im, annotation_id, x, y, author))


def erase(ctx: Ctx, image_id: int, region: Any, author: str) -> AnnotationInfo:
    def body(s: Session, im: Image) -> Result:
        mask = check_region(region, im.height, im.width)
        return _append_and_refresh(
            s, im, load_events(s, im.id), "erase", author, raster_array=mask.astype(np.uint8)
        )

    return _on_image(ctx, image_id, body)


def clear_labels(ctx: Ctx, image_id: int, author: str) -> AnnotationInfo | None:
    return _on_image(ctx, image_id, lambda s, im: tx_clear(ctx, s, im, author))


def undo(ctx: Ctx, image_id: int, author: str, client: str | None = None) -> AnnotationInfo | None:
    return _on_image(ctx, image_id, lambda s, im: tx_step(ctx, s, im, "undo", author, client))


def redo(ctx: Ctx, image_id: int, author: str, client: str | None = None) -> AnnotationInfo | None:
    return _on_image(ctx, image_id, lambda s, im: tx_step(ctx, s, im, "redo", author, client))


# ------------------------------------------------------------------ reads
def edit_state(ctx: Ctx, image_id: int, author: str, client: str | None = None) -> EditState:
    """What this author and client's undo and redo would do on the image."""
    owner = (clean_author(author), client)

    def fn(s: Session) -> EditState:
        im = get_or_404(s, Image, image_id, "image")
        folded = fold(load_events(s, im.id))
        return EditState(
            im.id,
            int(im.history_seq or 0),
            folded.undo_target(owner) is not None,
            folded.redo_target(owner) is not None,
        )

    return ctx.db.read(fn)


def history(ctx: Ctx, image_id: int) -> list[AnnotationInfo]:
    def fn(s: Session) -> list[AnnotationInfo]:
        im = get_or_404(s, Image, image_id, "image")
        active = fold(load_events(s, im.id)).active_ids()
        rows = s.scalars(
            select(Annotation)
            .where(Annotation.image_id == im.id, Annotation.kind != "noop")
            .order_by(Annotation.seq)
        )
        return [annotation_info(r, r.id in active) for r in rows]

    return ctx.db.read(fn)


def label_map(ctx: Ctx, image_id: int) -> np.ndarray:
    def fn(s: Session) -> tuple[np.ndarray, Rendered | None]:
        im = get_or_404(s, Image, image_id, "image")
        labels, rendered = current_labels(ctx, s, im)
        return labels.to_indices(index_of(s, im.project_id)), rendered

    out, rendered = ctx.db.read(fn)
    if rendered is not None:
        ctx.cache.put(*rendered)
    return out


def label_maps(ctx: Ctx, project_id: int, split: str | None, labelled_only: bool) -> dict[int, np.ndarray]:
    from .convert import check_split
    from .models import Project

    def fn(s: Session) -> tuple[dict[int, np.ndarray], list[Rendered]]:
        get_or_404(s, Project, project_id, "project")
        lut = index_of(s, project_id)
        stmt = select(Image).where(Image.project_id == project_id).order_by(Image.id)
        if split is not None:
            stmt = stmt.where(Image.split == check_split(split))
        if labelled_only:
            stmt = stmt.where(Image.labelled_pixels > 0)
        out: dict[int, np.ndarray] = {}
        rendered: list[Rendered] = []
        for im in s.scalars(stmt):
            labels, item = current_labels(ctx, s, im)
            if item is not None:
                rendered.append(item)
            out[im.id] = labels.to_indices(lut)
        return out, rendered

    out, rendered = ctx.db.read(fn)
    for item in rendered:
        ctx.cache.put(*item)
    return out


def scribble_layer(ctx: Ctx, image_id: int) -> np.ndarray:
    def fn(s: Session) -> np.ndarray:
        im = get_or_404(s, Image, image_id, "image")
        layer = render_scribble((im.height, im.width), fold(load_events(s, im.id)), _Loader(s))
        return layer.to_indices(index_of(s, im.project_id))

    return ctx.db.read(fn)


def points(ctx: Ctx, image_id: int) -> list[PointInfo]:
    def fn(s: Session) -> list[PointInfo]:
        im = get_or_404(s, Image, image_id, "image")
        lut = index_of(s, im.project_id)
        active = visible_points(im, fold(load_events(s, im.id)), _Loader(s))
        rows: Iterable[Annotation] = (
            s.scalars(select(Annotation).where(Annotation.id.in_(active)).order_by(Annotation.seq))
            if active
            else []
        )
        return [
            PointInfo(
                r.id,
                r.class_id,
                lut.get(r.class_id) if r.class_id is not None else None,
                float(r.x or 0.0),
                float(r.y or 0.0),
                float(r.radius or 0.0),
                r.author,
                r.created_at,
            )
            for r in rows
        ]

    return ctx.db.read(fn)


def visible_points(im: Image, folded: Folded, load: _Loader) -> set[int]:
    """Ids of the active points whose centre pixel no later erase (stroke, region or clear) covered: an
    erased point is gone from the labels, so it is not listed (nor drawn as a marker) either."""
    if not folded.points:
        return set()
    shape = (im.height, im.width)
    erases = [(e.seq, region_of(shape, e, load)) for e in folded.applied if e.kind == "erase"]  # each once
    out = set()
    for p in folded.points:
        ci, cj = centre_pixel(shape, p.x or 0.0, p.y or 0.0)
        if not any(
            seq > p.seq
            and rows.start <= ci < rows.stop
            and cols.start <= cj < cols.stop
            and m[ci - rows.start, cj - cols.start]
            for seq, (rows, cols, m) in erases
        ):
            out.add(p.id)
    return out


def labelled_pixel_counts(ctx: Ctx, project_id: int | None, image_id: int | None) -> dict[int, int]:
    from .models import Project

    if (project_id is None) == (image_id is None):
        raise ValidationError("labelled_pixel_counts needs exactly one of project_id= or image_id=")

    def fn(s: Session) -> dict[int, int]:
        if image_id is not None:
            im = get_or_404(s, Image, image_id, "image")
            pid, all_counts = im.project_id, [im.label_counts]
        else:
            assert project_id is not None  # exactly one of the two, checked above
            get_or_404(s, Project, project_id, "project")
            pid = int(project_id)
            all_counts = list(
                s.scalars(
                    select(Image.label_counts).where(Image.project_id == pid, Image.labelled_pixels > 0)
                )
            )
        lut = index_of(s, pid)
        out: dict[int, int] = {}
        for counts in all_counts:
            for cid, n in (counts or {}).items():
                idx = lut.get(int(cid))
                if idx is not None and n:
                    out[idx] = out.get(idx, 0) + int(n)
        return dict(sorted(out.items()))

    return ctx.db.read(fn)


# ------------------------------------------------------------------ ground truth
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
