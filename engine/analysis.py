"""Pure functions over features, heads and label maps: class mapping, mapped predictions, refinement
(where labels are needed is core.active).

No storage, no threads: the engine feeds these, tests call them directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from core.edges import EdgeConfig
from core.errors import InputError
from core.features import PatchFeatures
from core.head import LinearHead
from core.head_meta import HeadMeta
from core.labels import IGNORE
from core.predict import Prediction, Predictor
from storage import ClassInfo


@dataclass(frozen=True)
class HeadState:
    """A stored head ready to use, and which class (by id, stable across renames and reorders) each of its
    output channels predicts."""

    head_id: int
    head: LinearHead
    meta: HeadMeta  # the head's record (core.head_meta), as stored; an interim head: the fit's, untrained yet
    generation: int = 0  # the training request (Trainer generation, this process) it came from; 0 = older
    interim: bool = False  # an iterate of a fit still running (displayed, never stored)

    @property
    def class_ids(self) -> tuple[int, ...]:
        return tuple(self.meta.class_ids)

    def lut(self, classes: list[ClassInfo]) -> np.ndarray:
        """256-entry map: head channel -> current class index (IGNORE for a class deleted since)."""
        index_of = {c.id: c.index for c in classes}
        lut = np.full(256, IGNORE, np.uint8)
        for ch, cid in enumerate(self.class_ids):
            lut[ch] = index_of.get(cid, IGNORE)
        return lut


def predict_mapped(
    state: HeadState,
    feats: PatchFeatures,
    lut: np.ndarray,
    size: tuple[int, int] | None = None,
    image: np.ndarray | None = None,
    edges: EdgeConfig | None = None,
) -> Prediction:
    """Prediction whose labels are current class indices (IGNORE where the predicted class was deleted);
    with `image` (RGB, any size) and `edges`, its boundaries follow the image's edges (core.edges)."""
    predictor = Predictor(edges=edges)
    predictor.set_features(feats, image)
    pred = predictor.predict(state.head, size)
    return dataclasses.replace(pred, labels=lut[pred.labels])


def refine_layer(
    scribbles: np.ndarray, pred: Prediction, threshold: float, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """Turn confident predictions into labels: returns the new scribble layer and how many pixels were
    added. Existing scribbles win (the user's own strokes are never overwritten); only pixels with
    confidence >= threshold, of allowed classes (a boolean array over class indices), are filled."""
    if scribbles.shape != pred.labels.shape:
        raise ValueError(
            f"scribble layer {scribbles.shape} and prediction {pred.labels.shape} differ in size"
        )
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"confidence threshold must be within 0..1, got {threshold}")
    fill = (scribbles == IGNORE) & (pred.confidence >= threshold) & (pred.labels != IGNORE)
    if allowed is not None:
        ok = np.zeros(256, bool)
        ok[: len(allowed)] = allowed
        fill &= ok[pred.labels]
    out = scribbles.copy()
    out[fill] = pred.labels[fill]
    return out, int(fill.sum())


@torch.inference_mode()
def tokens_numpy(feats: PatchFeatures) -> np.ndarray:
    return feats.tokens.float().numpy()
