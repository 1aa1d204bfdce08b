"""Segmentation metrics: confusion matrices (rows = ground truth, cols = prediction) and IoU scores."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import InputError
from core.labels import IGNORE


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """K x K int64 confusion matrix of one label map pair; pixels where gt == 255 are ignored."""
    if not 1 <= num_classes <= IGNORE:
        raise ValueError(f"num_classes must be within 1..{IGNORE}, got {num_classes}")
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"shape mismatch: ground truth is {gt.shape} but prediction is {pred.shape}")
    for name, arr in (("ground truth", gt), ("prediction", pred)):
        if arr.dtype.kind not in "ui":
            raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    keep = gt != IGNORE
    # Widen before gt*K+pred: uint8 arithmetic would overflow for K > 15.
    g = gt[keep].astype(np.int64, copy=False)
    p = pred[keep].astype(np.int64, copy=False)
    if g.size and (g.min() < 0 or g.max() >= num_classes):
        bad = g[(g < 0) | (g >= num_classes)][0]
        raise InputError(f"ground truth value {bad} is not a class index 0..{num_classes - 1} nor {IGNORE}")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        bad = p[(p < 0) | (p >= num_classes)][0]
        raise ValueError(f"prediction value {bad} is not a class index 0..{num_classes - 1}")
    counts = np.bincount(g * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64, copy=False)


class ConfusionMatrix:
    """Accumulates confusion counts over many images (or over workers, via merge)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, gt: np.ndarray, pred: np.ndarray) -> ConfusionMatrix:
        self.matrix += confusion_matrix(gt, pred, self.num_classes)
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge confusion matrices of {self.num_classes} and {other.num_classes} classes"
            )
        self.matrix += other.matrix
        return self

    def scores(self) -> SegmentationScores:
        return SegmentationScores.from_confusion(self.matrix)


def class_iou(tp: np.ndarray, gt_total: np.ndarray, pred_total: np.ndarray) -> tuple[np.ndarray, float]:
    """The ONE IoU: per class tp / (gt + pred - tp), and their mean over the classes present in the ground
    truth (VOC's rule). A class without ground-truth pixels has no IoU (NaN): it is left out of the mean, not
    counted as 0 for the pixels predicted as it, so a class the evaluated images do not show (added, say, for
    images not scored) does not pull the mean down. NaN mean when no class has ground truth."""
    tp, gt_total, pred_total = (np.asarray(v, dtype=np.float64) for v in (tp, gt_total, pred_total))
    union = gt_total + pred_total - tp
    present = gt_total > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(present, tp / np.where(union > 0, union, 1), np.nan)
    return iou, float(iou[present].mean()) if present.any() else math.nan


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x  # strict JSON has no NaN


@dataclass(frozen=True)
class SegmentationScores:
    """Scores of one confusion matrix; NaN marks a quantity that is undefined (nothing to measure)."""

    per_class_iou: tuple[float, ...]  # NaN where the class has no ground-truth pixels
    miou: float  # mean over the classes with ground-truth pixels (VOC's rule)
    pixel_accuracy: float
    mean_class_accuracy: float  # mean over classes present in the ground truth

    @classmethod
    def from_confusion(cls, matrix: np.ndarray) -> SegmentationScores:
        cm = np.asarray(matrix, dtype=np.float64)
        if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
            raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
        tp, gt_total, pred_total = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
        iou, miou = class_iou(tp, gt_total, pred_total)
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = np.where(gt_total > 0, tp / gt_total, np.nan)
        total = cm.sum()
        # Guard the means explicitly: np.nanmean of an all-NaN vector warns.
        return cls(
            per_class_iou=tuple(float(v) for v in iou),
            miou=miou,
            pixel_accuracy=float(tp.sum() / total) if total > 0 else math.nan,
            mean_class_accuracy=float(acc[gt_total > 0].mean()) if (gt_total > 0).any() else math.nan,
        )

    def _names(self, class_names: Sequence[str] | None) -> list[str]:
        if class_names is None:
            return [str(i) for i in range(len(self.per_class_iou))]
        if len(class_names) != len(self.per_class_iou):
            raise ValueError(f"{len(class_names)} class names given for {len(self.per_class_iou)} classes")
        return list(class_names)

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict:
        """JSON-ready dict; undefined values (NaN) become None."""
        names = self._names(class_names)
        return {
            "miou": _nan_to_none(self.miou),
            "pixel_accuracy": _nan_to_none(self.pixel_accuracy),
            "mean_class_accuracy": _nan_to_none(self.mean_class_accuracy),
            "per_class_iou": {n: _nan_to_none(v) for n, v in zip(names, self.per_class_iou, strict=True)},
            # classes left out of the mean: no ground-truth pixels in what was scored
            "no_ground_truth": [n for n, v in zip(names, self.per_class_iou, strict=True) if math.isnan(v)],
        }

    def format_table(self, class_names: Sequence[str] | None = None) -> str:
        """Aligned text table of per-class IoU in %, then mIoU and pixel accuracy."""
        names = self._names(class_names)
        width = max([len(n) for n in names] + [len("pixel accuracy"), len("class")])

        def pct(x: float) -> str:
            return f"{'-':>7}" if math.isnan(x) else f"{100 * x:7.2f}"

        lines = [f"{'class':<{width}}  {'IoU %':>7}", "-" * (width + 9)]
        lines += [f"{n:<{width}}  {pct(v)}" for n, v in zip(names, self.per_class_iou, strict=True)]
        lines += [
            "-" * (width + 9),
            f"{'mIoU':<{width}}  {pct(self.miou)}",
            f"{'pixel accuracy':<{width}}  {pct(self.pixel_accuracy)}",
        ]
        return "\n".join(lines)
