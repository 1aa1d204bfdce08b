"""Pure functions over features, heads and label maps: class mapping, uncertainty, hot spots, refinement.

No storage, no threads: the engine feeds these, tests call them directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from skimage.measure import label as connected_components
from skimage.measure import regionprops

from core.features import PatchFeatures
from core.head import LinearHead
from core.labels import IGNORE
from core.predict import Prediction, patch_probabilities, predict
from storage import ClassInfo


@dataclass(frozen=True)
class HeadState:
    """A stored head ready to use, and which class (by id, stable across renames and reorders) each of its
    output channels predicts."""

    head_id: int
    head: LinearHead
    class_ids: tuple[int, ...]
    backbone: str
    weights_id: str
    created: float = 0.0
    generation: int = 0  # the training request (Trainer generation, this process) it came from; 0 = older
    interim: bool = False  # an iterate of a fit still running (displayed, never stored)

    def lut(self, classes: list[ClassInfo]) -> np.ndarray:
        """256-entry map: head channel -> current class index (IGNORE for a class deleted since)."""
        index_of = {c.id: c.index for c in classes}
        lut = np.full(256, IGNORE, np.uint8)
        for ch, cid in enumerate(self.class_ids):
            lut[ch] = index_of.get(cid, IGNORE)
        return lut


@dataclass(frozen=True)
class Hotspot:
    """A region where the head is unsure: a box in image pixels and how much uncertainty it holds."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    score: float  # summed normalised entropy of its patches


def at_size(feats: PatchFeatures, size: tuple[int, int] | None) -> PatchFeatures:
    """The same tokens mapped onto another pixel size (predictions at display size are cheap)."""
    if size is None or tuple(size) == tuple(feats.original_size):
        return feats
    return dataclasses.replace(feats, original_size=(int(size[0]), int(size[1])))


def predict_mapped(state: HeadState, feats: PatchFeatures, lut: np.ndarray,
                   size: tuple[int, int] | None = None) -> Prediction:
    """Prediction whose labels are current class indices (IGNORE where the predicted class was deleted)."""
    pred = predict(state.head, at_size(feats, size))
    return dataclasses.replace(pred, labels=lut[pred.labels])


def patch_entropy(head: LinearHead, feats: PatchFeatures) -> np.ndarray:
    """[h, w] normalised entropy (0..1) of the class distribution on the patch grid."""
    p = patch_probabilities(head, feats).clamp_min(1e-12)
    k = p.shape[0]
    ent = -(p * p.log()).sum(0) / (np.log(k) if k > 1 else 1.0)
    return ent.clamp(0, 1).numpy().astype(np.float32)


def uncertainty_score(head: LinearHead, feats: PatchFeatures) -> float:
    """One number per image for sorting ("label the most uncertain image next"): mean patch entropy."""
    return float(patch_entropy(head, feats).mean())


def hotspots(entropy_grid: np.ndarray, image_size: tuple[int, int], n: int = 3, quantile: float = 0.85,
             min_entropy: float = 0.2) -> list[Hotspot]:
    """The `n` connected regions of high patch entropy holding the most uncertainty, as image-pixel boxes:
    where a few strokes would help the head most."""
    grid = np.asarray(entropy_grid, np.float32)
    if grid.size == 0 or float(grid.max()) < min_entropy:
        return []
    thresh = max(min_entropy, float(np.quantile(grid, quantile)))
    mask = grid >= thresh
    comps = connected_components(mask, connectivity=2)
    h, w = grid.shape
    H, W = image_size
    spots = []
    for region in regionprops(comps, intensity_image=grid):
        r0, c0, r1, c1 = region.bbox
        score = float(grid[comps == region.label].sum())
        box = (int(c0 * W / w), int(r0 * H / h), int(np.ceil(c1 * W / w)), int(np.ceil(r1 * H / h)))
        spots.append(Hotspot(box, score))
    spots.sort(key=lambda s: -s.score)
    return spots[:n]


def refine_layer(scribbles: np.ndarray, pred: Prediction, threshold: float,
                 allowed: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Turn confident predictions into labels: returns the new scribble layer and how many pixels were
    added. Existing scribbles win (the user's own strokes are never overwritten); only pixels with
    confidence >= threshold, of allowed classes (a boolean array over class indices), are filled."""
    if scribbles.shape != pred.labels.shape:
        raise ValueError(f"scribble layer {scribbles.shape} and prediction {pred.labels.shape} differ in size")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"confidence threshold must be within 0..1, got {threshold}")
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
