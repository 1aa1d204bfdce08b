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

Memory is bounded: `refine_rows` computes a band of rows from a margin around it (box filters are local),
and equals the whole-image result exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

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


def guided(probs: torch.Tensor, guide: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """He et al.'s guided filter of each channel of probs [K, H, W] with guide [H, W], in its fast form (He
    and Sun 2015): the local linear coefficients are fitted on a grid `sub` times coarser (radius r / sub) and
    upsampled, then applied to the full-resolution guide, so edges stay sharp at a fraction of the cost.
    Clipped at 0 and renormalised: again a distribution over the K classes at every pixel."""
    sub = max(1, r // 4)
    H, W = guide.shape
    if sub > 1:
        small_i = F.avg_pool2d(guide[None, None], sub, ceil_mode=True)[0, 0]
        small_p = F.avg_pool2d(probs[None], sub, ceil_mode=True)[0]
    else:
        small_i, small_p = guide, probs
    rs = max(1, round(r / sub))
    mean_i = box(small_i, rs)
    var_i = box(small_i * small_i, rs) - mean_i * mean_i
    mean_p = box(small_p, rs)
    cov = box(small_p * small_i, rs) - mean_i * mean_p
    a = cov / (var_i + eps)
    b = mean_p - a * mean_i
    ab = torch.cat([box(a, rs), box(b, rs)])  # [2K, h, w]
    if sub > 1:
        # the coarse grid's own scale (not the band's size): a band maps exactly as the whole image does
        up = F.interpolate(
            ab[None], scale_factor=sub, mode="bilinear", align_corners=False, recompute_scale_factor=False
        )
        ab = up[0, :, :H, :W]
    k = probs.shape[0]
    q = (ab[:k] * guide + ab[k:]).clamp(min=0)
    return q / q.sum(0, keepdim=True).clamp(min=1e-12)


def refine_rows(
    probs_of_rows: Callable[[slice], torch.Tensor], guide: torch.Tensor, rows: slice, r: int, eps: float
) -> torch.Tensor:
    """The refined probabilities of the output rows `rows` ([K, len(rows), W]), computed from the rows around
    them (`probs_of_rows(slice)` gives the bilinear probabilities of any rows): the margin covers both box
    filters and the coarse grid's upsampling, and starts on that grid, so the band equals refining the whole
    image and cutting it out, in memory bounded by the band."""
    H = guide.shape[0]
    sub = max(1, r // 4)
    margin = 2 * (round(r / sub) + 2) * sub
    lo = max(0, (rows.start - margin) // sub * sub)
    hi = min(H, rows.stop + margin)
    q = guided(probs_of_rows(slice(lo, hi)), guide[lo:hi], r, eps)
    return q[:, rows.start - lo : rows.stop - lo]
