"""An independent reference of Meta's DINOv3 ViT forward (`forward_features(x)["x_norm_patchtokens"]`),
written for the tests from the behaviour of Meta's published code (facebookresearch/dinov3:
`dinov3/models/vision_transformer.py`, `dinov3/layers/attention.py`, `dinov3/layers/rope_position_encoding.py`,
`dinov3/hub/backbones.py`); none of that code is copied here, and none of probeseg's or timm's is used.

The behaviour, at evaluation (the ViT-S/B/L hub models: MLP blocks, layer scale, LayerNorm with eps 1e-5,
4 storage tokens, a qkv bias whose K third is masked to zero):
- tokens: [CLS, 4 storage tokens, the h*w patch embeddings row by row]; no position table;
- rotary position embedding on the patch tokens' queries and keys (the 5 prefix tokens untouched): each
  patch's centre in [-1, 1] per axis, ((i + 0.5) / h) * 2 - 1 for rows and the same over w for columns
  ("separate" normalisation); angles 2 pi * coordinate / period for the D/4 periods
  100 ** (2 j / (D/2)), rows' angles then columns', the D/2 angles repeated twice; applied as
  x * cos + rotate_half(x) * sin with rotate_half([a, b]) = [-b, a] on the head's two halves;
- x + ls1 * attn(norm1(x)), x + ls2 * mlp(norm2(x)); exact GELU; the final norm.

The state is in the key layout of Meta's `dinov3_*_pretrain_lvd1689m-*.pth` files.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPS = 1e-5
STORAGE = 4


def random_state(dim: int, heads: int, depth: int, patch: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights where every parameter matters: layer scales far from their 1e-5 init, non-trivial
    norms and biases (q and v; the K third of qkv's bias is masked by `bias_mask`, as in Meta's files)."""
    g = torch.Generator().manual_seed(seed)
    d_head = dim // heads

    def rnd(*shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale + shift

    mask = torch.ones(3 * dim)
    mask[dim : 2 * dim] = 0
    state: dict[str, torch.Tensor] = {
        "cls_token": rnd(1, 1, dim),
        "storage_tokens": rnd(1, STORAGE, dim),
        "mask_token": torch.zeros(1, dim),
        "patch_embed.proj.weight": rnd(dim, 3, patch, patch, scale=1 / math.sqrt(3 * patch * patch)),
        "patch_embed.proj.bias": rnd(dim, scale=0.1),
        "rope_embed.periods": 100.0 ** (2 * torch.arange(d_head // 4) / (d_head // 2)),
        "norm.weight": rnd(dim, scale=0.2, shift=1.0),
        "norm.bias": rnd(dim, scale=0.1),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        for norm in ("norm1", "norm2"):
            state[p + f"{norm}.weight"] = rnd(dim, scale=0.2, shift=1.0)
            state[p + f"{norm}.bias"] = rnd(dim, scale=0.1)
        state[p + "attn.qkv.weight"] = rnd(3 * dim, dim, scale=1 / math.sqrt(dim))
        state[p + "attn.qkv.bias"] = rnd(3 * dim, scale=0.1)
        state[p + "attn.qkv.bias_mask"] = mask.clone()
        for name, n_out, n_in in (
            ("attn.proj", dim, dim),
            ("mlp.fc1", 4 * dim, dim),
            ("mlp.fc2", dim, 4 * dim),
        ):
            state[p + f"{name}.weight"] = rnd(n_out, n_in, scale=1 / math.sqrt(n_in))
            state[p + f"{name}.bias"] = rnd(n_out, scale=0.1)
        state[p + "ls1.gamma"] = torch.rand(dim, generator=g) * 0.5 + 0.25
        state[p + "ls2.gamma"] = torch.rand(dim, generator=g) * 0.5 + 0.25
    return state


def rope_sin_cos(periods: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[h*w, D] sines and cosines of the patches' rotary angles (see the module docstring)."""
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w * 2 - 1
    rows = ys[:, None].expand(h, w).reshape(-1)
    cols = xs[None, :].expand(h, w).reshape(-1)
    two_pi = 2 * math.pi
    angles = torch.cat(
        [two_pi * rows[:, None] / periods, two_pi * cols[:, None] / periods], dim=1
    )  # [hw, D/2]
    angles = torch.cat([angles, angles], dim=1)
    return angles.sin(), angles.cos()


def _rotate(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + turned * sin


def patch_tokens(state: dict[str, torch.Tensor], x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, 3, H, W] -> [B, C, H/16, W/16]: the last block's patch tokens after the final norm."""
    weight = state["patch_embed.proj.weight"]
    dim, patch = weight.shape[0], weight.shape[-1]
    b, _, H, W = x.shape
    h, w = H // patch, W // patch
    d_head = dim // heads
    t = F.conv2d(x, weight, state["patch_embed.proj.bias"], stride=patch).flatten(2).transpose(1, 2)
    prefix = torch.cat([state["cls_token"], state["storage_tokens"]], dim=1).expand(b, -1, -1)
    t = torch.cat([prefix, t], dim=1)
    n_prefix = prefix.shape[1]
    sin, cos = rope_sin_cos(state["rope_embed.periods"].float(), h, w)
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for i in range(depth):
        p = f"blocks.{i}."
        y = F.layer_norm(t, (dim,), state[p + "norm1.weight"], state[p + "norm1.bias"], EPS)
        bias = state[p + "attn.qkv.bias"] * state[p + "attn.qkv.bias_mask"]
        qkv = F.linear(y, state[p + "attn.qkv.weight"], bias)
        q, k, v = qkv.reshape(b, -1, 3, heads, d_head).permute(2, 0, 3, 1, 4)
        q = torch.cat([q[:, :, :n_prefix], _rotate(q[:, :, n_prefix:], sin, cos)], dim=2)
        k = torch.cat([k[:, :, :n_prefix], _rotate(k[:, :, n_prefix:], sin, cos)], dim=2)
        attn = ((q @ k.transpose(-2, -1)) / math.sqrt(d_head)).softmax(-1)
        y = (attn @ v).transpose(1, 2).reshape(b, -1, dim)
        t = t + state[p + "ls1.gamma"] * F.linear(
            y, state[p + "attn.proj.weight"], state[p + "attn.proj.bias"]
        )
        y = F.layer_norm(t, (dim,), state[p + "norm2.weight"], state[p + "norm2.bias"], EPS)
        y = F.linear(
            F.gelu(F.linear(y, state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"])),
            state[p + "mlp.fc2.weight"],
            state[p + "mlp.fc2.bias"],
        )
        t = t + state[p + "ls2.gamma"] * y
    t = F.layer_norm(t, (dim,), state["norm.weight"], state["norm.bias"], EPS)
    return t[:, n_prefix:].transpose(1, 2).reshape(b, dim, h, w)
