"""Exports: palette PNG masks (zip), COCO JSON with RLE masks, and heads as safetensors + JSON."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.labels import IGNORE, label_to_png_bytes

from . import coco
from .annotations import label_maps
from .classes import list_classes
from .context import Ctx
from .errors import ValidationError
from .files import atomic_write, sanitize_filename, unique_name
from .heads import get_head, head_weights
from .images import list_images
from .projects import get_project
from .records import ClassInfo, ImageInfo


def _zip_path(dest: str | os.PathLike) -> Path:
    path = Path(dest)
    return path if path.suffix.lower() == ".zip" else path.with_name(path.name + ".zip")


def _write_zip_atomically(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".zip", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in members:
                zf.writestr(name, data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _stem(name: str) -> str:
    stem = sanitize_filename(name).rsplit(".", 1)[0] if "." in sanitize_filename(name) else sanitize_filename(name)
    return stem or "image"


def _maps(ctx: Ctx, project_id: int, images: list[ImageInfo], classes: list[ClassInfo],
          predictions: Mapping[int, np.ndarray] | None) -> dict[int, np.ndarray]:
    if predictions is None:
        return label_maps(ctx, project_id, None, True)
    by_id = {im.id: im for im in images}
    out: dict[int, np.ndarray] = {}
    for image_id, pred in predictions.items():
        im = by_id.get(int(image_id))
        if im is None:
            raise ValidationError(f"prediction for image {image_id}, which is not in this project")
        arr = np.asarray(pred)
        if arr.shape != (im.height, im.width) or not np.issubdtype(arr.dtype, np.integer):
            raise ValidationError(f"prediction for image {image_id} must be an integer HxW array of shape "
                                  f"{(im.height, im.width)}, got {arr.dtype} {arr.shape}")
        if arr.size and (int(arr.min()) < 0 or (arr[arr != IGNORE] >= len(classes)).any()):
            raise ValidationError(f"prediction for image {image_id} has values that are not class indices "
                                  f"0..{len(classes) - 1} or 255")
        out[int(image_id)] = arr.astype(np.uint8)
    return out


def export_label_pngs(ctx: Ctx, project_id: int, dest: str | os.PathLike,
                      predictions: Mapping[int, np.ndarray] | None) -> Path:
    images = list_images(ctx, project_id, None)
    classes = list_classes(ctx, project_id)
    maps = _maps(ctx, project_id, images, classes, predictions)
    taken: set[str] = {"classes.txt"}
    members: list[tuple[str, bytes]] = []
    for im in images:
        if im.id in maps:
            members.append((unique_name(_stem(im.name) + ".png", taken), label_to_png_bytes(maps[im.id])))
    members.append(("classes.txt", "".join(f"{c.name} {c.colour}\n" for c in classes).encode("utf-8")))
    return _write_zip_atomically(_zip_path(dest), members)


def coco_dict(ctx: Ctx, project_id: int, predictions: Mapping[int, np.ndarray] | None) -> dict[str, object]:
    project = get_project(ctx, project_id)
    images = list_images(ctx, project_id, None)
    classes = list_classes(ctx, project_id)
    maps = _maps(ctx, project_id, images, classes, predictions)
    taken: set[str] = set()
    out_images, out_anns = [], []
    for im in images:
        if im.id not in maps:
            continue
        out_images.append({"id": im.id, "file_name": unique_name(sanitize_filename(im.name), taken),
                           "width": im.width, "height": im.height, "probeseg_split": im.split})
        labels = maps[im.id]
        for c in classes:
            mask = labels == c.index
            area = int(mask.sum())
            if area == 0:
                continue
            out_anns.append({"id": len(out_anns) + 1, "image_id": im.id, "category_id": c.index + 1,
                             "segmentation": coco.encode(mask), "area": area, "bbox": coco.bbox(mask),
                             "iscrowd": 0})
    return {
        "info": {"description": f"probeseg project {project.name}",
                 "date_created": datetime.now(UTC).isoformat(timespec="seconds"),
                 "probeseg_source": "predictions" if predictions is not None else "labels"},
        "licenses": [],
        "images": out_images,
        "annotations": out_anns,
        # category id = class index + 1 (COCO ids start at 1); unlabelled pixels (255) have no annotation
        "categories": [{"id": c.index + 1, "name": c.name, "supercategory": "", "color": c.colour,
                        "probeseg_index": c.index, "probeseg_class_id": c.id} for c in classes],
    }


def export_coco(ctx: Ctx, project_id: int, dest: str | os.PathLike,
                predictions: Mapping[int, np.ndarray] | None) -> Path:
    path = Path(dest)
    if path.suffix.lower() != ".json":
        path = path.with_name(path.name + ".json")
    atomic_write(path, json.dumps(coco_dict(ctx, project_id, predictions)).encode("utf-8"))
    return path


def export_head(ctx: Ctx, head_id: int, dest_dir: str | os.PathLike) -> tuple[Path, Path]:
    """The head as a folder `head-<id>/` in the one head format (head.safetensors + head.json), which
    `python app.py predict --head` and `core.head.load_head` read; the project's class colours and ids and the
    metrics go into head.json's `extra` (write_head records the weights' hash)."""
    from core.head import META_FILE, WEIGHTS_FILE, HeadMeta, write_head  # (torch: only for an export)

    head = get_head(ctx, head_id)
    meta = dict(head.meta)
    train_meta = HeadMeta(
        backbone=head.backbone, weights_id=str(meta.get("weights_id") or head.backbone_weights),
        classes=[c.name for c in head.classes], long_side=int(meta.get("long_side") or 448),
        train=dict(meta.get("train") or {}), created=head.created_at.timestamp(),
        feature_version=int(meta.get("feature_version") or 1),
        extra={"head_id": head.id, "metrics": head.metrics,
               "classes": [{"index": c.index, "name": c.name, "colour": c.colour, "id": c.id} for c in head.classes]},
    )
    folder = write_head(Path(dest_dir) / f"head-{head.id}", head_weights(ctx, head_id), train_meta)
    return folder / WEIGHTS_FILE, folder / META_FILE
