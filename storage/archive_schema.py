"""Validation of a project archive's project.json before anything is written: every field, type, reference
and kind, so a bad archive is refused with a message naming the field (e.g. `annotations[3].class_id`)
instead of failing half-way with a KeyError."""

from __future__ import annotations

import builtins  # _Doc's methods str, int and bool shadow the types in its own annotations
import math
import re
from datetime import datetime
from typing import Any

from core.labels import IGNORE

from .errors import ValidationError
from .records import SPLITS

ANNOTATION_KINDS = ("scribble", "mask", "point", "point_remove", "erase", "undo", "redo", "stroke", "noop")
RASTER_KINDS = ("scribble", "mask", "erase")
PATH_KINDS = ("stroke", "erase")  # an erase carries a raster (region, clear) or a path (erase stroke)
MAX_PATH_POINTS = 10_000
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


class _Doc:
    """Typed access to one JSON object, raising ValidationError with the field's path."""

    def __init__(self, value: Any, path: builtins.str) -> None:
        if not isinstance(value, dict):
            raise ValidationError(f"project.json: {path} must be an object, not {_kind(value)}")
        self.d, self.path = value, path

    def _get(self, key: builtins.str, required: builtins.bool) -> Any:
        if key not in self.d or self.d[key] is None:
            if required:
                raise ValidationError(f"project.json: {self.path}.{key} is missing")
            return None
        return self.d[key]

    def int(
        self, key: builtins.str, required: builtins.bool = True, minimum: builtins.int | None = None
    ) -> builtins.int | None:
        v = self._get(key, required)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValidationError(f"project.json: {self.path}.{key} must be an integer, not {_kind(v)}")
        if minimum is not None and v < minimum:
            raise ValidationError(f"project.json: {self.path}.{key} must be at least {minimum}, not {v}")
        return v

    def num(self, key: builtins.str, required: builtins.bool = False) -> float | None:
        v = self._get(key, required)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValidationError(f"project.json: {self.path}.{key} must be a finite number, not {_short(v)}")
        return float(v)

    def str(
        self, key: builtins.str, required: builtins.bool = True, nonempty: builtins.bool = False
    ) -> builtins.str | None:
        v = self._get(key, required)
        if v is None:
            return None
        if not isinstance(v, str):
            raise ValidationError(f"project.json: {self.path}.{key} must be text, not {_kind(v)}")
        if nonempty and not v.strip():
            raise ValidationError(f"project.json: {self.path}.{key} must not be empty")
        return v

    def bool(self, key: builtins.str) -> None:
        v = self._get(key, False)
        if v is not None and not isinstance(v, bool):
            raise ValidationError(f"project.json: {self.path}.{key} must be true or false, not {_kind(v)}")

    def obj(self, key: builtins.str) -> dict | None:
        v = self._get(key, False)
        if v is not None and not isinstance(v, dict):
            raise ValidationError(f"project.json: {self.path}.{key} must be an object, not {_kind(v)}")
        return v

    def time(self, key: builtins.str) -> None:
        v = self.str(key, required=False)
        if v:
            try:
                datetime.fromisoformat(v)
            except ValueError:
                raise ValidationError(
                    f"project.json: {self.path}.{key} is not a date and time (ISO 8601): {_short(v)}"
                ) from None

    def ref(
        self, key: builtins.str, known: set[builtins.int], what: builtins.str, required: builtins.bool = True
    ) -> builtins.int | None:
        v = self.int(key, required)
        if v is not None and v not in known:
            raise ValidationError(
                f"project.json: {self.path}.{key} refers to {what} {v}, which is not in the archive"
            )
        return v


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}.get(
        type(v), "a number" if isinstance(v, int | float) else type(v).__name__
    )


def _short(v: Any) -> str:
    """A value for a message: text and numbers as they are (cut), containers by their kind (no reprs)."""
    if isinstance(v, dict | list) or v is None:
        return _kind(v)
    text = str(v).lower() if isinstance(v, bool) else str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _items(doc: dict, key: str) -> list[_Doc]:
    v = doc.get(key, [])
    if v is None:
        v = []
    if not isinstance(v, list):
        raise ValidationError(f"project.json: {key} must be a list, not {_kind(v)}")
    return [_Doc(x, f"{key}[{i}]") for i, x in enumerate(v)]


def _path(a: _Doc, kind: str) -> list | None:
    """A stroke's polyline: a list of [x, y] finite numbers (required for strokes)."""
    v = a.d.get("path")
    if v is None:
        if kind == "stroke":
            raise ValidationError(f"project.json: {a.path}.path is missing")
        return None
    if kind not in PATH_KINDS:
        raise ValidationError(f"project.json: {a.path} of kind {kind} cannot carry a path")
    if not isinstance(v, list) or not v or len(v) > MAX_PATH_POINTS:
        raise ValidationError(f"project.json: {a.path}.path must be a list of 1 to {MAX_PATH_POINTS} [x, y]")
    for i, p in enumerate(v):
        if not (
            isinstance(p, list)
            and len(p) == 2
            and all(isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c) for c in p)
        ):
            raise ValidationError(f"project.json: {a.path}.path[{i}] must be [x, y] with finite numbers")
    return v


def _unique(values: list[Any], what: str) -> set:
    seen: set = set()
    for v in values:
        if v in seen:
            raise ValidationError(f"project.json: two {what} share the value {_short(v)}")
        seen.add(v)
    return seen


