"""The edit-operation protocol: what a canvas (or a script) sends, one operation at a time.

An operation is a dict `{"op_id", "kind", "class_id", "radius", "points", "client"}` (see `parse_op`). Each is
committed in one transaction on the image's locked row, so operations on one image are applied in
arrival order, and exactly once: the op_id is stored with the history row it produced (a `noop` row
when it changed nothing), and a retry of a committed op_id is acknowledged again without being applied.
The server rasterises (storage.rasterize); nobody sends a whole label layer. `client` (optional: a
browser tab's id) makes undo and redo act on that client's own edits only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import annotations as an
from .context import Ctx
from .convert import check_client, check_finite
from .errors import ValidationError
from .models import Annotation, Image
from .records import LabelDelta, OpResult

KINDS = ("stroke", "erase", "point", "unpoint", "undo", "redo", "clear")
# the edits whose effect a client cannot draw by itself: their acknowledgement carries what changed
DELTA_KINDS = ("erase", "unpoint", "undo", "redo", "clear")
MAX_PATH_POINTS = 10_000  # vertices of one stroke (a client thins its pointer samples long before that)
OP_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclass(frozen=True)
class Op:
    op_id: str
    kind: str
    class_id: int | None = None
    radius: float = 0.0
    points: tuple[tuple[float, float], ...] = ()
    client: str | None = None


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValidationError(f"{what} must be an integer, got {value!r}")
    return int(value)


def parse_op(op: Any) -> Op:
    """Validate an operation without touching the database; raises ValidationError saying what is wrong."""
    if not isinstance(op, dict):
        raise ValidationError("an operation must be a JSON object with op_id, kind and its fields")
    op_id = op.get("op_id")
    if not isinstance(op_id, str) or not OP_ID.match(op_id):
        raise ValidationError(
            "op_id must be a string of 1 to 64 letters, digits or _ . : - (made by the client, "
            "e.g. a UUID; a retry sends the same op_id)"
        )
    kind = op.get("kind")
    if kind not in KINDS:
        raise ValidationError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    client = check_client(op.get("client"))
    if kind in ("undo", "redo", "clear"):
        return Op(op_id, kind, client=client)
    class_id = None
    if kind in ("stroke", "point"):
        if "class_id" not in op:
            raise ValidationError(f"a {kind} needs class_id (the id from GET /classes)")
        class_id = _int(op["class_id"], "class_id")
    radius = 0.0
    if kind != "unpoint":
        if "radius" not in op:
            raise ValidationError(f"a {kind} needs radius (in image pixels)")
        radius = an.check_radius(op["radius"])
    raw = op.get("points")
    if not isinstance(raw, list) or not raw:
        raise ValidationError(f"a {kind} needs points: a non-empty list of [x, y] in image pixels")
    if kind in ("point", "unpoint") and len(raw) != 1:
        raise ValidationError(f"a {kind} has exactly one [x, y] in points, got {len(raw)}")
    if len(raw) > MAX_PATH_POINTS:
        raise ValidationError(f"a stroke has at most {MAX_PATH_POINTS} points, got {len(raw)}; split it")
    pts = []
    for p in raw:
        if not isinstance(p, list | tuple) or len(p) != 2 or any(isinstance(v, bool) for v in p):
            raise ValidationError(f"each entry of points must be [x, y], got {p!r}"[:200])
        pts.append((check_finite(p[0], "x"), check_finite(p[1], "y")))
    return Op(op_id, kind, class_id, radius, tuple(pts), client)


def _apply(ctx: Ctx, s: Session, im: Image, op: Op, author: str) -> an.Result:
    if op.kind in ("stroke", "erase"):
        margin = op.radius + 1.0  # a stroke may be dragged a little past the edge; it is clipped
        path = [list(an.check_xy(im, x, y, margin)) for x, y in op.points]
        fields: dict[str, Any] = {"radius": op.radius, "path": path}
        if op.kind == "stroke":
            fields["class_id"] = an.class_of(s, im, op.class_id).id
        return an.tx_on_top(ctx, s, im, op.kind, author, **fields)
    if op.kind == "point":
        return an.tx_point(ctx, s, im, op.class_id, *op.points[0], op.radius, author)
    if op.kind == "unpoint":
        return an.tx_remove_point(ctx, s, im, None, *op.points[0], author)
    if op.kind == "clear":
        return an.tx_clear(ctx, s, im, author)
    return an.tx_step(ctx, s, im, op.kind, author, op.client)


def apply_op(ctx: Ctx, image_id: int, op: Any, author: str) -> OpResult:
    """Commit one operation on an image (see the module docstring); returns once it is committed."""
    parsed = parse_op(op)

    def fn(s: Session) -> tuple[OpResult, an.Rendered | None]:
        im = an.locked_image(s, image_id)
        seq = s.scalar(
            select(Annotation.seq).where(Annotation.image_id == im.id, Annotation.op_id == parsed.op_id)
        )
        if seq is not None:
            return OpResult(parsed.op_id, int(seq), True, True, int(im.label_version or 0)), None
        before = int(im.history_seq or 0)
        old = an.current_labels(ctx, s, im)[0] if parsed.kind in DELTA_KINDS else None
        info, rendered = _apply(ctx, s, im, parsed, author)
        if int(im.history_seq or 0) == before:
            an.append_row(s, im, "noop", author)
        s.execute(
            update(Annotation)
            .where(Annotation.image_id == im.id, Annotation.seq == im.history_seq)
            .values(op_id=parsed.op_id, client=parsed.client)
        )
        delta = None
        if old is not None and rendered is not None:
            index = an.index_of(s, im.project_id)
            delta = label_delta(old.to_indices(index), rendered[2].to_indices(index))
        return OpResult(
            parsed.op_id, int(im.history_seq), False, info is not None, int(im.label_version or 0), delta
        ), rendered

    return an.write_cached(ctx, fn)


def label_delta(before: np.ndarray, after: np.ndarray) -> LabelDelta | None:
    """The box of the pixels that differ, with `after` inside it (None: nothing changed)."""
    diff = before != after
    rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
    if not len(rows):
        return None
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return LabelDelta((x0, y0, x1, y1), after[y0:y1, x0:x1].copy())
