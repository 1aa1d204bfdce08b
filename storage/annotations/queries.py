"""Reads of the labels: undo/redo state, history, label maps, the scribble layer, points, pixel counts."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..context import Ctx
from ..convert import (
    annotation_info,
    check_split,
    clean_author,
    get_or_404,
)
from ..errors import ValidationError
from ..models import Annotation, Image, Project
from ..rasterize import (
    Folded,
    centre_pixel,
    fold,
    region_of,
    render_scribble,
)
from ..records import AnnotationInfo, EditState, PointInfo
from .history import (
    Loader,
    Rendered,
    current_labels,
    index_of,
    load_events,
)


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
        layer = render_scribble((im.height, im.width), fold(load_events(s, im.id)), Loader(s))
        return layer.to_indices(index_of(s, im.project_id))

    return ctx.db.read(fn)


def points(ctx: Ctx, image_id: int) -> list[PointInfo]:
    def fn(s: Session) -> list[PointInfo]:
        im = get_or_404(s, Image, image_id, "image")
        lut = index_of(s, im.project_id)
        active = visible_points(im, fold(load_events(s, im.id)), Loader(s))
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


def visible_points(im: Image, folded: Folded, load: Loader) -> set[int]:
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
