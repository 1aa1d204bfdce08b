"""Image-guided boundaries: the ONE rule that turns patch-grid class scores into pixel scores that follow
the image's edges.

The head's scores live on the token grid; bilinear upsampling (core.features) puts every boundary somewhere
inside a token, as smooth as the grid is coarse. A guided filter (He, Sun and Tang, "Guided Image Filtering",
ECCV 2010) of the bilinear class probabilities, with the image's luminance as the guide, makes each class's
probability locally an affine function of the image: where the image has an edge inside a token, the
probabilities step with it. It is training-free (Eq. 1 is unchanged), costs a few box filters per class and
runs at any output size: `predict` at the image's size, the canvas's overlay at its display size (the same
function on fewer pixels). The box radius follows the token size at that output size, so a boundary can
move to an image edge up to about a token away.

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

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B


@dataclass(frozen=True)
class EdgeConfig:
    """How far and how readily the class scores follow the image."""

    radius_tokens: float = 1.5  # box radius in tokens (pixels: this times the token size at the output)
    eps: float = 1e-3  # guide variance (luminance in 0..1) below which a window is treated as flat

    def radius(self, out_size: tuple[int, int], grid: tuple[int, int]) -> int:
        """The box radius in output pixels for a token grid `grid` drawn at `out_size`."""
        px_per_token = max(out_size[0] / grid[0], out_size[1] / grid[1])
        return max(1, round(self.radius_tokens * px_per_token))


def luminance(rgb: np.ndarray) -> torch.Tensor:
    """[H, W, 3] uint8 -> [H, W] float32 in 0..1 (the guide)."""
    x = torch.from_numpy(np.array(rgb, dtype=np.float32))  # (a copy: the caller's array may be read-only)
    return (x[..., 0] * LUMA[0] + x[..., 1] * LUMA[1] + x[..., 2] * LUMA[2]) / 255.0


def box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window around each pixel of [..., H, W], the window clipped to the array
    (the mean of the pixels that exist). Cumulative sums along each axis: cost independent of r."""
    out = x
    for dim in (-2, -1):
        n = out.shape[dim]
        c = torch.cumsum(out, dim=dim)
        c = torch.cat([torch.zeros_like(c.narrow(dim, 0, 1)), c], dim=dim)  # c[i] = sum of the first i
        if r >= n:
            hi = c.narrow(dim, n, 1).expand_as(out)
            lo = torch.zeros_like(out)
        else:  # window [max(0, i - r), min(n, i + r + 1)): the cumulative sum clamped at both ends
            hi = torch.cat(
                [c.narrow(dim, r + 1, n - r), c.narrow(dim, n, 1).expand_as(c.narrow(dim, 0, r))], dim
            )
            lo = torch.cat([torch.zeros_like(c.narrow(dim, 0, r)), c.narrow(dim, 0, n - r)], dim)
        idx = torch.arange(n)
        count = ((idx + r + 1).clamp(max=n) - (idx - r).clamp(min=0)).to(out.dtype)
        shape = [1] * out.dim()
        shape[dim] = n
        out = (hi - lo) / count.view(shape)
    return out


class Guided:
    """He et al.'s guided filter of class probabilities [K, H, W] with a guide [H, W], in its fast form (He
    and Sun 2015): the local linear coefficients are fitted once on a grid `sub` times coarser (radius
    r / sub) and upsampled, then applied to the full-resolution guide, so edges stay sharp at a fraction of
    the cost. The probabilities are read band by band (`probs_of_rows(slice)`, e.g. the bilinear upsampling
    of the patch grid) to make the coarse grid, and `rows` applies the coefficients to any band of output
    rows: memory is bounded by the band and the coarse grid, the work by one pass over the pixels, and any
    band equals filtering the whole image and cutting it out."""

    def __init__(
        self,
        probs_of_rows: Callable[[slice], torch.Tensor],
        guide: torch.Tensor,
        r: int,
        eps: float,
        band_rows: int = 256,
    ):
        self.guide = guide
        self.sub = sub = max(1, r // 4)
        H, W = guide.shape
        step = max(1, band_rows // sub) * sub  # bands of whole coarse cells
        small_p = torch.cat(
            [_pool(probs_of_rows(slice(y, min(H, y + step))), sub) for y in range(0, H, step)], 1
        )
        small_i = _pool(guide[None], sub)[0]
        rs = max(1, round(r / sub))
        mean_i = box(small_i, rs)
        var_i = box(small_i * small_i, rs) - mean_i * mean_i
        mean_p = box(small_p, rs)
        cov = box(small_p * small_i, rs) - mean_i * mean_p
        a = cov / (var_i + eps)
        b = mean_p - a * mean_i
        self.k = small_p.shape[0]
        self.ab = torch.cat([box(a, rs), box(b, rs)])  # [2K, h, w] on the coarse grid

    def rows(self, rows: slice) -> torch.Tensor:
        """The filtered probabilities of output rows `rows`: [K, len(rows), W], clipped at 0 and
        renormalised (a distribution over the K classes at every pixel)."""
        sub, W = self.sub, self.guide.shape[1]
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
        q = (ab[:k] * self.guide[rows] + ab[k:]).clamp(min=0)
        return q / q.sum(0, keepdim=True).clamp(min=1e-12)


def _pool(x: torch.Tensor, sub: int) -> torch.Tensor:
    """[C, H, W] -> the means of sub x sub cells (the last ones as far as the image goes)."""
    return F.avg_pool2d(x[None], sub, ceil_mode=True)[0] if sub > 1 else x


def guided(probs: torch.Tensor, guide: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """The guided filter of a whole image's probabilities [K, H, W] (see `Guided`)."""
    return Guided(lambda rs: probs[:, rs], guide, r, eps).rows(slice(0, guide.shape[0]))
