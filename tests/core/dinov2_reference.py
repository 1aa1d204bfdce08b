"""An independent reference of Meta's DINOv2 forward, written for the tests from the behaviour of Meta's
published code (facebookresearch/dinov2: `dinov2/models/vision_transformer.py`, `dinov2/layers/*`,
`dinov2/hub/backbones.py`); none of that code is copied here, and none of probeseg's or timm's is used.

It works on a state dict in the key layout of Meta's `dinov2_*_pretrain.pth` files, so the tests can make
such a file with seeded random weights, load it through probeseg and compare the patch tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PATCH = 14
GRID = 37  # Meta's models are built at img_size=518: a 37x37 position embedding
DIMS = {"s": 384, "b": 768, "l": 1024, "g": 1536}


def arch(name: str) -> dict:
    """Meta's hub constructor arguments that matter for the forward, by registry name."""
    size = name[len("dinov2_vit")]
    registers = 4 if name.endswith("_reg4") else 0
    return {
        "dim": DIMS[size],
        "heads": DIMS[size] // 64,
        "swiglu": size == "g",  # vit_giant2 uses ffn_layer="swiglufused"
        "registers": registers,
        # hub/backbones.py: plain models keep the historical kludge, `_reg` models resize by size.
        "interpolate_offset": 0.0 if registers else 0.1,
        "interpolate_antialias": bool(registers),
    }


def swiglu_hidden(dim: int) -> int:
    hidden = 4 * dim  # mlp_ratio 4
    return (int(hidden * 2 / 3) + 7) // 8 * 8  # SwiGLUFFNFused rounds 2/3 of it up to a multiple of 8


def random_meta_state(name: str, depth: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights in Meta's key layout where every parameter matters: unit-scale position
    embeddings (so a wrong resize shows), layer-scale gammas far from their 1e-5 init, non-trivial norms."""
    a = arch(name)
    c = a["dim"]
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale + shift

    def linear(prefix: str, n_out: int, n_in: int) -> None:
        state[f"{prefix}.weight"] = rnd(n_out, n_in, scale=1 / math.sqrt(n_in))
        state[f"{prefix}.bias"] = rnd(n_out, scale=0.1)

    state: dict[str, torch.Tensor] = {
        "cls_token": rnd(1, 1, c),
        "pos_embed": rnd(1, 1 + GRID * GRID, c),
        "mask_token": torch.zeros(1, c),
        "patch_embed.proj.weight": rnd(c, 3, PATCH, PATCH, scale=1 / math.sqrt(3 * PATCH * PATCH)),
        "patch_embed.proj.bias": rnd(c, scale=0.1),
        "norm.weight": rnd(c, scale=0.2, shift=1.0),
        "norm.bias": rnd(c, scale=0.1),
    }
    if a["registers"]:
        state["register_tokens"] = rnd(1, a["registers"], c)
    for i in range(depth):
        p = f"blocks.{i}"
        for norm in ("norm1", "norm2"):
            state[f"{p}.{norm}.weight"] = rnd(c, scale=0.2, shift=1.0)
            state[f"{p}.{norm}.bias"] = rnd(c, scale=0.1)
        linear(f"{p}.attn.qkv", 3 * c, c)
        linear(f"{p}.attn.proj", c, c)
        if a["swiglu"]:
            h = swiglu_hidden(c)
            linear(f"{p}.mlp.w12", 2 * h, c)
            linear(f"{p}.mlp.w3", c, h)
        else:
            linear(f"{p}.mlp.fc1", 4 * c, c)
            linear(f"{p}.mlp.fc2", c, 4 * c)
        state[f"{p}.ls1.gamma"] = torch.rand(c, generator=g) * 0.5 + 0.25
        state[f"{p}.ls2.gamma"] = torch.rand(c, generator=g) * 0.5 + 0.25
    return state


def position_embedding(
    pos_embed: torch.Tensor, h: int, w: int, offset: float, antialias: bool
) -> torch.Tensor:
    """Meta's `interpolate_pos_encoding`: [1, 1 + 37*37, C] -> [1, 1 + h*w, C]. Unchanged on the 37x37 grid;
    otherwise the patch part is resized bicubically in float32, with the scale factor (n + offset) / 37 when
    an offset is set (the kernel then uses that scale, not the size ratio), else to the size (h, w)."""
    n = pos_embed.shape[1] - 1
    m = int(math.sqrt(n))
    if h * w == n and h == w:
        return pos_embed
    cls, patch = pos_embed[:, :1].float(), pos_embed[:, 1:].float()
    grid = patch.reshape(1, m, m, -1).permute(0, 3, 1, 2)
    if offset:
        grid = F.interpolate(
            grid,
            scale_factor=(float((h + offset) / m), float((w + offset) / m)),
            mode="bicubic",
            antialias=antialias,
        )
    else:
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=antialias)
    assert grid.shape[-2:] == (h, w)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)], dim=1).to(pos_embed.dtype)


def _block(x: torch.Tensor, s: dict[str, torch.Tensor], p: str, heads: int, swiglu: bool) -> torch.Tensor:
    c = x.shape[-1]

    def ln(t: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(t, (c,), s[f"{p}.{name}.weight"], s[f"{p}.{name}.bias"], eps=1e-6)

    def lin(t: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(t, s[f"{p}.{name}.weight"], s[f"{p}.{name}.bias"])

    b, n, _ = x.shape
    qkv = lin(ln(x, "norm1"), "attn.qkv").reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * (c // heads) ** -0.5, qkv[1], qkv[2]
    attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
    y = lin((attn @ v).transpose(1, 2).reshape(b, n, c), "attn.proj")
    x = x + s[f"{p}.ls1.gamma"] * y
    z = ln(x, "norm2")
    if swiglu:
        z1, z2 = lin(z, "mlp.w12").chunk(2, dim=-1)
        z = lin(F.silu(z1) * z2, "mlp.w3")
    else:
        z = lin(F.gelu(lin(z, "mlp.fc1")), "mlp.fc2")
    return x + s[f"{p}.ls2.gamma"] * z


@torch.no_grad()
def patch_tokens(name: str, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """`forward_features(x)["x_norm_patchtokens"]` of Meta's model, as [B, C, H/14, W/14] float32."""
    a = arch(name)
    b, _, hh, ww = x.shape
    h, w = hh // PATCH, ww // PATCH
    t = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=PATCH)
    t = t.flatten(2).transpose(1, 2)  # [B, h*w, C]
    t = torch.cat([state["cls_token"].expand(b, -1, -1), t], dim=1)
    t = t + position_embedding(state["pos_embed"], h, w, a["interpolate_offset"], a["interpolate_antialias"])
    if a["registers"]:
        t = torch.cat([t[:, :1], state["register_tokens"].expand(b, -1, -1), t[:, 1:]], dim=1)
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for i in range(depth):
        t = _block(t, state, f"blocks.{i}", a["heads"], a["swiglu"])
    t = F.layer_norm(t, (a["dim"],), state["norm.weight"], state["norm.bias"], eps=1e-6)
    t = t[:, 1 + a["registers"] :]
    return t.transpose(1, 2).reshape(b, -1, h, w)
