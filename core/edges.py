"""Image-guided boundaries: the ONE rule that turns patch-grid class scores into pixel scores that follow
the image's edges.

The head's scores live on the token grid; bilinear upsampling (core.features) puts every boundary somewhere
inside a token, as smooth as the grid is coarse. A guided filter (He, Sun and Tang, "Guided Image Filtering",
ECCV 2010) of the bilinear class probabilities, with the image's colour as the guide, makes each class's
probability locally an affine function of the image's R, G and B: where the image has an edge inside a token,
the probabilities step with it. The colour form (a 3x3 covariance per window) follows edges between regions
of equal brightness that luminance alone misses: measured on bench part `resolution`'s scenes, boundary F1
at 3 px 0.80 -> 0.91 at 1x, 0.84 -> 0.93 at 4x (2 scenes, radius 1.5 tokens; 2 tokens then chosen by the same
measurement). It is training-free (Eq. 1 is unchanged), costs a few box filters per class and
runs at any output size: `predict` at the image's size, the canvas's overlay at its display size (the same
function on fewer pixels). The box radius follows the token size at that output size, so a boundary can
move to an image edge up to about a token away; where tokens are big at the output, a second pass at an
eighth of that radius then snaps it to the nearest edge (`EdgeConfig.fine`, `follow`: the rule as a whole).

Memory is bounded: the coefficients live on a coarse grid, and `Guided.rows` applies them to any band of
rows, equal to the whole-image result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.features import _axis_weights  # (the one bilinear rule)


@dataclass(frozen=True)
class EdgeConfig:
    """How far and how readily the class scores follow the image."""

    radius_tokens: float = 2.0  # box radius in tokens (pixels: this times the token size at the output)
    eps: float = 1e-3  # colour variance (0..1 a channel) below which a window is treated as flat
    # a second, finer pass over the first one's result, its radius this fraction of the first's (0: none):
    # a wide window moves a boundary to an edge up to a token or two away, but on big tokens (a 36-px token
    # of a 2640-px photo: a 72-px window) it holds several regions and the local linear fit rounds corners;
    # the fine pass snaps to the nearest edge. Measured on bench part `resolution`'s scenes (boundary F1 at
    # 3 px, one pass -> two): 0.961 -> 0.977 at 1x, 0.956 -> 0.979 at 4x, 0.858 -> 0.946 at 8x
    fine: float = 0.125
    # ... where that radius is at least this many output pixels (tokens of about 20 px and more). Below, one
    # pass is sharp enough (the 1x and 4x figures above: 0.96 with it alone) and the second would only add
    # cost: a 512-px canvas image's final overlay (about 30 ms of the repaint a stroke waits for)
    fine_min_radius: int = 5

    def radius(self, out_size: tuple[int, int], grid: tuple[int, int]) -> int:
        """The box radius in output pixels for a token grid `grid` drawn at `out_size`."""
        px_per_token = max(out_size[0] / grid[0], out_size[1] / grid[1])
        return max(1, round(self.radius_tokens * px_per_token))


def colour_rows(rgb: np.ndarray, rows: slice) -> torch.Tensor:
    """Rows of an [H, W, 3] uint8 image as the guide: [3, len(rows), W] float32 in 0..1."""
    return torch.from_numpy(np.array(rgb[rows], dtype=np.float32)).permute(2, 0, 1) / 255.0  # (a copy)


def box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window around each pixel of [..., H, W], the window clipped to the array
    (the mean of the pixels that exist): two 1-D average pools, the padding left out of each count."""
    shape = x.shape
    h, w = shape[-2:]
    ry, rx = min(r, h - 1), min(r, w - 1)  # a window past both ends of an axis covers the axis
    out = x.reshape(1, -1, h, w)
    if ry > 0:
        out = F.avg_pool2d(out, (2 * ry + 1, 1), 1, (ry, 0), count_include_pad=False)
    if rx > 0:
        out = F.avg_pool2d(out, (1, 2 * rx + 1), 1, (0, rx), count_include_pad=False)
    return out.reshape(shape)


