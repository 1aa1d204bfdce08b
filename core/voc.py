"""A dataset in PASCAL VOC layout, the paper's setting.

DATA/JPEGImages/<id>.jpg                  images
DATA/SegmentationClass/<id>.png           ground truth (palette PNG, 255 = ignore)
DATA/ImageSets/Segmentation/{train,val}.txt
DATA/classes.txt                          optional: one class name per line (index = line number)
LABELS/<id>.png                           imperfect labels (palette PNG, 255 = unlabelled)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.imageio import IMAGE_SUFFIXES, load_rgb
from core.labels import VOC_CLASSES, LabelError, check_label_values, read_label_png


class DatasetError(UserError, ValueError):
    pass


_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def read_class_file(path: Path) -> list[tuple[str, str | None]]:
    """classes.txt: one class per line in index order, optionally followed by its colour as '#rrggbb' (what
    probeseg's VOC export writes); empty lines and lines starting with '//' are skipped."""
    out: list[tuple[str, str | None]] = []
    for raw in path.read_text(encoding="utf-8-sig").splitlines():
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        head, _, last = line.rpartition(" ")
        if head.strip() and _COLOUR.fullmatch(last):
            out.append((head.strip(), last.lower()))
        else:
            out.append((line, None))
    return out


@dataclass(frozen=True)
class VocDataset:
    root: Path  # the folder holding JPEGImages/, SegmentationClass/, ImageSets/
    classes: tuple[str, ...]  # class names by index

    @classmethod
    def open(cls, root: str | os.PathLike) -> VocDataset:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: dataset folder not found")
        if not (root / "JPEGImages").is_dir():
            raise DatasetError(f"{root}: no JPEGImages/ folder; expected the PASCAL VOC layout")
        names_file = root / "classes.txt"
        if names_file.is_file():
            names = tuple(name for name, _ in read_class_file(names_file))
            if len(names) < 2:
                raise DatasetError(f"{names_file}: needs at least two class names, one per line")
            if len(names) > 255:
                raise DatasetError(f"{names_file}: at most 255 classes (index 255 means unlabelled)")
        else:
            names = VOC_CLASSES
        return cls(root, names)

    def ids(self, split: str) -> list[str]:
        """Image ids of a split from ImageSets/Segmentation/<split>.txt."""
        path = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not path.is_file():
            raise DatasetError(f"{path}: split file not found (have: {', '.join(self.splits()) or 'none'})")
        ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
        if not ids:
            raise DatasetError(f"{path}: the split is empty")
        return ids

    def splits(self) -> list[str]:
        folder = self.root / "ImageSets" / "Segmentation"
        return sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []

    def image_path(self, image_id: str) -> Path:
        for suffix in (".jpg", *IMAGE_SUFFIXES):
            path = self.root / "JPEGImages" / f"{image_id}{suffix}"
            if path.is_file():
                return path
        raise DatasetError(
            f"{self.root / 'JPEGImages' / image_id}.jpg: image listed in the split but missing"
        )

    def image(self, image_id: str) -> np.ndarray:
        return load_rgb(self.image_path(image_id))

    def ground_truth(self, image_id: str, size: tuple[int, int] | None = None) -> np.ndarray:
        return self.read_labels(self.root / "SegmentationClass" / f"{image_id}.png", size)

    def labels(
        self, labels_dir: str | os.PathLike, image_id: str, size: tuple[int, int] | None = None
    ) -> np.ndarray:
        return self.read_labels(Path(labels_dir) / f"{image_id}.png", size)

    def read_labels(self, path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
        """Read a label PNG, checking class indices and (if given) that it matches the image size (H, W)."""
        if not path.is_file():
            raise DatasetError(f"{path}: label file missing")
        try:
            labels = read_label_png(path)
            check_label_values(labels, len(self.classes), str(path))
        except LabelError as exc:
            raise DatasetError(str(exc)) from None
        if size is not None and labels.shape != tuple(size):
            raise DatasetError(
                f"{path}: label map is {labels.shape[1]}x{labels.shape[0]} but its image is {size[1]}x{size[0]} "
                "(width x height); labels must have the image's size"
            )
        return labels
