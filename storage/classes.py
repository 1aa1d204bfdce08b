"""Label classes: add, rename, recolour, reorder, delete (with reassign / delete_labels)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.labels import voc_palette

from . import annotations as label_store
from .context import Ctx
from .convert import MAX_CLASSES, class_info, clean_text, get_or_404, parse_colour, project_classes
from .errors import ConflictError, ValidationError
from .models import Annotation, GroundTruth, Image, LabelClass, Project
from .records import ClassInfo, ClassUsage

_VOC = ["#{:02x}{:02x}{:02x}".format(*map(int, rgb)) for rgb in voc_palette()[:255]]


def auto_colour(used: set[str], name: str) -> str:
    """Background gets VOC black; other classes the first unused VOC palette colour (distinct, familiar)."""
    if name.lower() == "background" and _VOC[0] not in used:
        return _VOC[0]
    for colour in _VOC[1:] + _VOC[:1]:
        if colour not in used:
            return colour
    return _VOC[1]


def _check_name_free(s: Session, project_id: int, name: str, exclude_id: int | None = None) -> None:
    stmt = select(LabelClass.id).where(
        LabelClass.project_id == project_id, func.lower(LabelClass.name) == name.lower()
    )
    if exclude_id is not None:
        stmt = stmt.where(LabelClass.id != exclude_id)
    if s.scalars(stmt).first() is not None:
        raise ConflictError(
            f"the project already has a class named {name!r}; class names must be unique - "
            "choose another name"
        )


def add_class_row(s: Session, project_id: int, name: str, colour: str | Sequence[int] | None) -> LabelClass:
    get_or_404(s, Project, project_id, "project", for_update=True)
    name = clean_text(name, "class name", 100)
    _check_name_free(s, project_id, name)
    existing = project_classes(s, project_id)
    if len(existing) >= MAX_CLASSES:
        raise ValidationError(
            f"a project can have at most {MAX_CLASSES} classes (label value 255 means "
            "unlabelled); delete unused classes first"
        )
    hex_colour = (
        parse_colour(colour) if colour is not None else auto_colour({c.colour for c in existing}, name)
    )
    row = LabelClass(project_id=project_id, name=name, colour=hex_colour, index=len(existing))
    s.add(row)
    s.flush()
    return row


def list_classes(ctx: Ctx, project_id: int) -> list[ClassInfo]:
    def fn(s: Session) -> list[ClassInfo]:
        get_or_404(s, Project, project_id, "project")
        return [class_info(c) for c in project_classes(s, project_id)]

    return ctx.db.read(fn)


def get_class(ctx: Ctx, class_id: int) -> ClassInfo:
    return ctx.db.read(lambda s: class_info(get_or_404(s, LabelClass, class_id, "class")))


def add_class(ctx: Ctx, project_id: int, name: str, colour: str | Sequence[int] | None) -> ClassInfo:
    return ctx.db.write(lambda s: class_info(add_class_row(s, project_id, name, colour)))


def rename_class(ctx: Ctx, class_id: int, name: str) -> ClassInfo:
    def fn(s: Session) -> ClassInfo:
        c = get_or_404(s, LabelClass, class_id, "class", for_update=True)
        new = clean_text(name, "class name", 100)
        _check_name_free(s, c.project_id, new, exclude_id=c.id)
        c.name = new
        s.flush()
        return class_info(c)

    return ctx.db.write(fn)


def recolour_class(ctx: Ctx, class_id: int, colour: str | Sequence[int]) -> ClassInfo:
    def fn(s: Session) -> ClassInfo:
        c = get_or_404(s, LabelClass, class_id, "class", for_update=True)
        c.colour = parse_colour(colour)
        s.flush()
        return class_info(c)

    return ctx.db.write(fn)


def _apply_order(s: Session, rows: list[LabelClass]) -> None:
    """Give rows indices 0..K-1 in list order (two phases, so the unique (project, index) never clashes)."""
    for i, row in enumerate(rows):
        row.index = -1 - i
    s.flush()
    for i, row in enumerate(rows):
        row.index = i
    s.flush()


def reorder_classes(ctx: Ctx, project_id: int, class_ids: Sequence[int]) -> list[ClassInfo]:
    def fn(s: Session) -> list[ClassInfo]:
        get_or_404(s, Project, project_id, "project", for_update=True)
        rows = project_classes(s, project_id)
        by_id = {c.id: c for c in rows}
        wanted = [int(i) for i in class_ids]
        if sorted(wanted) != sorted(by_id):
            raise ValidationError(
                f"reorder_classes needs every class id of the project exactly once: "
                f"expected a permutation of {sorted(by_id)}, got {wanted}"
            )
        _apply_order(s, [by_id[i] for i in wanted])
        return [class_info(c) for c in project_classes(s, project_id)]

    return ctx.db.write(fn)


def move_class(ctx: Ctx, class_id: int, new_index: int) -> list[ClassInfo]:
    def fn(s: Session) -> list[ClassInfo]:
        c = get_or_404(s, LabelClass, class_id, "class")
        get_or_404(s, Project, c.project_id, "project", for_update=True)
        rows = [r for r in project_classes(s, c.project_id) if r.id != c.id]
        if not 0 <= int(new_index) <= len(rows):
            raise ValidationError(f"new index {new_index} is out of range 0..{len(rows)}")
        rows.insert(int(new_index), c)
        _apply_order(s, rows)
        return [class_info(r) for r in project_classes(s, c.project_id)]

    return ctx.db.write(fn)


def _references(s: Session, c: LabelClass) -> tuple[list[int], list[int], list[int]]:
    """(annotation ids referencing the class, image ids whose labels may change, ground-truth ids)."""
    ann_ids: list[int] = []
    image_ids: set[int] = set()
    rows = s.execute(
        select(Annotation.id, Annotation.image_id, Annotation.class_id, Annotation.class_map)
        .join(Image, Image.id == Annotation.image_id)
        .where(Image.project_id == c.project_id)
    )
    for aid, image_id, cid, cmap in rows:
        if cid == c.id or c.id in {int(v) for v in (cmap or {}).values() if v is not None}:
            ann_ids.append(aid)
            image_ids.add(image_id)
    gt_ids = [
        gid
        for gid, cmap in s.execute(
            select(GroundTruth.id, GroundTruth.class_map)
            .join(Image, Image.id == GroundTruth.image_id)
            .where(Image.project_id == c.project_id)
        )
        if c.id in {int(v) for v in (cmap or {}).values() if v is not None}
    ]
    return ann_ids, sorted(image_ids), gt_ids


def _usage(s: Session, c: LabelClass) -> ClassUsage:
    ann_ids, _images, gt_ids = _references(s, c)
    pixels = 0
    for counts in s.scalars(select(Image.label_counts).where(Image.project_id == c.project_id)):
        pixels += int((counts or {}).get(str(c.id), 0))
    return ClassUsage(c.id, len(ann_ids), pixels, len(gt_ids))


def class_usage(ctx: Ctx, class_id: int) -> ClassUsage:
    return ctx.db.read(lambda s: _usage(s, get_or_404(s, LabelClass, class_id, "class")))


def _remap(cmap: dict[str, int | None], old: int, new: int | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, cid in (cmap or {}).items():
        if cid is None:
            continue
        if int(cid) == old:
            if new is not None:
                out[key] = new
        else:
            out[key] = int(cid)
    return out


def delete_class(
    ctx: Ctx, class_id: int, mode: str | None, reassign_to: int | None
) -> list[tuple[int, int, object]]:
    """Returns [(image_id, label_version, ids)] of re-rendered images for the label cache."""

    def fn(s: Session) -> list[tuple[int, int, object]]:
        c = get_or_404(s, LabelClass, class_id, "class")
        get_or_404(s, Project, c.project_id, "project", for_update=True)
        ann_ids, image_ids, gt_ids = _references(s, c)
        target: int | None = None
        if ann_ids or gt_ids:
            if mode not in ("reassign", "delete_labels"):
                raise ConflictError(
                    f"class {c.name!r} is used by {len(ann_ids)} annotation(s) on {len(image_ids)} image(s) and "
                    f"{len(gt_ids)} ground-truth mask(s); call delete_class(..., mode='reassign', reassign_to="
                    "<other class id>) to move its labels to another class, or mode='delete_labels' to make "
                    "them unlabelled"
                )
            if mode == "reassign":
                if reassign_to is None:
                    raise ValidationError(
                        "mode='reassign' needs reassign_to=<id of the class that gets the labels>"
                    )
                other = get_or_404(s, LabelClass, reassign_to, "class")
                if other.project_id != c.project_id or other.id == c.id:
                    raise ValidationError("reassign_to must be another class of the same project")
                target = other.id
        elif mode not in (None, "reassign", "delete_labels"):
            raise ValidationError(f"mode must be 'reassign', 'delete_labels' or None, not {mode!r}")
        for aid in ann_ids:
            a = s.get(Annotation, aid)
            assert a is not None
            values: dict[str, object] = {"class_map": _remap(a.class_map, c.id, target)}
            if a.class_id == c.id:
                values["class_id"] = target
            s.execute(update(Annotation).where(Annotation.id == aid).values(**values))
        for gid in gt_ids:
            g = s.get(GroundTruth, gid)
            assert g is not None
            s.execute(
                update(GroundTruth)
                .where(GroundTruth.id == gid)
                .values(class_map=_remap(g.class_map, c.id, target))
            )
        s.expire_all()
        project_id = c.project_id
        s.delete(c)
        s.flush()
        _apply_order(s, project_classes(s, project_id))
        rendered: list[tuple[int, int, object]] = []
        for image_id in image_ids:
            im = get_or_404(s, Image, image_id, "image", for_update=True)
            labels = label_store.refresh_image(s, im)
            rendered.append((im.id, im.label_version, labels))
        return rendered

    return ctx.db.write(fn)
