"""Images to patch tokens, and the ONE mapping between the patch grid and image pixels.

The grid of h x w patch tokens covers the whole original image (H x W). A pixel's feature (or logit) is the
bilinear interpolation of the tokens, exactly as `F.interpolate(tokens, size=(H, W), mode="bilinear",
align_corners=False)` computes it. Everything that maps between patches and pixels goes through here:
- `_axis_weights` is the rule itself (PyTorch's source-index formula); `PatchFeatures.corner_indices` gives each
  labelled pixel's 4 tokens and weights from it (by per-axis tables of the rule): the trainer's gather
  (core.train, core.mixing) uses those;
- `interp_matrix` / `upsample_rows` apply it to whole images in bands (prediction, PCA views), and
  `upsample_logits` is the same rule on batched tensors with autograd (the literal Eq. 1, the SGD protocol,
  the ONNX graph);
- `pixel_cells` / `cell_span` say which patch a pixel lies in (labelled share per patch, region boxes, the
  K-means views);
- the browser's overlay (webapp/static/canvas.js, `axis`) re-implements `_axis_weights` in JavaScript, and a
  browser test checks it against `predict`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.backbone import Backbone
from core.config import (  # noqa: F401 (re-exported)
    FEATURE_VERSION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    FeatureConfig,
    InputRecipe,
)


@dataclass(frozen=True)
class PatchFeatures:
    """Patch tokens of one image and the sizes that tie them to its pixels."""

    tokens: torch.Tensor  # [C, h, w] float32 (float16 when read from the cache, upcast on use)
    resized_size: tuple[int, int]  # (h*p, w*p): the pixels the backbone saw (p: its patch size)
    original_size: tuple[int, int]  # (H, W) of the image the labels and predictions live on

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.tokens.shape[1]), int(self.tokens.shape[2])

    @property
    def dim(self) -> int:
        return int(self.tokens.shape[0])

    def flat_tokens(self) -> torch.Tensor:
        """[h*w, C] float32, row-major over the grid (the index used by `corner_indices`)."""
        return self.tokens.float().reshape(self.dim, -1).T

    def corner_indices(self, ys: np.ndarray, xs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """For pixels (ys, xs) of the original image: the 4 flat token indices and 4 bilinear weights
        ([N, 4] each) whose weighted sum is the upsampled feature at that pixel."""
        h, w = self.grid
        H, W = self.original_size
        ys, xs = np.asarray(ys), np.asarray(xs)
        for name, v, n in (("row", ys, H), ("column", xs, W)):
            if v.size and (int(v.min()) < 0 or int(v.max()) >= n):
                raise IndexError(f"pixel {name} out of range 0..{n - 1}")
        row_idx, row_w = _corner_table(h, H, w, rows=True)
        col_idx, col_w = _corner_table(w, W, 1, rows=False)
        return torch.from_numpy(row_idx[ys] + col_idx[xs]), torch.from_numpy(row_w[ys] * col_w[xs])

    def sample(self, ys: np.ndarray, xs: np.ndarray) -> torch.Tensor:
        """Interpolated features [N, C] at pixels (ys, xs) of the original image."""
        idx, wts = self.corner_indices(ys, xs)
        flat = self.flat_tokens()
        return (flat[idx] * wts.unsqueeze(-1)).sum(1)


@dataclass(frozen=True)
class TokenMoments:
    """Sums over patch tokens from which a set's mean and std follow: the ONE feature standardisation (the
    head's mean/std buffers), for the fast trainer (per image, cached between fits) and the SGD protocol."""

    s1: torch.Tensor  # [C] float64 sum
    s2: torch.Tensor  # [C] float64 sum of squares
    n: int  # tokens

    @classmethod
    def of(cls, tokens: torch.Tensor) -> TokenMoments:
        """tokens: [C, N] float32. Sums in float32 (a few thousand terms), totals in float64; the sum of
        squares as a squared norm (one pass, no [C, N] temporary)."""
        s2 = torch.linalg.vector_norm(tokens.float(), dim=1).double().square()
        return cls(tokens.float().sum(1).double(), s2, int(tokens.shape[1]))

    def __add__(self, other: TokenMoments) -> TokenMoments:
        return TokenMoments(self.s1 + other.s1, self.s2 + other.s2, self.n + other.n)

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 [C] mean and (population) std."""
        mean = self.s1 / self.n
        return mean.float(), (self.s2 / self.n - mean**2).clamp(min=0).sqrt().float()


def _axis_weights(dst: np.ndarray, n_in: int, n_out: int):
    """PyTorch's bilinear source index rule (align_corners=False, output size given): for output
    coordinate d the source is (d + 0.5) * n_in / n_out - 0.5, clamped at 0 below, with the upper
    neighbour clamped to the last cell. Returns (i0, i1, w0, w1): int64 indices, float32 weights.
    (numpy: on the few pixels of a stroke, torch's per-operation overhead was most of the cost.)"""
    if dst.size and (int(dst.min()) < 0 or int(dst.max()) >= n_out):
        raise IndexError(f"pixel coordinate out of range 0..{n_out - 1}")
    src = np.maximum((dst.astype(np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    lam1 = (src - i0).astype(np.float32)
    return i0, i1, np.float32(1.0) - lam1, lam1


@functools.lru_cache(maxsize=64)
def _corner_table(n_in: int, n_out: int, stride: int, rows: bool) -> tuple[np.ndarray, np.ndarray]:
    """`_axis_weights` for every output coordinate of one axis, laid out by corner (top-left, top-right,
    bottom-left, bottom-right): [n_out, 4] flat-index parts (the token index times `stride`) and weights.
    A pixel's 4 indices are then its row's part plus its column's, and its weights their product: a lookup
    instead of a dozen numpy calls per image, which was a fifth of a small fit's gather."""
    i0, i1, w0, w1 = _axis_weights(np.arange(n_out), n_in, n_out)
    if rows:  # corners (y0, y0, y1, y1)
        idx, wts = np.stack([i0, i0, i1, i1], 1) * stride, np.stack([w0, w0, w1, w1], 1)
    else:  # a column: corners (x0, x1, x0, x1)
        idx, wts = np.stack([i0, i1, i0, i1], 1) * stride, np.stack([w0, w1, w0, w1], 1)
    idx.flags.writeable = wts.flags.writeable = False  # shared between calls
    return idx, wts


def interp_matrix(n_in: int, n_out: int, rows: slice | None = None) -> torch.Tensor:
    """[n_out, n_in] matrix M with M @ v == bilinear 1-D upsampling of v (same rule as `_axis_weights`)."""
    dst = np.arange(n_out)[rows] if rows is not None else np.arange(n_out)
    i0, i1, w0, w1 = _axis_weights(dst, n_in, n_out)
    m = np.zeros((dst.size, n_in), dtype=np.float32)
    r = np.arange(dst.size)
    np.add.at(m, (r, i0), w0)
    np.add.at(m, (r, i1), w1)
    return torch.from_numpy(m)


def upsample_logits(grid_values: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """[B, K, h, w] -> [B, K, H, W] by the same bilinear rule, differentiable (training on full-resolution
    logits, the ONNX export: there `size` is a symbolic torch.Size, which int() would freeze to the traced
    size); `upsample_rows` is the banded form for prediction."""
    return F.interpolate(grid_values, size=tuple(size), mode="bilinear", align_corners=False)


def upsample_rows(grid_values: torch.Tensor, out_size: tuple[int, int], rows: slice) -> torch.Tensor:
    """Bilinear upsampling of [K, h, w] to the rows `rows` of an [K, H, W] image, computed separably so
    memory is bounded by the row band, not the whole image."""
    _, h, w = grid_values.shape
    H, W = out_size
    my = interp_matrix(h, H, rows)  # [r, h]
    mx = interp_matrix(w, W)  # [W, w]
    return torch.einsum("rh,khw,Ww->krW", my, grid_values.float(), mx)


def pixel_cells(n_pixels: int, n_cells: int) -> np.ndarray:
    """Along one axis, the patch cell each pixel lies in: the cell whose span holds the pixel's centre in
    the interpolation's coordinates, floor((d + 0.5) * n_cells / n_pixels) (the nearest token of
    `_axis_weights`). Counting labelled pixels per patch and boxes around patches use this."""
    return np.minimum(((np.arange(n_pixels) + 0.5) * (n_cells / n_pixels)).astype(np.int64), n_cells - 1)


def cell_span(c0: int, c1: int, n_cells: int, n_pixels: int) -> tuple[int, int]:
    """The pixels [p0, p1) whose cell (`pixel_cells`) is in [c0, c1)."""
    return int(np.ceil(c0 * n_pixels / n_cells - 0.5)), int(np.ceil(c1 * n_pixels / n_cells - 0.5))


def resized_size_for(size: tuple[int, int], config: FeatureConfig | int, patch: int) -> tuple[int, int]:
    """(H, W) -> backbone input size (h*p, w*p) for the token grid `config.token_grid` picks (an int: a
    fixed long side, as before scales existed)."""
    cfg = FeatureConfig(long_side=config) if isinstance(config, int) else config
    h, w = cfg.token_grid(size, patch)
    return h * patch, w * patch


def preprocess(rgb: np.ndarray, config: FeatureConfig | int, recipe: InputRecipe) -> torch.Tensor:
    """HxWx3 uint8 RGB (orientation already applied by core.imageio) -> [3, h*p, w*p] normalised for a
    backbone's `recipe` (its spec's `input`).

    The same tensor as Meta's eval recipe (torchvision Resize(bicubic) on the PIL image, ToTensor,
    Normalize): PIL's full bicubic filter, no `reducing_gap` shortcut, which changes large photos."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(
            f"expected an HxWx3 uint8 RGB array, got {rgb.shape} {rgb.dtype}; use core.imageio.load_rgb"
        )
    rh, rw = resized_size_for(rgb.shape[:2], config, recipe.patch)
    img = Image.fromarray(rgb).resize((rw, rh), Image.Resampling.BICUBIC)
    return normalise(torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1), recipe)


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Token offsets of the tiles along one axis of n tokens: the fewest tiles that overlap by at least
    `overlap`, spread evenly from one end to the other; one tile when the axis fits."""
    if n <= tile:
        return [0]
    k = math.ceil((n - overlap) / (tile - overlap))
    return [round(i * (n - tile) / (k - 1)) for i in range(k)]


def _ramp(n: int, start: int, size: int, overlap: int) -> torch.Tensor:
    """A tile's blending weight along one axis: rising over the overlap from a neighbour's side, flat 1 at
    the image's own border, so weights sum to a smooth partition across every seam."""
    i = torch.arange(size, dtype=torch.float32)
    w = torch.ones(size)
    if overlap:
        if start > 0:
            w = torch.minimum(w, (i + 1) / (overlap + 1))
        if start + size < n:
            w = torch.minimum(w, (size - i) / (overlap + 1))
    return w


def normalise(x: torch.Tensor, recipe: InputRecipe) -> torch.Tensor:
    """The ONE input normalisation: RGB [3, H, W] in 0..1 -> (x - mean) / std of the backbone's recipe."""
    return (x - torch.tensor(recipe.mean).view(3, 1, 1)) / torch.tensor(recipe.std).view(3, 1, 1)


class FeatureExtractor:
    """Runs a frozen backbone on images; batches images that share an input size."""

    def __init__(self, backbone: Backbone, config: FeatureConfig = FeatureConfig()):
        self.backbone = backbone
        self.config = config

    @property
    def identity(self) -> str:
        """What the features depend on besides the pixels (part of the cache key)."""
        c = self.config
        size = (  # a fixed long side keys as it always did: caches made before scales stay valid
            f"long_side={c.long_side}"
            if c.scale is None
            else f"scale={c.resolution}|max_tokens={c.max_tokens}|tile={c.tile}/{c.overlap}"
        )
        return f"{self.backbone.spec.name}|{self.backbone.weights_id}|{size}|features=v{FEATURE_VERSION}"

    def extract(self, rgb: np.ndarray) -> PatchFeatures:
        return self.extract_many([rgb])[0]

    def extract_many(
        self, images: Sequence[np.ndarray], progress: Callable[[int], object] | None = None
    ) -> list[PatchFeatures]:
        """Features for many images, batched by input size; an image whose grid is larger than a tile is
        extracted in tiles (`extract_tiled`). `progress`, if given, is called with the number of images
        finished after each batch (a tqdm.update or gr.Progress adapter)."""
        cfg, recipe = self.config, self.backbone.spec.input
        out: list[PatchFeatures | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, rgb in enumerate(images):
            h, w = cfg.token_grid(rgb.shape[:2], recipe.patch)
            if cfg.scale is not None and max(h, w) > cfg.tile:
                out[i] = self.extract_tiled(rgb)
                if progress is not None:
                    progress(1)
            else:
                groups.setdefault((h, w), []).append(i)
        for idxs in groups.values():
            for start in range(0, len(idxs), cfg.batch_size):
                chunk = idxs[start : start + cfg.batch_size]
                batch = torch.stack([preprocess(images[i], cfg, recipe) for i in chunk])
                tokens = self.backbone.patch_tokens(batch).cpu()
                for i, t in zip(chunk, tokens, strict=True):
                    out[i] = PatchFeatures(
                        tokens=t.contiguous(),
                        resized_size=(int(batch.shape[2]), int(batch.shape[3])),
                        original_size=(int(images[i].shape[0]), int(images[i].shape[1])),
                    )
                if progress is not None:
                    progress(len(chunk))
        return out  # type: ignore[return-value]

    def extract_tiled(self, rgb: np.ndarray) -> PatchFeatures:
        """One image's grid from overlapping tiles of `tile` tokens (each a forward at the size the backbone
        was trained at), blended with weights that ramp across each overlap, so tokens change smoothly over
        a seam instead of jumping. Memory: the resized image, the [C, h, w] result and one batch of tiles."""
        cfg, p = self.config, self.backbone.spec.patch_size
        x = preprocess(rgb, cfg, self.backbone.spec.input)  # [3, h*p, w*p]
        h, w = x.shape[1] // p, x.shape[2] // p
        ty, tx = min(cfg.tile, h), min(cfg.tile, w)
        boxes = [(y, x0) for y in tile_starts(h, ty, cfg.overlap) for x0 in tile_starts(w, tx, cfg.overlap)]
        acc: torch.Tensor | None = None
        weight = torch.zeros(h, w)
        for b0 in range(0, len(boxes), cfg.batch_size):
            chunk = boxes[b0 : b0 + cfg.batch_size]
            batch = torch.stack([x[:, y * p : (y + ty) * p, x0 * p : (x0 + tx) * p] for y, x0 in chunk])
            tokens = self.backbone.patch_tokens(batch).float().cpu()
            if acc is None:
                acc = torch.zeros(tokens.shape[1], h, w)
            for (y, x0), t in zip(chunk, tokens, strict=True):
                wt = _ramp(h, y, ty, cfg.overlap)[:, None] * _ramp(w, x0, tx, cfg.overlap)[None, :]
                acc[:, y : y + ty, x0 : x0 + tx] += t * wt
                weight[y : y + ty, x0 : x0 + tx] += wt
        assert acc is not None
        return PatchFeatures(
            tokens=(acc / weight).contiguous(),
            resized_size=(int(x.shape[1]), int(x.shape[2])),
            original_size=(int(rgb.shape[0]), int(rgb.shape[1])),
        )
