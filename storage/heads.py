"""Trained heads (safetensors bytes + class snapshot) and training runs."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.head_meta import HeadMeta

from .context import Ctx
from .convert import check_finite, get_or_404, head_info, project_classes, run_info
from .errors import ValidationError
from .files import sha256_bytes
from .models import Head, Project, TrainingRun
from .records import HeadInfo, TrainingRunInfo

MAX_HEAD_BYTES = 256 * 1024 * 1024


def _json(value: Any, what: str) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(value or {}), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{what} must be a JSON-serialisable dict with finite numbers ({exc})"
        ) from None


def check_safetensors(data: bytes) -> dict[str, Any]:
    """Parse and sanity-check a safetensors header; return it."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValidationError(f"head weights must be bytes (a safetensors file), got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_HEAD_BYTES:
        raise ValidationError(f"head weights are {len(data):,} bytes; the limit is {MAX_HEAD_BYTES:,}")
    if len(data) < 8:
        raise ValidationError(
            "head weights are not a safetensors file (shorter than its 8-byte header length)"
        )
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValidationError(
            "head weights are not a safetensors file (header length past the end); save them "
            "with safetensors.torch.save(...)"
        )
    try:
        header = json.loads(data[8 : 8 + n])
    except ValueError:
        raise ValidationError("head weights are not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValidationError("head weights are not a safetensors file (header is not a JSON object)")
    return header


def save_head(
    ctx: Ctx, project_id: int, weights: bytes, meta: HeadMeta, metrics: Mapping[str, Any] | None
) -> HeadInfo:
    check_safetensors(weights)
    meta_d, metrics_d = _json(meta.to_dict(), "meta"), _json(metrics, "metrics")
    data = bytes(weights)

    def fn(s: Session) -> HeadInfo:
        get_or_404(s, Project, project_id, "project")
        classes = [
            {"id": c.id, "name": c.name, "colour": c.colour, "index": c.index}
            for c in project_classes(s, project_id)
        ]
        row = Head(
            project_id=project_id,
            backbone=meta.backbone[:200],
            backbone_weights=meta.weights_id[:200],
            weights_sha256=sha256_bytes(data),
            size_bytes=len(data),
            weights=data,
            classes=classes,
            meta=meta_d,
            metrics=metrics_d,
        )
        s.add(row)
        s.flush()
        return head_info(row)

    return ctx.db.write(fn)


def latest_head(ctx: Ctx, project_id: int) -> HeadInfo | None:
    def fn(s: Session) -> HeadInfo | None:
        get_or_404(s, Project, project_id, "project")
        row = s.scalars(select(Head).where(Head.project_id == project_id).order_by(Head.id.desc())).first()
        return None if row is None else head_info(row)

    return ctx.db.read(fn)


def list_heads(ctx: Ctx, project_id: int) -> list[HeadInfo]:
    def fn(s: Session) -> list[HeadInfo]:
        get_or_404(s, Project, project_id, "project")
        return [
            head_info(h)
            for h in s.scalars(select(Head).where(Head.project_id == project_id).order_by(Head.id))
        ]

    return ctx.db.read(fn)


def get_head(ctx: Ctx, head_id: int) -> HeadInfo:
    return ctx.db.read(lambda s: head_info(get_or_404(s, Head, head_id, "head")))


def head_weights(ctx: Ctx, head_id: int) -> bytes:
    def fn(s: Session) -> bytes:
        return bytes(get_or_404(s, Head, head_id, "head").weights)

    return ctx.db.read(fn)


def set_head_metrics(ctx: Ctx, head_id: int, metrics: Mapping[str, Any]) -> HeadInfo:
    values = _json(metrics, "metrics")

    def fn(s: Session) -> HeadInfo:
        row = get_or_404(s, Head, head_id, "head", for_update=True)
        row.metrics = values
        s.flush()
        return head_info(row)

    return ctx.db.write(fn)


def record_training_run(
    ctx: Ctx,
    project_id: int,
    settings: Mapping[str, Any],
    seconds: float,
    loss: float | None,
    metrics: Mapping[str, Any] | None,
    pixel_counts: Mapping[Any, int] | None,
    head_id: int | None,
) -> TrainingRunInfo:
    settings_d, metrics_d = _json(settings, "settings"), _json(metrics, "metrics")
    secs = check_finite(seconds, "seconds")
    loss_f = None if loss is None else check_finite(loss, "loss")
    counts: dict[str, int] = {}
    for key, n in (pixel_counts or {}).items():
        try:
            counts[str(key)] = int(n)
        except (TypeError, ValueError):
            raise ValidationError(f"pixel_counts[{key!r}] must be an integer, got {n!r}") from None
        if counts[str(key)] < 0:
            raise ValidationError(f"pixel_counts[{key!r}] must not be negative")

    def fn(s: Session) -> TrainingRunInfo:
        get_or_404(s, Project, project_id, "project")
        if head_id is not None:
            h = get_or_404(s, Head, head_id, "head")
            if h.project_id != project_id:
                raise ValidationError(f"head {head_id} belongs to another project")
        row = TrainingRun(
            project_id=project_id,
            head_id=head_id,
            settings=settings_d,
            seconds=secs,
            loss=loss_f,
            metrics=metrics_d,
            pixel_counts=counts,
            labelled_pixels=int(sum(counts.values())),
        )
        s.add(row)
        s.flush()
        return run_info(row)

    return ctx.db.write(fn)


def list_training_runs(ctx: Ctx, project_id: int) -> list[TrainingRunInfo]:
    def fn(s: Session) -> list[TrainingRunInfo]:
        get_or_404(s, Project, project_id, "project")
        return [
            run_info(r)
            for r in s.scalars(
                select(TrainingRun).where(TrainingRun.project_id == project_id).order_by(TrainingRun.id)
            )
        ]

    return ctx.db.read(fn)
