"""COCO instance/semantic JSON for label maps, through pycocotools (the reference implementation).

A label map (HxW class indices, 255 = unlabelled) becomes one annotation per class present: a compressed RLE
mask, with pycocotools' area and bbox. Category id = class index + 1 (COCO ids start at 1). Background is not
an object category unless asked (`include_background`): COCO tools score categories as objects.
Reading accepts what COCO files hold: compressed or uncompressed RLE, and polygons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from core.errors import UserError
from core.labels import IGNORE


class CocoError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class CocoClass:
    index: int  # class index in the label maps
    name: str
    colour: str | None = None  # '#rrggbb'
    extra: Mapping[str, Any] | None = None  # more category fields (e.g. probeseg_class_id)


def encode(mask: np.ndarray) -> dict[str, Any]:
    """{'size': [h, w], 'counts': str}: the compressed RLE of an HxW boolean mask."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """Any COCO segmentation (polygons, uncompressed or compressed RLE) as one compressed RLE."""
    try:
        if isinstance(segmentation, list):  # polygons [[x0, y0, x1, y1, ...], ...]
            if not segmentation:
                return mask_utils.encode(np.zeros((height, width), np.uint8, order="F"))
            return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            return mask_utils.frPyObjects(segmentation, *segmentation["size"])
        if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str | bytes):
            counts = segmentation["counts"]
            return {
                "size": list(segmentation["size"]),
                "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
            }
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise CocoError(f"unreadable segmentation ({exc})") from None
    raise CocoError("a segmentation must be a list of polygons or an RLE dict with 'size' and 'counts'")


def decode(segmentation: Any, height: int | None = None, width: int | None = None) -> np.ndarray:
    """HxW bool mask of a segmentation. Polygons need the image's height and width; an RLE carries them."""
    if isinstance(segmentation, list):
        if height is None or width is None:
            raise CocoError("polygon segmentations need the image's height and width")
        rle = _rle(segmentation, height, width)
    elif isinstance(segmentation, dict) and len(segmentation.get("size") or ()) == 2:
        rle = _rle(segmentation, *segmentation["size"])
    else:
        raise CocoError("a segmentation must be a list of polygons or an RLE dict with 'size' and 'counts'")
    if height is not None and [int(v) for v in rle["size"]] != [height, width]:
        raise CocoError(f"mask is {rle['size'][1]}x{rle['size'][0]} but the image is {width}x{height}")
    return mask_utils.decode(rle).astype(bool)


def area(segmentation: dict[str, Any]) -> int:
    return int(mask_utils.area(_rle(segmentation, *segmentation["size"])))


def bbox(segmentation: dict[str, Any]) -> list[float]:
    """[x, y, width, height] (COCO convention), zeros for an empty mask."""
    return [float(v) for v in mask_utils.toBbox(_rle(segmentation, *segmentation["size"]))]


def is_background(name: str) -> bool:
    return name.strip().lower() in ("background", "_background_", "bg")


class CocoBuilder:
    """Collects images and their label maps (one at a time, so a large prediction run keeps only RLEs in
    memory) into a COCO document: one annotation per image and class present; unlabelled pixels have none."""

    def __init__(
        self, classes: Sequence[CocoClass], info: Mapping[str, Any], include_background: bool = False
    ):
        self.classes = [
            c for c in classes if c.index != IGNORE and (include_background or not is_background(c.name))
        ]
        self.info = dict(info)
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add(self, image: Mapping[str, Any], labels: np.ndarray) -> None:
        """`image`: at least id, file_name, width, height (more fields are kept); `labels`: HxW class indices."""
        if tuple(labels.shape) != (int(image["height"]), int(image["width"])):
            raise CocoError(
                f"{image['file_name']}: label map is {labels.shape[1]}x{labels.shape[0]} but the image "
                f"is {image['width']}x{image['height']}"
            )
        self.images.append(dict(image))
        present = np.bincount(np.asarray(labels, np.uint8).reshape(-1), minlength=256)
        for c in self.classes:
            if present[c.index]:
                seg = encode(labels == c.index)
                self.annotations.append(
                    {
                        "id": len(self.annotations) + 1,
                        "image_id": int(image["id"]),
                        "category_id": c.index + 1,
                        "segmentation": seg,
                        "area": area(seg),
                        "bbox": bbox(seg),
                        "iscrowd": 0,
                    }
                )

    def document(self) -> dict[str, Any]:
        return {
            "info": self.info,
            "licenses": [],
            "images": self.images,
            "annotations": self.annotations,
            "categories": [
                {
                    "id": c.index + 1,
                    "name": c.name,
                    "supercategory": "",
                    **({"color": c.colour} if c.colour else {}),
                    **dict(c.extra or {}),
                }
                for c in self.classes
            ],
        }


def label_map(
    anns: Sequence[Mapping[str, Any]],
    height: int,
    width: int,
    class_of: Mapping[int, int],
    fill: int = IGNORE,
) -> np.ndarray:
    """HxW uint8 label map of one image's annotations: category id -> class index by `class_of`; larger
    objects first, so a smaller one lying on top of another keeps its pixels. Pixels of no annotation: `fill`."""
    out = np.full((height, width), fill, np.uint8)
    masks = []
    for ann in anns:
        cat = int(ann.get("category_id", -1))
        if cat not in class_of:
            raise CocoError(f"annotation {ann.get('id')}: category {cat} is not in the file's categories")
        masks.append((class_of[cat], decode(ann.get("segmentation"), height, width)))
    for index, m in sorted(masks, key=lambda cm: -int(cm[1].sum())):
        out[m] = index
    return out
