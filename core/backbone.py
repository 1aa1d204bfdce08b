"""The frozen backbones (the registry: core.backbones): three ways to get weights, one way to run them.

Weights come from `hub` (timm's pretrained weights through the Hugging Face cache), a local checkpoint
file (the family's own layout: Meta's `dinov2_*_pretrain.pth`, `dino_*_pretrain.pth`,
`dinov3_*_pretrain_*.pth`, iBOT's `checkpoint_teacher.pth`; or timm's safetensors layout, detected by key
names), or `random` (architecture-true random init, for tests and offline runs; never the default silently).
"""

from __future__ import annotations

import hashlib
import logging
import os
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import timm
import torch
import torch.nn.functional as F
from torch import nn

from core.backbones import BackboneSpec, get_spec, valid_names
from core.errors import UserError

log = logging.getLogger(__name__)

# A timm VisionTransformer with the attributes `create_model` adds (probeseg_spec, probeseg_position): timm's
# own class does not declare them, so the checker takes these models as Any.
ViT = Any

RANDOM_SEED = 0  # random weights are seeded so their features (and the feature cache) are reproducible


class WeightsUnavailableError(UserError, RuntimeError):
    pass


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; anything else is passed to torch.device."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


@dataclass
class Backbone:
    """A frozen backbone ready to run. Build it with `load_backbone`; use it through `core.features`."""

    spec: BackboneSpec
    model: nn.Module
    weights_id: str  # identity of the weights, part of every feature-cache key
    device: torch.device

    @property
    def is_random(self) -> bool:
        return self.weights_id.startswith("random")

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.device.type == "cuda" else None

    @torch.inference_mode()
    def patch_tokens(self, batch: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] normalised images (H, W multiples of the patch p) -> [B, C, H/p, W/p] float32 tokens
        taken after the final norm, with CLS and register (storage) tokens dropped."""
        b, _, h, w = batch.shape
        p = self.spec.patch_size
        if h % p or w % p:
            raise ValueError(f"input size {h}x{w} is not a multiple of {self.spec.name}'s patch size {p}")
        batch = batch.to(self.device, non_blocking=True)
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            return vit_tokens(self.model, batch).float()


def vit_tokens(model: ViT, x: torch.Tensor) -> torch.Tensor:
    """The ONE token extraction: [B, 3, H, W] -> [B, C, H/p, W/p], the last block's patch tokens after the
    final norm with CLS and register (storage) tokens dropped. No grad mode of its own: the SGD protocol
    fine-tunes through it, `Backbone.patch_tokens` wraps it in inference mode, the ONNX export traces it."""
    b, _, h, w = x.shape
    p = model.probeseg_spec.patch_size
    tokens = model.forward_features(x)[:, model.num_prefix_tokens :]
    return tokens.transpose(1, 2).reshape(b, -1, h // p, w // p)


def resize_pos_embed(
    pos_embed: torch.Tensor, grid: tuple[int, int], *, offset: float, antialias: bool, num_prefix: int
) -> torch.Tensor:
    """Meta's DINOv2 rule for the position embedding at another patch grid: [1, P + M*M, C] with P prefix
    slots (the CLS slot of the plain models) -> [1, P + h*w, C]. Bicubic in float32; with `offset` the
    scale factor (h + offset) / M is what the kernel uses (not the size ratio), as in Meta's code."""
    prefix, patch = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    m = int(round(patch.shape[1] ** 0.5))
    h, w = grid
    if (h, w) == (m, m):
        return pos_embed
    square = patch.float().reshape(1, m, m, -1).permute(0, 3, 1, 2)
    if offset:
        resized = F.interpolate(
            square, scale_factor=((h + offset) / m, (w + offset) / m), mode="bicubic", antialias=antialias
        )
    else:
        resized = F.interpolate(square, size=(h, w), mode="bicubic", antialias=antialias)
    if resized.shape[-2:] != (h, w):  # cannot happen for offsets in (0, 1); a guard against misuse
        raise ValueError(f"position embedding resized to {tuple(resized.shape[-2:])}, expected {(h, w)}")
    resized = resized.permute(0, 2, 3, 1).reshape(1, h * w, -1).to(pos_embed.dtype)
    return torch.cat([prefix, resized], dim=1)