class Guided:
    """He et al.'s guided filter of class probabilities [K, H, W] with the colour image [H, W, 3] (uint8) as
    the guide, in its fast form (He and Sun 2015): the local linear coefficients are fitted once on a grid
    `sub` times coarser (radius r / sub; `sub` r / 4 unless given) and upsampled, then applied to the
    full-resolution image, so edges stay sharp at a fraction of the cost. The probabilities
    (`probs_of_rows(slice)`, e.g. the bilinear upsampling of the patch grid) and the image are read band by
    band to make the coarse grid, and `rows` applies the coefficients to any band of output rows: memory is
    bounded by the band and the coarse grid, the work by one pass over the pixels, and any band equals
    filtering the whole image and cutting it out."""

    def __init__(
        self,
        probs_of_rows: Callable[[slice], torch.Tensor],
        rgb: np.ndarray,
        r: int,
        eps: float,
        band_rows: int = 256,
        sub: int | None = None,
    ):
        self.rgb = rgb
        self.sub = sub = max(1, r // 4) if sub is None else sub
        H = rgb.shape[0]
        step = max(1, band_rows // sub) * sub  # bands of whole coarse cells
        bands = [slice(y, min(H, y + step)) for y in range(0, H, step)]
        p = torch.cat([_pool(probs_of_rows(b), sub) for b in bands], 1)  # [K, h, w]
        i = torch.cat([_pool(colour_rows(rgb, b), sub) for b in bands], 1)  # [3, h, w]
        k, h, w = p.shape
        rs = max(1, round(r / sub))
        mean_i, mean_p = box(i, rs), box(p, rs)
        pairs = torch.stack([i[c] * i[d] for c in range(3) for d in range(3)])
        sigma = (box(pairs, rs).view(3, 3, h, w) - mean_i[:, None] * mean_i[None]).permute(2, 3, 0, 1)
        cross = box((i[None] * p[:, None]).reshape(3 * k, h, w), rs).view(k, 3, h, w)
        cov = (cross - mean_i[None] * mean_p[:, None]).permute(2, 3, 1, 0)  # [h, w, 3, K]
        a = torch.linalg.solve(sigma + eps * torch.eye(3), cov).permute(3, 2, 0, 1)  # [K, 3, h, w]
        b = mean_p - (a * mean_i[None]).sum(1)
        self.k = k
        self.ab = torch.cat([box(a.reshape(3 * k, h, w), rs), box(b, rs)])  # [4K, h, w] on the coarse grid

    def rows(self, rows: slice) -> torch.Tensor:
        """The filtered probabilities of output rows `rows`: [K, len(rows), W], clipped at 0 and
        renormalised (a distribution over the K classes at every pixel)."""
        sub, W = self.sub, self.rgb.shape[1]
        if sub > 1:
            # the coarse grid upsampled at its own scale, as for the whole image: rows by core.features'
            # bilinear rule (only the band's), then columns
            h = self.ab.shape[1]
            i0, i1, w0, w1 = _axis_weights(np.arange(rows.start, rows.stop), h, h * sub)
            band = (
                self.ab[:, i0] * torch.from_numpy(w0)[:, None]
                + self.ab[:, i1] * torch.from_numpy(w1)[:, None]
            )
            ab = F.interpolate(
                band[None],
                scale_factor=(1, sub),
                mode="bilinear",
                align_corners=False,
                recompute_scale_factor=False,
            )[0, :, :, :W]
        else:
            ab = self.ab[:, rows]
        k = self.k
        a = ab[: 3 * k].view(k, 3, *ab.shape[1:])
        q = ((a * colour_rows(self.rgb, rows)[None]).sum(1) + ab[3 * k :]).clamp(min=0)
        return q / q.sum(0, keepdim=True).clamp(min=1e-12)


def follow(
    probs_of_rows: Callable[[slice], torch.Tensor],
    rgb: np.ndarray,
    grid: tuple[int, int],
    edges: EdgeConfig,
    band_rows: int = 256,
) -> Guided:
    """The boundary rule: the bilinear probabilities of a token grid `grid` (read band by band) made to
    follow the edges of `rgb`, the image at the output size: a guided filter at `edges.radius`, then, where
    `edges.fine` gives a radius of at least `edges.fine_min_radius`, a finer one over its result, its
    coefficients on a grid of its radius (3 x 3 cells a window: measured as sharp as finer grids, F1 within
    0.01, at a third of the cost of a grid of a quarter of the radius). `.rows(band)` gives any band of the
    result."""
    r = edges.radius(rgb.shape[:2], grid)
    out = Guided(probs_of_rows, rgb, r, edges.eps, band_rows)
    r2 = round(r * edges.fine)
    if edges.fine > 0 and r2 >= edges.fine_min_radius:
        out = Guided(out.rows, rgb, r2, edges.eps, band_rows, sub=r2)
    return out


def _pool(x: torch.Tensor, sub: int) -> torch.Tensor:
    """[C, H, W] -> the means of sub x sub cells (the last ones as far as the image goes)."""
    return F.avg_pool2d(x[None], sub, ceil_mode=True)[0] if sub > 1 else x


def guided(probs: torch.Tensor, rgb: np.ndarray, r: int, eps: float, sub: int | None = None) -> torch.Tensor:
    """One guided filter of a whole image's probabilities [K, H, W] (see `Guided`)."""
    return Guided(lambda rs: probs[:, rs], rgb, r, eps, sub=sub).rows(slice(0, rgb.shape[0]))
