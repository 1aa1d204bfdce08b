"""An independent reference of the DINO v1 and iBOT forward (`get_intermediate_layers(x, 1)`: the last block's
tokens after the final norm), written for the tests from the behaviour of their published code
(facebookresearch/dino and bytedance/ibot, `vision_transformer.py`); none of that code is copied here, and
none of probeseg's or timm's is used.

Both are the same plain pre-norm ViT: a conv patch embedding, a CLS token, a learned position table for a
224-px input (14 x 14 patches at /16, 28 x 28 at /8) resized bicubically to other grids with a scale factor
of (grid + 0.1) / M and no antialiasing, LayerNorm with eps 1e-6, qkv with bias, exact GELU. Their code
names the input's height `w` and its width `h` and passes them in that order, so the table is resized to
(rows, columns) = (H / p, W / p): the geometry is right for any aspect (no transposition).

The states are in the key layout of their checkpoint files: DINO v1's `dino_*_pretrain.pth` (the backbone's
keys at the top level) and iBOT's `checkpoint_teacher.pth` (`{"state_dict": {"backbone.<key>": ...,
"head.<key>": ...}}` with the masked-image-modelling token `backbone.masked_embed`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPS = 1e-6


def random_state(dim: int, patch: int, depth: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random backbone weights where every parameter matters: unit-scale position embeddings (a
    wrong resize shows), non-trivial norms and biases."""
    g = torch.Generator().manual_seed(seed)
    m = 224 // patch

    def rnd(*shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale + shift

    state: dict[str, torch.Tensor] = {
        "cls_token": rnd(1, 1, dim),
        "pos_embed": rnd(1, 1 + m * m, dim),
        "patch_embed.proj.weight": rnd(dim, 3, patch, patch, scale=1 / math.sqrt(3 * patch * patch)),
        "patch_embed.proj.bias": rnd(dim, scale=0.1),
        "norm.weight": rnd(dim, scale=0.2, shift=1.0),
        "norm.bias": rnd(dim, scale=0.1),
    }
    for i in range(depth):
        p = f"blocks.{i}"
        for norm in ("norm1", "norm2"):
            state[f"{p}.{norm}.weight"] = rnd(dim, scale=0.2, shift=1.0)
            state[f"{p}.{norm}.bias"] = rnd(dim, scale=0.1)
        for name, n_out, n_in in (
            ("attn.qkv", 3 * dim, dim),
            ("attn.proj", dim, dim),
            ("mlp.fc1", 4 * dim, dim),
        ):
            state[f"{p}.{name}.weight"] = rnd(n_out, n_in, scale=1 / math.sqrt(n_in))
            state[f"{p}.{name}.bias"] = rnd(n_out, scale=0.1)
        state[f"{p}.mlp.fc2.weight"] = rnd(dim, 4 * dim, scale=1 / math.sqrt(4 * dim))
        state[f"{p}.mlp.fc2.bias"] = rnd(dim, scale=0.1)
    return state


def ibot_checkpoint(state: dict[str, torch.Tensor], seed: int = 0) -> dict:
    """The backbone's state as iBOT's teacher checkpoint holds it, with a projection head and the MIM token."""
    g = torch.Generator().manual_seed(seed)
    dim = state["cls_token"].shape[-1]
    teacher = {f"backbone.{k}": v for k, v in state.items()}
    teacher["backbone.masked_embed"] = torch.randn(1, dim, generator=g)
    teacher["head.mlp.0.weight"] = torch.randn(32, dim, generator=g)
    teacher["head.last_layer.weight_g"] = torch.ones(16, 1)
    return {"state_dict": teacher, "epoch": 800}


def position_embedding(pos: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[1, 1 + M*M, C] -> [1, 1 + h*w, C] by their rule (see the module docstring)."""
    cls, table = pos[:, :1], pos[:, 1:]
    m = int(math.sqrt(table.shape[1]))
    if (h, w) == (m, m):
        return pos
    grid = table.reshape(1, m, m, -1).permute(0, 3, 1, 2)
    resized = F.interpolate(grid, scale_factor=((h + 0.1) / m, (w + 0.1) / m), mode="bicubic")
    assert resized.shape[-2:] == (h, w)
    return torch.cat([cls, resized.permute(0, 2, 3, 1).reshape(1, h * w, -1)], dim=1)


def patch_tokens(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> [B, C, H/p, W/p]: the last block's patch tokens after the final norm."""
    weight = state["patch_embed.proj.weight"]
    dim, patch = weight.shape[0], weight.shape[-1]
    heads = dim // 64
    b, _, H, W = x.shape
    h, w = H // patch, W // patch
    t = F.conv2d(x, weight, state["patch_embed.proj.bias"], stride=patch).flatten(2).transpose(1, 2)
    t = torch.cat([state["cls_token"].expand(b, -1, -1), t], dim=1) + position_embedding(
        state["pos_embed"], h, w
    )
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for i in range(depth):
        p = f"blocks.{i}."
        y = F.layer_norm(t, (dim,), state[p + "norm1.weight"], state[p + "norm1.bias"], EPS)
        qkv = F.linear(y, state[p + "attn.qkv.weight"], state[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(b, -1, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(-1)
        y = (attn @ v).transpose(1, 2).reshape(b, -1, dim)
        gamma_1, gamma_2 = state.get(p + "gamma_1", 1.0), state.get(p + "gamma_2", 1.0)  # iBOT's layer scale
        t = t + gamma_1 * F.linear(y, state[p + "attn.proj.weight"], state[p + "attn.proj.bias"])
        y = F.layer_norm(t, (dim,), state[p + "norm2.weight"], state[p + "norm2.bias"], EPS)
        y = F.gelu(F.linear(y, state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"]))
        t = t + gamma_2 * F.linear(y, state[p + "mlp.fc2.weight"], state[p + "mlp.fc2.bias"])
    t = F.layer_norm(t, (dim,), state["norm.weight"], state["norm.bias"], EPS)
    return t[:, 1:].transpose(1, 2).reshape(b, dim, h, w)