def meta_position_embedding(model: ViT, grid: tuple[int, int]) -> torch.Tensor:
    """The model's position embedding at `grid` by Meta's rule: [1, P + h*w, C] (P = 1 CLS slot for the plain
    models, 0 for `_reg`)."""
    spec = model.probeseg_spec
    return resize_pos_embed(
        model.pos_embed,
        grid,
        offset=spec.interpolate_offset,
        antialias=spec.interpolate_antialias,
        num_prefix=0 if model.no_embed_class else 1,
    )


def _meta_pos_embed(self: ViT, x: torch.Tensor) -> torch.Tensor:
    """Replaces timm's `_pos_embed` (which always resizes by size with antialiasing) by Meta's rule.
    x: [B, h, w, C] patch embeddings (timm's dynamic_img_size layout) -> [B, prefix + h*w, C].
    `probeseg_position` is `meta_position_embedding` (the ONNX export swaps in a table of the same values)."""
    b, h, w, c = x.shape
    pos = self.probeseg_position(self, (h, w))
    x = x.reshape(b, h * w, c)
    prefix = [t.expand(b, -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
    if self.no_embed_class:
        # `_reg` models: timm folded Meta's CLS position slot into cls_token; registers carry no position.
        x = torch.cat(prefix + [x + pos], dim=1)
    else:
        x = torch.cat(prefix + [x], dim=1) + pos
    return self.pos_drop(x)


def create_model(
    spec: BackboneSpec, pretrained: bool = False, timm_name: str | None = None, **timm_kwargs
) -> nn.Module:
    """The timm model of `spec` (or of `timm_name`, a build of the same architecture: see `_architecture`),
    with its family's position-embedding rule for a learned table (see BackboneSpec; a rotary one, DINOv3's,
    is timm's own). `timm_kwargs` override timm's architecture arguments (tests use `depth=1`)."""
    # dynamic_img_size: the position embedding follows any input grid, so images keep their aspect.
    model: ViT = timm.create_model(
        timm_name or spec.timm_name,
        pretrained=pretrained,
        num_classes=0,
        dynamic_img_size=True,
        **timm_kwargs,
    )
    model.probeseg_spec = spec
    if spec.position == "learned":
        model.probeseg_position = meta_position_embedding
        model._pos_embed = types.MethodType(_meta_pos_embed, model)
    return model


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or a torch file, never unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsUnavailableError(
            f"{path}: not a loadable weights file ({exc}); expected the family's own checkpoint (Meta's "
            "dinov2_* / dino_* / dinov3_*_pretrain*.pth, iBOT's checkpoint_teacher.pth) or a timm .safetensors file"
        ) from None
    for key in ("model", "state_dict", "teacher"):  # training checkpoints nest the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith("backbone.") for k in tensors):  # a training checkpoint (iBOT's): the backbone alone
        tensors = {k.removeprefix("backbone."): v for k, v in tensors.items() if k.startswith("backbone.")}
    return tensors


def checkpoint_layout(state: dict[str, torch.Tensor]) -> str:
    """Whose key layout a state dict is in (for messages): the family files carry their pretraining
    tokens (DINOv2's mask_token, DINOv3's storage_tokens, iBOT's masked_embed)."""
    if "storage_tokens" in state:
        return "Meta DINOv3"
    if "masked_embed" in state:
        return "iBOT"
    return "Meta" if "mask_token" in state else "timm"


def _architecture(spec: BackboneSpec, state: dict[str, torch.Tensor]) -> str:
    """timm builds DINOv3 two ways: without a qkv bias (its hub weights, whose biases were all zero) and
    `_qkvb` with one; Meta's files carry the bias (its K third masked to zero), so they get the `_qkvb` build,
    which computes exactly what Meta's code does (timm's converter would drop the bias otherwise)."""
    has_bias = any(k.endswith(("attn.qkv.bias", "attn.q_bias")) for k in state)
    if spec.position == "rope" and has_bias and "_qkvb" not in spec.timm_name:
        arch, _, tag = spec.timm_name.partition(".")
        return f"{arch}_qkvb.{tag}" if tag else f"{arch}_qkvb"
    return spec.timm_name


def model_for_file(spec: BackboneSpec, path: str | os.PathLike, **timm_kwargs) -> nn.Module:
    """The model of `spec` holding a checkpoint file's weights (strict): the family's own layout is mapped
    onto timm's by timm's converters (Meta's registers, SwiGLU, DINOv3's storage tokens, layer scales and
    masked qkv bias, iBOT's layer scales); iBOT's MIM token, a pretraining-only parameter, is dropped.
    `timm_kwargs`: as in `create_model`."""
    state = read_checkpoint(path)
    layout = checkpoint_layout(state)
    state.pop("masked_embed", None)
    layer_scale = "blocks.0.gamma_1" in state  # iBOT trained with layer scale (`init_values` > 0)
    if layer_scale and spec.position == "learned":
        timm_kwargs = {"init_values": 1e-5, **timm_kwargs}
    model = create_model(spec, timm_name=_architecture(spec, state), **timm_kwargs)
    if spec.position == "rope":
        from timm.models.eva import checkpoint_filter_fn as eva_filter

        converted = eva_filter(state, cast(ViT, model))
    else:
        from timm.models.vision_transformer import checkpoint_filter_fn as vit_filter

        converted = vit_filter(state, cast(ViT, model), adapt_layer_scale=layer_scale)
    try:
        model.load_state_dict(converted, strict=True)
    except RuntimeError as exc:
        raise WeightsUnavailableError(
            f"{path}: {layout}-layout checkpoint does not fit {spec.name} ({str(exc).splitlines()[0]}). "
            f"Is it the checkpoint of another model or size? Valid backbones: {valid_names()}"
        ) from None
    return model


def _hub_help(spec: BackboneSpec, reason: str) -> str:
    return (
        f"could not load pretrained {spec.name} weights from the Hugging Face hub ({reason}).\n"
        "Fix it with one of:\n"
        f"  1. --weights hub with network access once: it downloads timm/{spec.timm_name} into the "
        "Hugging Face cache (HF_HOME); later runs read it from there, offline too;\n"
        f"  2. --weights /path/to/{spec.name}_pretrain.pth (Meta's file) or a timm .safetensors file;\n"
        "  3. --weights random for architecture-true random weights (testing only: predictions are meaningless)."
    )


def _from_hub(spec: BackboneSpec) -> nn.Module:
    """timm's weights of `spec` through the Hugging Face cache. Cached weights are read straight from the
    cache (no request at all: huggingface_hub would otherwise ask the hub first and, offline, retry for about
    a minute); uncached ones are downloaded after one quick check that the hub can be reached at all."""
    from huggingface_hub import constants, try_to_load_from_cache

    if not spec.hub:
        raise WeightsUnavailableError(
            f"{spec.name}: its weights have no copy on the Hugging Face hub; pass the {spec.family} checkpoint "
            f"file (--weights /path/to/checkpoint_teacher.pth), or --weights random for testing"
        )
    for filename in ("model.safetensors", "pytorch_model.bin"):  # timm's files, in its order of preference
        cached = try_to_load_from_cache(f"timm/{spec.timm_name}", filename)
        if isinstance(cached, str):
            return model_for_file(spec, cached)
    if not constants.HF_HUB_OFFLINE and not _reachable(constants.ENDPOINT):
        raise WeightsUnavailableError(
            _hub_help(
                spec,
                f"{constants.ENDPOINT} cannot be reached and the weights are not in the Hugging Face cache",
            )
        )
    try:
        return create_model(spec, pretrained=True)
    except Exception as exc:  # offline, not cached, proxy errors: all end the same way for the user
        raise WeightsUnavailableError(
            _hub_help(spec, f"{type(exc).__name__}: {exc}".splitlines()[0])
        ) from None


def _reachable(url: str, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the URL's host opens within the timeout (always True behind a proxy,
    which only a real request can test)."""
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)), timeout=timeout_s
        ):
            return True
    except OSError:
        return False


def load_backbone(
    name: str = "dinov2_vits14", weights: str = "hub", device: str | torch.device | None = "auto"
) -> Backbone:
    """Build a frozen backbone. `weights` is "hub", "random" or a path to a checkpoint file."""
    spec = get_spec(name)
    dev = resolve_device(device)
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = create_model(spec, pretrained=False)
        weights_id = f"random:seed={RANDOM_SEED}"
    elif weights == "hub":
        model = _from_hub(spec)
        weights_id = f"hub:timm/{spec.timm_name}"
    else:
        path = Path(weights).expanduser()
        model = model_for_file(spec, path)
        weights_id = f"file:{path.name}:{_file_digest(path)}"
    model.eval().requires_grad_(False).to(dev)
    return Backbone(spec=spec, model=model, weights_id=weights_id, device=dev)
