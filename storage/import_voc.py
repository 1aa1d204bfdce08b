"""Importing a VOC-layout dataset from a folder: images, label PNGs, ground truth, classes, splits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from core.labels import VOC_CLASSES, LabelError, read_label_png
from core.voc import read_class_file

from . import annotations as label_store
from .context import Ctx
from .errors import StorageError, ValidationError
from .files import sanitize_filename
from .images import set_split
from .imports import (
    Roots,
    _add_one,
    _allowed,
    _check_project,
    _ensure_classes,
    _is_image_name,
    _read_file,
    _resolved,
)
from .records import ImageInfo, ImportReport, _ReportBuilder


# ------------------------------------------------------------------ VOC layout
def _split_lists(root: Path, roots: list[Path] | None = None) -> tuple[list[str], dict[str, str]]:
    sets = root / "ImageSets" / "Segmentation"
    order: list[str] = []
    split: dict[str, str] = {}
    for fname, value in (("train.txt", "train"), ("val.txt", "val"), ("trainval.txt", "unassigned")):
        path = sets / fname
        if not path.is_file() or not _allowed(path, roots):
            continue
        for line in path.read_text(encoding="utf-8").split():
            stem = line.strip()
            if stem and stem not in split:
                split[stem] = value
                order.append(stem)
    return order, split


def _read_mask(path: Path, shape: tuple[int, int], what: str) -> np.ndarray:
    arr = read_label_png(path, f"{path.name} ({what})")
    if arr.shape != shape:
        raise ValidationError(
            f"{path.name} ({what}): mask is {arr.shape[1]}x{arr.shape[0]} but the image is "
            f"{shape[1]}x{shape[0]}; masks must match the image size"
        )
    return arr


def _find(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    for suffix in suffixes:
        cand = folder / f"{stem}{suffix}"
        if cand.is_file():
            return cand
    return None


def import_voc(
    ctx: Ctx,
    project_id: int,
    root: str | os.PathLike,
    labels_dir: str | os.PathLike | None,
    roots: Roots = None,
    zero_is_unlabelled: bool = False,
) -> ImportReport:
    """With `roots`, every file read (images, masks, lists, classes.txt) must resolve inside them."""
    _check_project(ctx, project_id)
    roots = None if roots is None else _resolved(roots)
    base = Path(root)
    images_dir, gt_dir, lab_dir = _voc_folders(base, labels_dir, roots)
    class_file = base / "classes.txt"
    use_file = class_file.is_file() and _allowed(class_file, roots)
    names: list[tuple[str, str | None]] = (
        read_class_file(class_file) if use_file else [(n, None) for n in VOC_CLASSES]
    )
    if not names:
        raise ValidationError(f"{class_file}: no class names in it; write one class name per line")
    rb = _ReportBuilder()
    mapping = _ensure_classes(ctx, project_id, names, rb)

    order, split = _split_lists(base, roots)
    if order:
        stems = order
    else:
        stems = sorted({p.stem for p in images_dir.iterdir() if p.is_file() and _is_image_name(p.name)})
    for stem in stems:
        added = _voc_image(ctx, project_id, images_dir, stem, split, roots, rb)
        if added is None:
            continue
        info, created = added
        for folder, what in ((gt_dir, "ground truth"), (lab_dir, "labels")):
            if folder is None or not folder.is_dir() or (what == "labels" and not created):
                continue  # (re-importing a dataset must not stack its label masks twice)
            mask_path = _find(folder, stem, (".png", ".PNG"))
            if mask_path is not None and _allowed(mask_path, roots):
                _voc_mask(ctx, info, mask_path, what, mapping, zero_is_unlabelled, rb)
    return rb.build()


def _voc_folders(
    base: Path, labels_dir: str | os.PathLike | None, roots: list[Path] | None
) -> tuple[Path, Path, Path | None]:
    """JPEGImages/, SegmentationClass/ and the labels folder (given, or labels/ when present), checked."""
    if roots is not None and not _allowed(base, roots):
        raise ValidationError("only folders inside the server's import folders can be imported")
    images_dir = base / "JPEGImages"
    if not images_dir.is_dir():
        raise ValidationError(
            f"{base}: no JPEGImages folder; a VOC-layout dataset has JPEGImages/, "
            "SegmentationClass/ and optionally ImageSets/Segmentation/{train,val}.txt"
        )
    lab_dir: Path | None = None
    if labels_dir is not None:
        lab_dir = Path(labels_dir) if Path(labels_dir).is_absolute() else base / labels_dir
        if roots is not None and not _allowed(lab_dir, roots):
            raise ValidationError("the labels folder must be inside the server's import folders")
        if not lab_dir.is_dir():
            raise ValidationError(f"{lab_dir}: labels folder not found")
    elif (base / "labels").is_dir():
        lab_dir = base / "labels"
    return images_dir, base / "SegmentationClass", lab_dir


def _voc_image(
    ctx: Ctx,
    project_id: int,
    images_dir: Path,
    stem: str,
    split: dict[str, str],
    roots: list[Path] | None,
    rb: _ReportBuilder,
) -> tuple[ImageInfo, bool] | None:
    """Import one listed image (its split too); None when it was refused (the report says why)."""
    name = sanitize_filename(stem)
    if stem != name or "/" in stem:
        rb.failed.append((name, "unsafe name in the ImageSets list; skipped"))
        return None
    path = _find(images_dir, stem, (".jpg", ".jpeg", ".JPG", ".JPEG", ".png", ".PNG"))
    if path is not None and not _allowed(path, roots):
        rb.failed.append((name, "links outside the import folders; not read"))
        return None
    if path is None:
        rb.failed.append((name, "listed in ImageSets but not found in JPEGImages"))
        return None
    data = _read_file(path, rb)
    added = (
        None
        if data is None
        else _add_one(ctx, project_id, path.name, data, rb, split.get(stem, "unassigned"))
    )
    if added is not None and stem in split and added[0].split != split[stem]:
        set_split(ctx, added[0].id, split[stem])
    return added


def _voc_mask(
    ctx: Ctx,
    info: ImageInfo,
    mask_path: Path,
    what: str,
    mapping: dict,
    zero_is_unlabelled: bool,
    rb: _ReportBuilder,
) -> None:
    """Store one mask as the image's ground truth or as imported labels; a bad mask goes into the report."""
    try:
        mask = _read_mask(mask_path, (info.height, info.width), what)
        if what == "ground truth":
            label_store.set_ground_truth(ctx, info.id, mask, f"voc:{mask_path.name}", mapping)
            rb.ground_truths += 1
            return
        if zero_is_unlabelled:  # napari / ilastik: 0 = unlabelled, k = class k - 1
            if (mask == 255).any():
                raise ValidationError("value 255 in a mask read with 0 = unlabelled (classes are 1..254)")
            mask = np.where(mask == 0, 255, mask - 1).astype(np.uint8)
        if (mask != 255).any():
            label_store.add_mask(ctx, info.id, mask, "import", f"voc:{mask_path.name}", mapping)
            rb.annotations += 1
    except (LabelError, StorageError) as exc:
        rb.failed.append((f"{sanitize_filename(mask_path.name)} ({what})", str(exc)))
