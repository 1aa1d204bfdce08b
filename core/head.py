"""The segmentation head: feature standardisation + a 1x1 convolution over patch tokens (the paper's probe).

Saved as safetensors (weights) + JSON (what it was trained on), never pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import nn

from core.errors import UserError
from core.features import FEATURE_VERSION, FeatureConfig
from core.head_meta import HeadMeta
from core.labels import IGNORE

WEIGHTS_FILE = "head.safetensors"
META_FILE = "head.json"


class HeadFileError(UserError, ValueError):
    pass


class LinearHead(nn.Module):
    """logits = W ((x - mean) / std) + b for every token x; a linear map, so it commutes with bilinear
    interpolation (the identity the trainer relies on)."""

    mean: torch.Tensor  # buffers (register_buffer below), declared for the type checker
    std: torch.Tensor

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        if num_classes < 1 or dim < 1:
            raise ValueError(f"a head needs dim >= 1 and num_classes >= 1, got {dim}, {num_classes}")
        self.conv = nn.Conv2d(dim, num_classes, kernel_size=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.bias)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @property
    def dim(self) -> int:
        return self.conv.in_channels

    @property
    def num_classes(self) -> int:
        return self.conv.out_channels

    @property
    def weight(self) -> torch.Tensor:
        """[K, C] view of the weights (the 1x1 convolution's)."""
        return self.conv.weight.view(self.num_classes, -1)

    @property
    def bias(self) -> torch.Tensor:
        """[K] bias (the convolution is built with one)."""
        bias = self.conv.bias
        assert bias is not None
        return bias

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp(min=1e-6))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] -> [B, K, h, w] logits."""
        x = (tokens.float() - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
        return self.conv(x)

    def logits_flat(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C] -> [N, K] logits."""
        z = (x.float() - self.mean) / self.std
        return z @ self.weight.T + self.bias


def feature_recipe(backbone: str, features: FeatureConfig) -> dict:
    """What a head's input is, for using it outside probeseg (written into every head.json)."""
    from core.backbones import get_spec

    spec = get_spec(backbone)
    p = spec.patch_size
    if features.scale is None:
        size = f"longer side ~{features.long_side} px, each side rounded to a multiple of {p}"
    else:
        size = (
            f"h = round(H / s), w = round(W / s) tokens, s = {features.resolution} image pixels per token "
            f"('auto': min(max(H, W) / 32, {p}) ), s raised so h * w <= {features.max_tokens}; input h*{p} x w*{p}; "
            f"grids over {features.tile} tokens a side from overlapping {features.tile * p}-px tiles (>= "
            f"{features.overlap} tokens shared), tokens averaged with weights ramping across each overlap"
        )
    return {
        "timm_model": spec.timm_name,
        "family": spec.family,
        "weights_licence": spec.licence,
        "patch_size": p,
        "resolution": features.resolution,
        "resize": f"PIL bicubic (no reducing_gap), aspect kept, {size}",
        "image_mean": list(spec.mean),
        "image_std": list(spec.std),  # on RGB in 0..1
        "tokens": "the last block's patch tokens after the final norm (no class, register or storage tokens), "
        "[C, h, w]; the head standardises them with its own mean/std buffers",
        "upsampling": "logits on the patch grid, bilinear to the image size (align_corners=False), then argmax",
        "ignore_index": IGNORE,
        "weights": "safetensors: conv.weight [K, C, 1, 1], conv.bias [K], mean [C], std [C]",
    }


def check_feature_version(version: int, where: str) -> None:
    """Refuse a head trained on features that this code no longer computes: its predictions on the new
    features would be quietly different."""
    if version != FEATURE_VERSION:
        raise HeadFileError(
            f"{where}: trained on probeseg feature version {version}, but this probeseg computes version "
            f"{FEATURE_VERSION} (the tokens now equal Meta's DINOv2 exactly); retrain the head on the same "
            "labels (`app.py train ...`, or any edit in the web app); cached features are recomputed by themselves"
        )


def head_to_bytes(head: LinearHead) -> bytes:
    return save_bytes({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()})


def head_from_bytes(data: bytes) -> LinearHead:
    try:
        state = load_bytes(data)  # the safetensors library's own checks: a truncated file is refused here
    except Exception as exc:  # SafetensorError is not exported under a stable name
        raise HeadFileError(
            f"not a readable safetensors file ({exc}); it may be truncated: export or train it again"
        ) from None
    try:
        k, c = state["conv.weight"].shape[:2]
        head = LinearHead(c, k)
        head.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise HeadFileError(f"not a probeseg head ({exc})") from None
    return head.eval()


def save_head(out_dir: str | os.PathLike, head: LinearHead, meta: HeadMeta) -> Path:
    return write_head(out_dir, head_to_bytes(head), meta)


def write_head(out_dir: str | os.PathLike, weights: bytes, meta: HeadMeta) -> Path:
    """The one head format: a folder with head.safetensors and head.json (what `load_head` reads; the
    CLI's train and the web app's export both write it)."""
    head = head_from_bytes(weights)
    if len(meta.classes) != head.num_classes:
        raise HeadFileError(f"{len(meta.classes)} class names for a head with {head.num_classes} outputs")
    meta = meta.but(
        weights_sha256=hashlib.sha256(weights).hexdigest(),
        features=meta.features or feature_recipe(meta.backbone, meta.feature_config),
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / WEIGHTS_FILE).write_bytes(weights)
    (out / META_FILE).write_text(json.dumps(meta.to_dict(), indent=2))
    return out


def load_head(head_dir: str | os.PathLike) -> tuple[LinearHead, HeadMeta]:
    d = Path(head_dir)
    wfile, mfile = d / WEIGHTS_FILE, d / META_FILE
    if not wfile.is_file() or not mfile.is_file():
        raise HeadFileError(
            f"{d}: no head here (expected {WEIGHTS_FILE} and {META_FILE}); train one with `train --out {d}`"
        )
    try:
        meta = HeadMeta.from_dict(json.loads(mfile.read_text()))
    except (TypeError, ValueError, AttributeError) as exc:
        raise HeadFileError(f"{mfile}: unreadable head metadata ({exc})") from None
    check_feature_version(meta.feature_version, str(mfile))
    data = wfile.read_bytes()
    if meta.weights_sha256 and hashlib.sha256(data).hexdigest() != meta.weights_sha256:
        raise HeadFileError(
            f"{wfile}: does not match the sha256 recorded in {mfile.name}: the file was altered or "
            "replaced; keep the two files of one head together (or train or export it again)"
        )
    try:
        head = head_from_bytes(data)
    except HeadFileError as exc:
        raise HeadFileError(f"{wfile}: {exc}") from None
    return head, meta
