"""Importing a COCO JSON file: its images from a folder and their masks as labels or ground truth."""

from __future__ import annotations

import os
from pathlib import Path

from . import annotations as label_store
from .context import Ctx
from .convert import parse_colour
from .errors import ImportLimitError, StorageError, ValidationError
from .files import sanitize_filename
from .imports import Roots, _add_one, _allowed, _check_project, _ensure_classes, _read_file, _resolved
from .records import ImportReport, _ReportBuilder

# ------------------------------------------------------------------ COCO
MAX_COCO_JSON_BYTES = 2 * 1024**3


def _coco_document(path: Path) -> dict:
    import json

    if not path.is_file():
        raise ValidationError(f"{path.name}: COCO file not found")
    if path.stat().st_size > MAX_COCO_JSON_BYTES:
        raise ImportLimitError(f"{path.name}: larger than {MAX_COCO_JSON_BYTES >> 30} GiB")
    try:
        doc = json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValidationError(f"{path.name}: not a JSON file ({exc})") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "categories")):
        raise ValidationError(f"{path.name}: not a COCO file (it needs 'images' and 'categories' lists)")
    try:
        cats = sorted((int(c["id"]), str(c["name"]).strip(), c.get("color")) for c in doc["categories"])
        images = [
            (int(im["id"]), str(im["file_name"]), int(im["height"]), int(im["width"])) for im in doc["images"]
        ]
        anns = [a for a in doc.get("annotations", []) if isinstance(a, dict)]
        for a in anns:
            int(a["image_id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(
            f"{path.name}: a category, image or annotation lacks a field COCO requires ({exc})"
        ) from None
    return {"categories": cats, "images": images, "annotations": anns}


def _colour_or_none(value: object) -> str | None:
    try:
        return parse_colour(value) if isinstance(value, str) else None
    except ValidationError:
        return None


def import_coco(
    ctx: Ctx,
    project_id: int,
    coco_file: str | os.PathLike,
    images_dir: str | os.PathLike,
    as_ground_truth: bool = False,
    fill_background: bool = False,
    roots: Roots = None,
) -> ImportReport:
    """Images listed in a COCO JSON file (found under `images_dir` by their file_name) with their masks
    (RLE or polygons) as labels, or as ground truth. Categories become classes (matched by name).
    Pixels of no annotation stay unlabelled, or become the background class with `fill_background`.
    With `roots`, every file read must resolve inside them; a file_name never leads outside `images_dir`."""
    from core import coco

    _check_project(ctx, project_id)
    roots = None if roots is None else _resolved(roots)
    path, folder = Path(coco_file), Path(images_dir)
    if roots is not None and not (_allowed(path, roots) and _allowed(folder, roots)):
        raise ValidationError("only files inside the server's import folders can be imported")
    if not folder.is_dir():
        raise ValidationError(f"{folder}: images folder not found")
    doc = _coco_document(path)
    names = [(name, _colour_or_none(col)) for _, name, col in doc["categories"]]
    background = next((i for i, (n, _) in enumerate(names) if coco.is_background(n)), None)
    if fill_background and background is None:
        names.append(("background", None))
        background = len(names) - 1
    rb = _ReportBuilder()
    mapping = _ensure_classes(ctx, project_id, names, rb)  # local index -> class id
    local = {cat_id: i for i, (cat_id, _, _) in enumerate(doc["categories"])}  # category id -> local index
    by_image: dict[int, list[dict]] = {}
    for ann in doc["annotations"]:
        by_image.setdefault(int(ann["image_id"]), []).append(ann)
    base = folder.resolve()
    for coco_id, file_name, height, width in doc["images"]:
        shown = sanitize_filename(file_name)
        candidate = (base / file_name).resolve()
        if not candidate.is_relative_to(base) or not _allowed(candidate, roots):
            rb.failed.append((shown, "its file_name leads outside the images folder; not read"))
            continue
        if not candidate.is_file():
            rb.failed.append((shown, f"listed in {path.name} but not found in the images folder"))
            continue
        data = _read_file(candidate, rb)
        added = None if data is None else _add_one(ctx, project_id, candidate.name, data, rb)
        if added is None:
            continue
        info, created = added
        if (info.height, info.width) != (height, width):
            rb.failed.append(
                (
                    shown,
                    f"the file is {info.width}x{info.height} but {path.name} says {width}x{height}; "
                    "its masks were not imported",
                )
            )
            continue
        if not as_ground_truth and not created:
            continue  # re-importing must not stack the same masks twice
        try:
            labels = coco.label_map(
                by_image.get(coco_id, []),
                height,
                width,
                local,
                fill=background if fill_background and background is not None else 255,
            )
            if as_ground_truth:
                label_store.set_ground_truth(ctx, info.id, labels, f"coco:{path.name}", mapping)
                rb.ground_truths += 1
            elif (labels != 255).any():
                label_store.add_mask(ctx, info.id, labels, "import", f"coco:{path.name}", mapping)
                rb.annotations += 1
        except (coco.CocoError, StorageError) as exc:
            rb.failed.append((f"{shown} (masks)", str(exc)))
    return rb.build()
