"""Eq. 1 of the paper: the ONE masked pixel-wise cross-entropy.

The fast trainer (core.train.Objective) computes the same loss without upsampling; `core.train.literal_loss`
(its exactness reference in tests and in the benchmark's baseline) and the SGD protocol
(experiments.protocol) call this function on logits upsampled to the labels' size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.labels import IGNORE


def masked_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [B, K, H, W] at the labels' resolution, targets [B, H, W] (IGNORE = unlabelled, masked out)
    -> (sum over labelled pixels of the class-weighted cross-entropy, sum of those pixels' weights). The
    loss is their ratio; returning both lets a caller average over several images or processes."""
    ce = F.cross_entropy(logits, target, weight=class_weight, ignore_index=IGNORE, reduction="none")
    mask = target != IGNORE
    if class_weight is None:
        weight = mask.sum().to(ce.dtype)
    else:
        weight = (class_weight[target.clamp(0, logits.shape[1] - 1)] * mask).sum()
    return ce[mask].sum(), weight