def _class_map(d: _Doc, key: str) -> None:
    """Raster value -> class id; ids of classes deleted since are allowed (those entries are dropped)."""
    m = d.obj(key)
    for k, v in (m or {}).items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise ValidationError(
                f"project.json: {d.path}.{key}[{_short(k)}] must be a class id, not {_short(v)}"
            )


def validate(doc: dict) -> None:
    """Raise ValidationError naming the first bad field of an archive's project.json."""
    _validate_project(doc)
    _validate_classes(doc)
    image_ids = _validate_images(doc)
    _validate_annotations(doc, image_ids)
    _validate_ground_truths(doc, image_ids)
    _validate_runs(doc, _validate_heads(doc))


def _validate_project(doc: dict) -> None:
    p = _Doc(doc.get("project"), "project")
    p.str("name", nonempty=True)
    p.str("description", required=False)
    p.obj("settings")
    p.time("created_at")


def _validate_classes(doc: dict) -> None:
    classes = _items(doc, "classes")
    for c in classes:
        c.int("id")
        c.str("name", nonempty=True)
        colour = c.str("colour")
        if not _COLOUR.fullmatch(colour or ""):
            raise ValidationError(
                f"project.json: {c.path}.colour must look like #rrggbb, not {_short(colour)}"
            )
        index = c.int("index", minimum=0)
        if index is not None and index >= IGNORE:  # label maps are uint8 and IGNORE marks unlabelled pixels
            raise ValidationError(f"project.json: {c.path}.index must be below {IGNORE}, not {index}")
        c.time("created_at")
    _unique([c.d["id"] for c in classes], "classes' ids")
    _unique([c.d["index"] for c in classes], "classes' indices")
    _unique([c.d["name"].strip().lower() for c in classes], "classes' names")


def _validate_images(doc: dict) -> set:  # the images' ids
    images = _items(doc, "images")
    for im in images:
        im.int("id")
        im.str("name", nonempty=True)
        im.str("content_hash", nonempty=True)
        im.str("file", nonempty=True)
        split = im.str("split", required=False)
        if split is not None and split not in SPLITS:
            raise ValidationError(
                f"project.json: {im.path}.split must be one of {', '.join(SPLITS)}, not {_short(split)}"
            )
        im.num("uncertainty")
        im.bool("has_prediction")
        im.time("created_at")
        im.time("stats_updated_at")
    return _unique([im.d["id"] for im in images], "images' ids")


def _validate_annotations(doc: dict, image_ids: set) -> None:
    annotations = _items(doc, "annotations")
    for a in annotations:
        a.int("id")
    ann_ids = _unique([a.d["id"] for a in annotations], "annotations' ids")
    for a in annotations:
        a.ref("image_id", image_ids, "image")
        a.int("seq", minimum=0)
        kind = a.str("kind")
        if kind not in ANNOTATION_KINDS:
            raise ValidationError(
                f"project.json: {a.path}.kind must be one of {', '.join(ANNOTATION_KINDS)}, "
                f"not {_short(kind)}"
            )
        a.int(
            "class_id", required=False
        )  # may name a class deleted since (history keeps it): dropped on import
        for key in ("x", "y", "radius"):
            a.num(key, required=kind == "point")
        path = _path(a, kind)
        raster = a.str("raster", required=kind in RASTER_KINDS and path is None)
        if raster is not None and kind not in RASTER_KINDS:
            raise ValidationError(f"project.json: {a.path} of kind {kind} cannot carry a raster")
        a.str("op_id", required=False)
        _class_map(a, "class_map")
        a.ref("target_id", ann_ids, "annotation", required=False)
        a.str("author", required=False)
        a.str("source", required=False)
        a.time("created_at")
    _unique(
        [(a.d["image_id"], a.d["seq"]) for a in annotations], "annotations of one image' sequence numbers"
    )


def _validate_ground_truths(doc: dict, image_ids: set) -> None:
    gts = _items(doc, "ground_truths")
    for g in gts:
        g.ref("image_id", image_ids, "image")
        g.str("raster", nonempty=True)
        _class_map(g, "class_map")
        g.str("source", required=False)
        g.time("created_at")
    _unique([g.d["image_id"] for g in gts], "ground truths' images")


def _validate_heads(doc: dict) -> set:  # the heads' ids
    heads = _items(doc, "heads")
    for h in heads:
        h.int("id")
        h.str("backbone", required=False)
        h.str("backbone_weights", required=False)
        h.str("weights_sha256", nonempty=True)
        h.str("weights", nonempty=True)
        v = h.d.get("classes") or []
        if not isinstance(v, list):
            raise ValidationError(f"project.json: {h.path}.classes must be a list, not {_kind(v)}")
        for i, c in enumerate(v):
            _Doc(c, f"{h.path}.classes[{i}]").int("id")
        h.obj("meta")
        h.obj("metrics")
        h.time("created_at")
    return _unique([h.d["id"] for h in heads], "heads' ids")


def _validate_runs(doc: dict, head_ids: set) -> None:
    for r in _items(doc, "training_runs"):
        r.ref("head_id", head_ids, "head", required=False)
        r.obj("settings")
        r.num("seconds")
        r.num("loss")
        r.obj("metrics")
        counts = r.obj("pixel_counts") or {}
        for k, v in counts.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValidationError(
                    f"project.json: {r.path}.pixel_counts[{_short(k)}] must be a count, not {_short(v)}"
                )
        r.time("created_at")
