"""Exports: a PASCAL VOC layout zip, COCO JSON with RLE masks (pycocotools), and heads as safetensors + JSON."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core import coco
from core.atomic import atomic_path, atomic_write
from core.labels import IGNORE, label_to_png_bytes

from .annotations import ground_truth, label_map
from .classes import list_classes
from .context import Ctx
from .errors import ValidationError
from .files import sanitize_filename, unique_name
from .heads import get_head, head_weights
from .images import image_bytes, image_rgb, list_images
from .projects import get_project
from .records import ClassInfo, ImageInfo


def _zip_path(dest: str | os.PathLike) -> Path:
    path = Path(dest)
    return path if path.suffix.lower() == ".zip" else path.with_name(path.name + ".zip")


def _stem(name: str) -> str:
    stem = (
        sanitize_filename(name).rsplit(".", 1)[0]
        if "." in sanitize_filename(name)
        else sanitize_filename(name)
    )
    return stem or "image"


# Predictions to export instead of the labels: image id -> HxW class indices, as a mapping or as a function
# called once per image (None: leave it out), so a caller can compute them one at a time.
Predictions = Mapping[int, np.ndarray] | Callable[[int], np.ndarray | None]


def _maps(
    ctx: Ctx, images: list[ImageInfo], classes: list[ClassInfo], predictions: Predictions | None
) -> Callable[[ImageInfo], np.ndarray | None]:
    """A function giving each image's map to export (its labels, or its prediction), read or computed when
    asked for: an export holds one image's map at a time, whatever the project's size."""
    if predictions is None:
        return lambda im: label_map(ctx, im.id) if im.labelled_pixels > 0 else None
    if isinstance(predictions, Mapping):
        ids = {im.id for im in images}
        for image_id in predictions:
            if int(image_id) not in ids:
                raise ValidationError(f"prediction for image {image_id}, which is not in this project")
        source: Callable[[int], np.ndarray | None] = predictions.get
    else:
        source = predictions

    def one(im: ImageInfo) -> np.ndarray | None:
        pred = source(im.id)
        if pred is None:
            return None
        arr = np.asarray(pred)
        if arr.shape != (im.height, im.width) or not np.issubdtype(arr.dtype, np.integer):
            raise ValidationError(
                f"prediction for image {im.id} must be an integer HxW array of shape "
                f"{(im.height, im.width)}, got {arr.dtype} {arr.shape}"
            )
        if arr.size and (int(arr.min()) < 0 or (arr[arr != IGNORE] >= len(classes)).any()):
            raise ValidationError(
                f"prediction for image {im.id} has values that are not class indices "
                f"0..{len(classes) - 1} or 255"
            )
        return arr.astype(np.uint8)

    return one


def _voc_image(ctx: Ctx, im: ImageInfo) -> tuple[str, bytes]:
    """(suffix, bytes) of an image for JPEGImages/: JPEG and PNG files as stored when their pixels are upright,
    anything else (other formats, and photos with an EXIF rotation, which readers such as PIL's Image.open
    and torchvision's VOC loader do not apply) re-encoded upright without the tag, so every image has the
    size of its label PNG."""
    import io

    from PIL import Image

    data = image_bytes(ctx, im.id)
    if im.format in ("JPEG", "PNG"):
        with Image.open(io.BytesIO(data)) as img:
            upright = img.getexif().get(0x0112, 1) == 1  # the EXIF orientation tag
        if upright:
            return (".jpg" if im.format == "JPEG" else ".png"), data
    buf = io.BytesIO()
    if im.format == "JPEG":
        Image.fromarray(image_rgb(ctx, im.id, None)).save(buf, format="JPEG", quality=95)
        return ".jpg", buf.getvalue()
    Image.fromarray(image_rgb(ctx, im.id, None)).save(buf, format="PNG")
    return ".png", buf.getvalue()


def export_voc(ctx: Ctx, project_id: int, dest: str | os.PathLike, predictions: Predictions | None) -> Path:
    """A PASCAL VOC layout zip that `train`, `evaluate` and the VOC import read back:

    JPEGImages/<stem>.jpg|.png       the images (JPEG and PNG as stored)
    labels/<stem>.png                the label maps (or predictions), palette PNG, 255 = unlabelled
    SegmentationClass/<stem>.png     ground truth, where the image has one
    ImageSets/Segmentation/          train.txt, val.txt (the project's splits), trainval.txt (all)
    classes.txt                      'name #rrggbb' per class, in index order
    """
    images = list_images(ctx, project_id, None)
    classes = list_classes(ctx, project_id)
    map_of = _maps(ctx, images, classes, predictions)
    taken: set[str] = set()
    splits: dict[str, list[str]] = {"train": [], "val": [], "trainval": []}
    # Written member by member: one image (and its maps) in memory at a time, whatever the project's size.
    path = _zip_path(dest)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for im in images:
            stem = unique_name(_stem(im.name), taken)
            suffix, data = _voc_image(ctx, im)
            zf.writestr(f"JPEGImages/{stem}{suffix}", data)
            labels = map_of(im)
            if labels is not None:
                zf.writestr(f"labels/{stem}.png", label_to_png_bytes(labels))
            gt = ground_truth(ctx, im.id) if im.has_ground_truth else None
            if gt is not None:
                zf.writestr(f"SegmentationClass/{stem}.png", label_to_png_bytes(gt))
            splits["trainval"].append(stem)
            if im.split in splits:
                splits[im.split].append(stem)
        for name, stems in splits.items():
            zf.writestr(f"ImageSets/Segmentation/{name}.txt", "".join(f"{s}\n" for s in stems).encode())
        zf.writestr("classes.txt", "".join(f"{c.name} {c.colour}\n" for c in classes).encode("utf-8"))
    return path


def coco_dict(
    ctx: Ctx, project_id: int, predictions: Predictions | None, include_background: bool = False
) -> dict[str, object]:
    project = get_project(ctx, project_id)
    images = list_images(ctx, project_id, None)
    classes = list_classes(ctx, project_id)
    map_of = _maps(ctx, images, classes, predictions)
    info = {
        "description": f"probeseg project {project.name}",
        "date_created": datetime.now(UTC).isoformat(timespec="seconds"),
        "probeseg_source": "predictions" if predictions is not None else "labels",
    }
    cats = [
        coco.CocoClass(c.index, c.name, c.colour, {"probeseg_index": c.index, "probeseg_class_id": c.id})
        for c in classes
    ]
    builder = coco.CocoBuilder(cats, info, include_background)
    taken: set[str] = set()
    for im in images:
        labels = map_of(im)
        if labels is not None:
            builder.add(
                {
                    "id": im.id,
                    "file_name": unique_name(sanitize_filename(im.name), taken),
                    "width": im.width,
                    "height": im.height,
                    "probeseg_split": im.split,
                },
                labels,
            )
    return builder.document()


def export_coco(
    ctx: Ctx,
    project_id: int,
    dest: str | os.PathLike,
    predictions: Predictions | None,
    include_background: bool = False,
) -> Path:
    path = Path(dest)
    if path.suffix.lower() != ".json":
        path = path.with_name(path.name + ".json")
    atomic_write(
        path, json.dumps(coco_dict(ctx, project_id, predictions, include_background)).encode("utf-8")
    )
    return path


def export_head(ctx: Ctx, head_id: int, dest_dir: str | os.PathLike) -> tuple[Path, Path]:
    """The head as a folder `head-<id>/` in the one head format (head.safetensors + head.json), which
    `python app.py predict --head` and `core.head.load_head` read; the project's class colours and ids and the
    metrics go into head.json's `extra` (write_head records the weights' hash)."""
    from core.head import META_FILE, WEIGHTS_FILE, write_head  # (torch: only for an export)

    head = get_head(ctx, head_id)
    meta = head.meta.but(
        classes=[c.name for c in head.classes],
        created=head.created_at.timestamp(),
        extra={
            "head_id": head.id,
            "metrics": head.metrics,
            "classes": [
                {"index": c.index, "name": c.name, "colour": c.colour, "id": c.id} for c in head.classes
            ],
        },
    )
    folder = write_head(Path(dest_dir) / f"head-{head.id}", head_weights(ctx, head_id), meta)
    return folder / WEIGHTS_FILE, folder / META_FILE
