"""Prediction at full image resolution: label map, confidence and entropy per pixel.

The head runs on the patch grid; its logits are upsampled bilinearly (the same mapping training used) in
bands of rows, so memory stays bounded for 60-megapixel images. Given the image, the class probabilities
then follow its edges (core.edges, the one boundary rule), band by band too.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from core.cache import FeatureStore
from core.edges import EdgeConfig, follow
from core.errors import InputError
from core.features import PatchFeatures, upsample_rows
from core.head import LinearHead
from core.imageio import resize_rgb

BAND_BYTES = 64 * 2**20  # working memory per band of rows


@dataclass(frozen=True)
class Prediction:
    labels: np.ndarray  # [H, W] uint8 class index of the highest probability
    confidence: np.ndarray  # [H, W] float32 probability of that class
    entropy: np.ndarray  # [H, W] float32 entropy of the class distribution, divided by log(K) (0..1)

    @property
    def uncertainty(self) -> float:
        """One number per image for sorting: mean normalised entropy."""
        return float(self.entropy.mean())


@torch.inference_mode()
def patch_logits(head: LinearHead, feats: PatchFeatures) -> torch.Tensor:
    """[K, h, w] class scores on the patch grid. `predict` upsamples exactly these (bilinear,
    align_corners=False, `upsample_rows`) before the argmax, so a client that receives them (a few KB)
    and applies the same rule draws the same boundary as the full-resolution prediction."""
    if head.dim != feats.dim:
        raise InputError(
            f"head expects {head.dim}-d features but the image has {feats.dim}-d: the head was trained "
            "with another backbone; retrain it or pick the matching backbone"
        )
    return head(feats.tokens.float().unsqueeze(0))[0]


def patch_probabilities(head: LinearHead, feats: PatchFeatures) -> torch.Tensor:
    """[K, h, w] class probabilities on the patch grid (cheap; for uncertainty maps and scores)."""
    return patch_logits(head, feats).softmax(0)


@torch.inference_mode()
def predict(
    head: LinearHead,
    feats: PatchFeatures,
    band_bytes: int = BAND_BYTES,
    guide: np.ndarray | None = None,
    edges: EdgeConfig = EdgeConfig(),
) -> Prediction:
    """Labels, confidence and entropy at `feats.original_size`. `guide`: the image (RGB uint8) at that
    size, whose edges the class boundaries then follow (core.edges); None: the bilinear rule alone."""
    logits = patch_logits(head, feats)  # [K, h, w]
    k = logits.shape[0]
    H, W = feats.original_size
    labels = np.empty((H, W), np.uint8)
    conf = np.empty((H, W), np.float32)
    ent = np.empty((H, W), np.float32)
    rows = max(1, band_bytes // (4 * (4 if guide is None else 16) * k * W))  # [K, rows, W] temporaries
    norm = math.log(k) if k > 1 else 1.0
    refined = None
    if guide is not None:
        if guide.shape[:2] != (H, W):
            raise InputError(f"the guide image is {guide.shape[1]}x{guide.shape[0]}, the prediction {W}x{H}")
        bilinear = lambda rs: upsample_rows(logits, (H, W), rs).softmax(0)  # noqa: E731
        refined = follow(bilinear, guide, feats.grid, edges, rows)
    for r0 in range(0, H, rows):
        band = slice(r0, min(H, r0 + rows))
        if refined is None:
            logp = upsample_rows(logits, (H, W), band).log_softmax(0)
        else:
            logp = refined.rows(band).clamp(min=1e-12).log()
        p = logp.exp()
        best, arg = p.max(0)
        labels[band] = arg.numpy().astype(np.uint8)
        conf[band] = best.numpy()
        ent[band] = (-(p * logp).sum(0) / norm).clamp(min=0).numpy()
    return Prediction(labels=labels, confidence=conf, entropy=ent)


class Predictor:
    """Set an image once, then predict many times with whichever head is current (segment-anything's
    SamPredictor): the features are the expensive part, a head is cheap. The one prediction path of the
    CLI, the engine (the app and the API) and the exports. The image comes as RGB, whose features the
    store fetches or computes, or as features computed elsewhere (a batched extraction, the engine's cache)."""

    def __init__(self, store: FeatureStore | None = None, edges: EdgeConfig | None = EdgeConfig()):
        """`edges`: how predictions follow the image's edges when it is known (None: bilinear only)."""
        self.store = store
        self.edges = edges
        self._features: PatchFeatures | None = None
        self._image: np.ndarray | None = None

    def set_image(self, rgb: np.ndarray, image_hash: str | None = None) -> PatchFeatures:
        if self.store is None:
            raise RuntimeError(
                "this Predictor has no FeatureStore: build it as Predictor(store) to set RGB "
                "images, or pass features with set_features"
            )
        self._features = self.store.get(rgb, image_hash)
        self._image = rgb
        return self._features

    def set_features(self, features: PatchFeatures, image: np.ndarray | None = None) -> None:
        """Features computed elsewhere; `image` (RGB, at any size: it is resized to each prediction's)
        lets predictions follow its edges."""
        self._features = features
        self._image = image

    @property
    def features(self) -> PatchFeatures:
        if self._features is None:
            raise RuntimeError(
                "no image set: call predictor.set_image(rgb) or set_features(...) before predict()"
            )
        return self._features

    def predict(self, head: LinearHead, size: tuple[int, int] | None = None) -> Prediction:
        """Labels, confidence and entropy at the image's size, or at `size` (H, W; e.g. a display size:
        the same patch grid mapped onto fewer pixels, so it costs less)."""
        feats = self.features
        if size is not None and tuple(size) != tuple(feats.original_size):
            feats = dataclasses.replace(feats, original_size=(int(size[0]), int(size[1])))
        guide = None
        if self.edges is not None and self._image is not None:  # the image at the output size
            guide = resize_rgb(self._image, feats.original_size)
        return predict(head, feats, guide=guide, edges=self.edges or EdgeConfig())

    def patch_logits(self, head: LinearHead) -> torch.Tensor:
        """[K, h, w] scores on the patch grid (what a client upsamples by the same rule; see patch_logits)."""
        return patch_logits(head, self.features)
