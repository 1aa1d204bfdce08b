"""Seeded synthetic data for the benchmarks: textured images with ground truth, sparse labels derived from
the ground truth, and token grids whose class structure follows the ground truth.

Nothing here downloads anything; every array is a function of its seed.

- `make_scene(H, W, K, seed)`: ground truth from K smooth random fields (argmax gives organic regions,
  every class present), and an RGB image where each class has its own colour and oriented stripe texture
  plus pixel noise.
- `scribble_labels` / `point_labels`: labels the way a user gives them: brush strokes (random walks with a
  round brush) kept inside the eroded class regions, or single clicks inside them.
- `synthetic_tokens(gt, dim, ...)`: a [dim, h, w] grid (h, w = the patch grid DINOv2 would give at
  long_side 448). Each token is the area-weighted mix of per-class mean vectors over the pixels it covers,
  plus an image-specific low-rank nuisance, Gaussian noise, then a 3x3 spatial smoothing, so classes are
  linearly separable only up to noise and boundaries blur like real ViT tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from core.features import FeatureConfig, PatchFeatures, resized_size_for
from core.labels import IGNORE

PATCH = 14


@dataclass(frozen=True)
class Scene:
    rgb: np.ndarray  # [H, W, 3] uint8
    gt: np.ndarray  # [H, W] uint8 class indices, every pixel labelled


def _smooth_fields(k: int, size: tuple[int, int], rng: np.random.Generator, cells: int = 5) -> torch.Tensor:
    coarse = torch.from_numpy(rng.standard_normal((1, k, cells, cells)).astype(np.float32))
    return F.interpolate(coarse, size=size, mode="bicubic", align_corners=False)[0]


def make_gt(height: int, width: int, num_classes: int, seed: int) -> np.ndarray:
    """[H, W] uint8 ground truth with organic regions; every class covers at least ~2% of the image."""
    rng = np.random.default_rng(seed)
    fields = _smooth_fields(num_classes, (height, width), rng)
    # Nudge each class so that none vanishes (a class absent from the GT makes mIoU ill-defined).
    gt = fields.argmax(0)
    for _ in range(8):
        frac = torch.bincount(gt.reshape(-1), minlength=num_classes).float() / gt.numel()
        if float(frac.min()) >= 0.02:
            break
        fields += (0.5 * (frac < 0.05).float() - 0.1 * (frac > 0.4).float()).view(-1, 1, 1)
        gt = fields.argmax(0)
    return gt.numpy().astype(np.uint8)


def textured_image(gt: np.ndarray, num_classes: int, seed: int, scale: float = 1.0) -> np.ndarray:
    """RGB uint8 image: per class a base colour and an oriented stripe texture, plus pixel noise. `scale`: the
    same scene drawn that many times larger (stripes as wide relative to the regions; noise per pixel)."""
    rng = np.random.default_rng(seed + 7919)
    h, w = gt.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(num_classes):
        mask = gt == c
        if not mask.any():
            continue
        base = rng.uniform(40, 215, size=3).astype(np.float32)
        theta = rng.uniform(0, np.pi)
        freq = rng.uniform(0.05, 0.4)
        phase = (np.cos(theta) * xx[mask] + np.sin(theta) * yy[mask]) / scale
        stripe = np.sin(freq * phase)[:, None] * rng.uniform(10, 40, size=3).astype(np.float32)
        img[mask] = base + stripe
    img += rng.normal(0, 8, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_scene(height: int, width: int, num_classes: int, seed: int, scale: float = 1.0) -> Scene:
    """A scene of organic regions; with `scale`, the same scene (regions and textures) drawn that many times
    larger at height x width (the regions come from smooth fields, so they are the same at any size)."""
    gt = make_gt(height, width, num_classes, seed)
    return Scene(rgb=textured_image(gt, num_classes, seed, scale), gt=gt)


def _eroded(gt: np.ndarray, c: int, margin: int) -> np.ndarray:
    mask = gt == c
    if margin <= 0:
        return mask
    eroded = ndimage.binary_erosion(mask, iterations=margin)
    return eroded if eroded.any() else mask


def point_labels(gt: np.ndarray, num_points: int, seed: int, margin: int = 4) -> np.ndarray:
    """Single-pixel clicks spread over the classes present (at least one per class), inside the regions."""
    rng = np.random.default_rng(seed)
    labels = np.full(gt.shape, IGNORE, np.uint8)
    classes = np.unique(gt)
    per = np.full(classes.size, num_points // classes.size)
    per[: num_points % classes.size] += 1
    for c, n in zip(classes, per, strict=True):
        ys, xs = np.nonzero(_eroded(gt, int(c), margin))
        pick = rng.choice(ys.size, size=min(int(max(n, 1)), ys.size), replace=False)
        labels[ys[pick], xs[pick]] = c
    return labels


def scribble_centres(
    gt: np.ndarray, strokes_per_class: int, seed: int, steps: int = 80, margin: int = 3
) -> np.ndarray:
    """Centre lines of brush strokes: per class, random walks with momentum (2 px steps) that stop when they
    leave the class region eroded by `margin` pixels (users scribble inside objects). [H, W] bool."""
    rng = np.random.default_rng(seed)
    h, w = gt.shape
    centres = np.zeros(gt.shape, bool)
    for c in np.unique(gt):
        inside = _eroded(gt, int(c), margin)
        ys, xs = np.nonzero(inside)
        for _ in range(strokes_per_class):
            k = rng.integers(ys.size)
            y, x = float(ys[k]), float(xs[k])
            angle = rng.uniform(0, 2 * np.pi)
            for _ in range(steps):
                iy, ix = int(round(y)), int(round(x))
                if not (0 <= iy < h and 0 <= ix < w) or not inside[iy, ix]:
                    break
                centres[iy, ix] = True
                angle += rng.normal(0, 0.35)
                y += 2.0 * np.sin(angle)
                x += 2.0 * np.cos(angle)
    return centres


def scribble_labels(
    gt: np.ndarray, count: int, seed: int, strokes_per_class: int = 3, margin: int = 3
) -> np.ndarray:
    """Exactly `count` labelled pixels (at most the image) as brush strokes: the pixels nearest to the stroke
    centre lines, inside the eroded class regions first, i.e. a round brush whose radius grows with the
    budget (1-px lines for small budgets, thick strokes filling the regions' interiors for large ones).
    Every labelled pixel carries its true class."""
    rng = np.random.default_rng(seed)
    count = min(int(count), gt.size)
    centres = scribble_centres(gt, strokes_per_class, seed, margin=margin)
    dist = ndimage.distance_transform_edt(~centres)
    inside = np.zeros(gt.shape, bool)
    for c in np.unique(gt):
        inside |= _eroded(gt, int(c), margin)
    # Order: inside pixels by distance to a stroke, then boundary pixels; random tie-breaks.
    key = dist + np.where(inside, 0.0, 1e6) + rng.uniform(0, 0.5, size=gt.shape)
    chosen = np.argpartition(key.reshape(-1), count - 1)[:count] if count < gt.size else np.arange(gt.size)
    labels = np.full(gt.size, IGNORE, np.uint8)
    labels[chosen] = gt.reshape(-1)[chosen]
    return labels.reshape(gt.shape)


def labels_with_count(gt_list: list[np.ndarray], total: int, seed: int) -> list[np.ndarray]:
    """Sparse labels over several images with exactly `total` labelled pixels in all: clicks below ~500
    pixels per image, brush strokes above (see `scribble_labels`)."""
    n_img = len(gt_list)
    per_image = np.full(n_img, total // n_img)
    per_image[: total % n_img] += 1
    out = []
    for i, (gt, want) in enumerate(zip(gt_list, per_image, strict=True)):
        if want <= 500:
            out.append(point_labels(gt, int(want), seed + i))
        else:
            out.append(scribble_labels(gt, int(want), seed + i))
    return out


# -- token grids ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenModel:
    """Class means and noise scales shared by all images of one benchmark dataset."""

    class_means: torch.Tensor  # [K, C]
    nuisance_basis: torch.Tensor  # [R, C] directions of image-specific variation unrelated to classes
    noise: float
    nuisance: float

    @classmethod
    def create(
        cls,
        num_classes: int,
        dim: int,
        seed: int,
        separation: float = 2.0,
        noise: float = 1.0,
        nuisance: float = 1.0,
    ) -> TokenModel:
        g = torch.Generator().manual_seed(seed)
        # Scaled so the distance between two class means is ~separation whatever the dimension; the noise is
        # per channel, so along the direction separating two classes it is ~noise (then smoothed 3x3).
        means = torch.randn(num_classes, dim, generator=g) * (separation / (2 * dim) ** 0.5)
        basis = torch.randn(8, dim, generator=g) / dim**0.5
        return cls(means, basis, noise, nuisance)

    @property
    def dim(self) -> int:
        return int(self.class_means.shape[1])


def token_grid_size(size: tuple[int, int], long_side: FeatureConfig | int = 448) -> tuple[int, int]:
    rh, rw = resized_size_for(size, long_side, PATCH)
    return rh // PATCH, rw // PATCH


def synthetic_tokens(
    gt: np.ndarray, model: TokenModel, seed: int, long_side: FeatureConfig | int = 448
) -> PatchFeatures:
    """PatchFeatures for an image with ground truth `gt`, tokens drawn from `model` (see module doc), on the
    grid a long side or a FeatureConfig gives."""
    H, W = gt.shape
    h, w = token_grid_size((H, W), long_side)
    k = model.class_means.shape[0]
    g = torch.Generator().manual_seed(seed)
    onehot = F.one_hot(torch.from_numpy(gt.astype(np.int64)), k).permute(2, 0, 1).float().unsqueeze(0)
    frac = F.adaptive_avg_pool2d(onehot, (h, w))[0]  # [K, h, w] class fraction under each token
    tokens = torch.einsum("khw,kc->chw", frac, model.class_means)
    coeff = torch.randn(model.nuisance_basis.shape[0], generator=g) * model.nuisance
    tokens += (coeff @ model.nuisance_basis).view(-1, 1, 1)
    tokens += torch.randn(tokens.shape, generator=g) * model.noise
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    kernel = kernel.expand(model.dim, 1, 3, 3).contiguous()
    tokens = F.conv2d(F.pad(tokens.unsqueeze(0), (1, 1, 1, 1), mode="replicate"), kernel, groups=model.dim)[0]
    return PatchFeatures(
        tokens=tokens.contiguous(), resized_size=(h * PATCH, w * PATCH), original_size=(H, W)
    )


# -- VOC-like scenes: a dominant background, a few objects per image, classes made of appearance modes ------


@dataclass(frozen=True)
class ModeModel:
    """Classes as unions of appearance modes, as real ViT features are (background: sky, grass, wall, road
    ...; an object: its parts and looks), with skewed mode frequencies (some looks are rare) and a few modes
    that sit close to another class's (confusers: a dark coat next to a dark wall). `tokens` (a TokenModel)
    holds one mean per mode; `mode_class[m]` is mode m's class."""

    tokens: TokenModel
    mode_class: np.ndarray  # [M] class of each mode
    mode_weight: np.ndarray  # [M] how common each mode is within its class (sums to 1 per class)

    @classmethod
    def create(
        cls,
        num_classes: int,
        dim: int,
        seed: int,
        background_modes: int = 6,
        object_modes: int = 3,
        separation: float = 6.0,
        spread: float = 4.0,
        confusers: int = 2,
    ) -> ModeModel:
        rng = np.random.default_rng(seed)
        base = TokenModel.create(num_classes, dim, seed, separation=separation)
        means, owner, weight = [], [], []
        for c in range(num_classes):
            m = background_modes if c == 0 else object_modes
            offsets = rng.standard_normal((m, dim)) * (spread / (2 * dim) ** 0.5)
            means.append(base.class_means[c].numpy()[None] + offsets)
            owner += [c] * m
            zipf = 1.0 / np.arange(1, m + 1)  # the first look is common, the last rare
            weight.append(zipf / zipf.sum())
        mode_means = np.concatenate(means).astype(np.float32)
        owner_arr = np.array(owner)
        # Confusers: an object's rarest mode moved most of the way towards a background mode.
        for j, c in enumerate(rng.permutation(np.arange(1, num_classes))[:confusers]):
            obj = int(np.flatnonzero(owner_arr == c)[-1])
            bg = int(np.flatnonzero(owner_arr == 0)[j % background_modes])
            mode_means[obj] = 0.65 * mode_means[bg] + 0.35 * mode_means[obj]
        tokens = TokenModel(torch.from_numpy(mode_means), base.nuisance_basis, base.noise, base.nuisance)
        return cls(tokens, owner_arr, np.concatenate(weight))


def make_voc_like(
    size: int, model: ModeModel, seed: int, long_side: int = 448
) -> tuple[np.ndarray, PatchFeatures]:
    """(ground truth, tokens) of a VOC-like scene: background over most of the image and one to three
    objects (blobs of 6-20 % of the image each, object classes drawn at random), each region made of
    spatially coherent patches of its class's modes drawn by their frequencies."""
    rng = np.random.default_rng(seed)
    classes = int(model.mode_class.max()) + 1
    gt = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for c in rng.choice(np.arange(1, classes), size=int(rng.integers(1, 4)), replace=False):
        field = _smooth_fields(1, (size, size), rng, cells=4)[0].numpy()
        cy, cx = rng.uniform(0.2, 0.8, 2)
        blob = field - 6 * ((yy - cy) ** 2 + (xx - cx) ** 2)
        gt[blob >= np.quantile(blob, 1 - rng.uniform(0.06, 0.2))] = c
    modes = np.zeros_like(gt)
    for c in range(classes):
        ids = np.flatnonzero(model.mode_class == c)
        where = gt == c
        if not where.any():
            continue
        fields = _smooth_fields(ids.size, (size, size), rng, cells=6).numpy()
        # log-frequency priors: a Gumbel-argmax over smooth fields picks mode m with about its weight
        pick = (fields + np.log(model.mode_weight[ids])[:, None, None] * 1.5).argmax(0)
        modes[where] = ids[pick[where]]
    return gt, synthetic_tokens(modes, model.tokens, seed, long_side=long_side)
