"""Plain, frozen records returned by the storage API. No SQLAlchemy objects ever leave `storage/`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np

from core.head_meta import HeadMeta

Split = Literal["train", "val", "unassigned"]
SPLITS: tuple[str, ...] = ("train", "val", "unassigned")

AnnotationKind = Literal["scribble", "point", "point_remove", "mask", "erase", "undo", "redo"]
EDIT_KINDS: tuple[str, ...] = ("scribble", "point", "point_remove", "mask", "erase")
ANNOTATION_KINDS: tuple[str, ...] = EDIT_KINDS + ("undo", "redo")

DeleteMode = Literal["reassign", "delete_labels"]


@dataclass(frozen=True)
class ProjectInfo:
    id: int
    name: str
    description: str
    settings: dict[str, Any]
    created_at: datetime
    image_count: int = 0
    class_count: int = 0


@dataclass(frozen=True)
class ClassInfo:
    """A label class. `index` is its current position (0..K-1) = the value in label maps; `id` never changes."""

    id: int
    name: str
    colour: str  # '#rrggbb'
    index: int
    project_id: int = 0

    @property
    def rgb(self) -> tuple[int, int, int]:
        return (int(self.colour[1:3], 16), int(self.colour[3:5], 16), int(self.colour[5:7], 16))


@dataclass(frozen=True)
class ClassUsage:
    """How much a class is used; `in_use` decides whether `delete_class` needs a mode."""

    class_id: int
    annotations: int  # annotation versions (any, including undone history) that reference the class
    labelled_pixels: int  # pixels with this class in the current label maps
    ground_truth_images: int  # ground-truth masks that contain the class

    @property
    def in_use(self) -> bool:
        return bool(self.annotations or self.labelled_pixels or self.ground_truth_images)


@dataclass(frozen=True)
class ImageInfo:
    id: int
    project_id: int
    name: str  # sanitised display name
    content_hash: str  # sha256 of the original file bytes (the stored file's identity)
    width: int  # after EXIF orientation
    height: int
    split: str  # train / val / unassigned
    pixel_hash: str = ""  # core.imageio.pixel_hash of the decoded RGB (feature-cache identity)
    format: str = ""  # JPEG, PNG, ...
    file_size: int = 0
    created_at: datetime | None = None
    labelled_pixels: int = 0  # pixels != 255 in the current label map
    label_version: int = 0  # increases with every label change of this image
    has_ground_truth: bool = False
    has_prediction: bool = False
    uncertainty: float | None = None
    stats_updated_at: datetime | None = None


@dataclass(frozen=True)
class AnnotationInfo:
    """One version row of an image's append-only annotation history.

    kind: scribble (whole scribble layer), point, point_remove, mask (dense imported labels), erase,
    undo / redo (target_id = the edit they undid / redid). `active` is True when the edit is part of
    the current labels (not undone, not removed).
    """

    id: int
    image_id: int
    seq: int  # 1, 2, 3 ... per image
    kind: str
    author: str
    created_at: datetime
    class_id: int | None = None  # points
    class_ids: tuple[int, ...] = ()  # classes present in a raster (scribble / mask)
    x: float | None = None
    y: float | None = None
    radius: float | None = None
    source: str = ""
    target_id: int | None = None
    active: bool = False


@dataclass(frozen=True)
class LabelDelta:
    """What an edit changed on an image's label map: the smallest box holding every changed pixel, and the
    map inside it after the edit (current class indices, 255 unlabelled)."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    labels: np.ndarray  # [y1 - y0, x1 - x0] uint8


@dataclass(frozen=True)
class OpResult:
    """The acknowledgement of a committed operation. seq: its place in the image's history (arrival
    order); duplicate: the op_id had been committed before and nothing was applied this time."""

    op_id: str
    seq: int
    duplicate: bool
    applied: bool  # False: the operation changed nothing (undo with nothing to undo, unpoint off any point)
    label_version: int
    # for the edits a client cannot draw by itself (ops.DELTA_KINDS): what changed, in the same transaction
    delta: LabelDelta | None = None


@dataclass(frozen=True)
class PointInfo:
    annotation_id: int
    class_id: int | None
    class_index: int | None  # None when its class was deleted with delete_labels
    x: float
    y: float
    radius: float
    author: str
    created_at: datetime


@dataclass(frozen=True)
class EditState:
    """Undo/redo availability of one image, for enabling the editor's buttons."""

    image_id: int
    version: int  # highest history seq (0 = never edited)
    can_undo: bool
    can_redo: bool


@dataclass(frozen=True)
class HeadInfo:
    id: int
    project_id: int
    weights_sha256: str  # identity of the head's own safetensors bytes
    size_bytes: int
    classes: tuple[ClassInfo, ...]  # class snapshot at save time (head output channel i = classes[i])
    meta: HeadMeta  # the one head record (core.head_meta): backbone, its weights, classes, training
    metrics: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class TrainingRunInfo:
    id: int
    project_id: int
    head_id: int | None
    settings: dict[str, Any]
    seconds: float
    loss: float | None
    metrics: dict[str, Any]
    pixel_counts: dict[str, int]
    labelled_pixels: int  # sum of pixel_counts, for plotting mIoU against labelled pixels
    created_at: datetime


@dataclass(frozen=True)
class ImportReport:
    """What an import did. `failed` pairs a (sanitised) name with a human-readable reason."""

    imported: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # non-image members, hidden files, ...
    image_ids: tuple[int, ...] = ()  # ids of imported and duplicate images, in input order
    classes_added: tuple[str, ...] = ()
    annotations: int = 0  # label PNGs imported as annotations of kind mask
    ground_truths: int = 0
    notes: tuple[str, ...] = ()  # what the import decided for the user (TIFF planes, intensity scaling)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        parts = [
            f"{len(self.imported)} imported",
            f"{len(self.duplicates)} duplicates",
            f"{len(self.failed)} failed",
        ]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        if self.annotations:
            parts.append(f"{self.annotations} label masks")
        if self.ground_truths:
            parts.append(f"{self.ground_truths} ground-truth masks")
        return ", ".join(parts)


@dataclass
class _ReportBuilder:
    imported: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    classes_added: list[str] = field(default_factory=list)
    annotations: int = 0
    ground_truths: int = 0
    notes: list[str] = field(default_factory=list)
    tiffs: list[tuple[str, Callable[[], bytes], str]] = field(
        default_factory=list
    )  # (name, bytes, split): at the end

    def build(self) -> ImportReport:
        return ImportReport(
            tuple(self.imported),
            tuple(self.duplicates),
            tuple(self.failed),
            tuple(self.skipped),
            tuple(self.image_ids),
            tuple(self.classes_added),
            self.annotations,
            self.ground_truths,
            tuple(self.notes),
        )
