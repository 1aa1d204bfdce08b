"""Where labels are needed most: ONE rule for the app's suggestions, its "most uncertain" order and the
simulated annotator's `uncertainty` strategy.

Need of a patch = the head's normalised entropy there x the share of its pixels still unlabelled (a patch
the user already labelled needs nothing, however unsure the head is: without that, "most uncertain" keeps
returning to images that were just labelled). Regions are the connected groups of patches whose need is in
the top `1 - quantile` of the image (and at least `min_need`); a region's score is its summed need (a large
unsure region outranks a speck), and an image's score is its best region's. Ranking regions across the
project, at most `per_image` from each image, spreads the suggestions over images.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from core.features import PatchFeatures, cell_span, pixel_cells
from core.head import LinearHead
from core.labels import IGNORE
from core.predict import patch_probabilities

QUANTILE = 0.85
MIN_NEED = 0.2


@dataclass(frozen=True)
class Region:
    """A region worth labelling: a box in image pixels, its summed need, and its neediest pixel."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    score: float
    peak: tuple[int, int]  # (y, x): the centre pixel of the neediest patch
    key: object = None  # which image (the caller's id), set by `suggest`


def patch_entropy(head: LinearHead, feats: PatchFeatures) -> np.ndarray:
    """[h, w] normalised entropy (0..1) of the class distribution on the patch grid."""
    p = patch_probabilities(head, feats).clamp_min(1e-12)
    k = p.shape[0]
    ent = -(p * p.log()).sum(0) / (np.log(k) if k > 1 else 1.0)
    return ent.clamp(0, 1).numpy().astype(np.float32)


def unlabelled_share(labels: np.ndarray | None, grid: tuple[int, int]) -> np.ndarray:
    """[h, w] share of each patch's pixels that are unlabelled (1 everywhere without labels)."""
    h, w = grid
    if labels is None:
        return np.ones(grid, np.float32)
    H, W = labels.shape
    cells = pixel_cells(H, h)[:, None] * w + pixel_cells(W, w)[None, :]
    total = np.bincount(cells.reshape(-1), minlength=h * w)
    free = np.bincount(cells.reshape(-1), weights=(labels == IGNORE).reshape(-1), minlength=h * w)
    return (free / np.maximum(total, 1)).reshape(grid).astype(np.float32)


def label_need(head: LinearHead, feats: PatchFeatures, labels: np.ndarray | None) -> np.ndarray:
    """[h, w] need of each patch (see the module docstring)."""
    return patch_entropy(head, feats) * unlabelled_share(labels, feats.grid)


def regions(need: np.ndarray, image_size: tuple[int, int], n: int = 3, quantile: float = QUANTILE,
            min_need: float = MIN_NEED) -> list[Region]:
    """The `n` regions of an image with the highest summed need, best first."""
    grid = np.asarray(need, np.float32)
    if grid.size == 0 or float(grid.max()) < min_need:
        return []
    mask = grid >= max(min_need, float(np.quantile(grid, quantile)))
    comps, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    h, w = grid.shape
    H, W = image_size
    scores = ndimage.sum(grid, comps, index=np.arange(1, count + 1))
    out = []
    for label, sl in enumerate(ndimage.find_objects(comps), start=1):
        (r0, r1), (c0, c1) = (sl[0].start, sl[0].stop), (sl[1].start, sl[1].stop)
        inside = np.where(comps == label, grid, -1.0)
        py, px = np.unravel_index(int(inside.argmax()), grid.shape)
        y0, y1 = cell_span(r0, r1, h, H)
        x0, x1 = cell_span(c0, c1, w, W)
        cy, cx = cell_span(py, py + 1, h, H), cell_span(px, px + 1, w, W)
        peak = (min(H - 1, (cy[0] + cy[1]) // 2), min(W - 1, (cx[0] + cx[1]) // 2))
        out.append(Region((max(0, x0), max(0, y0), min(W, x1), min(H, y1)), float(scores[label - 1]), peak))
    out.sort(key=lambda r: -r.score)
    return out[:n]


def image_score(need: np.ndarray, image_size: tuple[int, int]) -> float:
    """One number per image for sorting and "next most uncertain": its best region's score (0: none)."""
    best = regions(need, image_size, n=1)
    return best[0].score if best else 0.0


def suggest(images: Iterable[tuple[object, np.ndarray, tuple[int, int]]], n: int = 5,
            per_image: int = 1) -> list[Region]:
    """The `n` best regions across images given as (key, need grid, image size), at most `per_image` each."""
    found: list[Region] = []
    for key, need, size in images:
        found += [Region(r.box, r.score, r.peak, key) for r in regions(need, size, n=per_image)]
    found.sort(key=lambda r: -r.score)
    return found[:n]


def rank(scores: Sequence[tuple[object, float]]) -> list[object]:
    """Keys by score, highest first (ties keep the given order)."""
    return [k for k, _ in sorted(scores, key=lambda ks: -ks[1])]
