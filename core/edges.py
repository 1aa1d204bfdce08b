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
    (the mean of the pixels that exist). Two cumulative sums: cost independent of r."""
    out = x
    for dim in (-2, -1):
        n = out.shape[dim]
        c = torch.cumsum(out, dim=dim, dtype=torch.float64)
        c = torch.cat([torch.zeros_like(c.narrow(dim, 0, 1)), c], dim=dim)
        idx = torch.arange(n)
        hi = (idx + r + 1).clamp(max=n)
        lo = (idx - r).clamp(min=0)
        s = c.index_select(dim, hi) - c.index_select(dim, lo)
        shape = [1] * out.dim()
        shape[dim] = n
        out = (s / (hi - lo).to(torch.float64).view(shape)).float()
    return out


def guided(probs: torch.Tensor, guide: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """He et al.'s guided filter of each channel of probs [K, H, W] with guide [H, W]; then clipped at 0
    and renormalised, so the result is again a distribution over the K classes at every pixel."""
    mean_i = box(guide, r)
    var_i = box(guide * guide, r) - mean_i * mean_i
    mean_p = box(probs, r)
    cov = box(probs * guide, r) - mean_i * mean_p
    a = cov / (var_i + eps)
    b = mean_p - a * mean_i
    q = (box(a, r) * guide + box(b, r)).clamp(min=0)
    return q / q.sum(0, keepdim=True).clamp(min=1e-12)


def refine_rows(
    probs_of_rows: Callable[[slice], torch.Tensor], guide: torch.Tensor, rows: slice, r: int, eps: float
) -> torch.Tensor:
    """The refined probabilities of the output rows `rows` ([K, len(rows), W]), computed from the rows
    within 2r + 1 of them (`probs_of_rows(slice)` gives the bilinear probabilities of any rows): equal to
    refining the whole image and cutting the band out, in memory bounded by the band."""
    H = guide.shape[0]
    lo, hi = max(0, rows.start - 2 * r - 1), min(H, rows.stop + 2 * r + 1)
    q = guided(probs_of_rows(slice(lo, hi)), guide[lo:hi], r, eps)
    return q[:, rows.start - lo : rows.stop - lo]
