"""The frozen DINOv2 backbones: one registry of names, three ways to get weights, one way to run them.

Weights come from `hub` (timm's pretrained weights through the Hugging Face cache), a local checkpoint
file (Meta's original `dinov2_*_pretrain.pth` or timm's safetensors layout, detected by key names), or
`random` (architecture-true random init, for tests and offline runs; never the default silently).
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

from core.config import PATCH_SIZE
from core.errors import UserError

log = logging.getLogger(__name__)

# A timm VisionTransformer with the attributes `create_model` adds (probeseg_spec, probeseg_position): timm's
# own class does not declare them, so the checker takes these models as Any.
ViT = Any

RANDOM_SEED = 0  # random weights are seeded so their features (and the feature cache) are reproducible


@dataclass(frozen=True)
class BackboneSpec:
    name: str  # our public name, as in DINOv2's torch hub (`dinov2_vits14`)
    timm_name: str  # the timm model (and Hugging Face hub repo `timm/<timm_name>`)
    embed_dim: int  # channels of each patch token
    num_registers: int  # register tokens (the `_reg4` variants), dropped from the output like the CLS token
    # How Meta's hub models resize the 37x37 position embedding to other grids (their constructor arguments):
    # the plain models use a scale factor of (grid + 0.1) / 37 without antialiasing, the `_reg` ones the
    # output size with antialiasing. The paper's numbers come from these models, so we follow them exactly.
    interpolate_offset: float
    interpolate_antialias: bool


def _registry() -> dict[str, BackboneSpec]:
    dims = {"s": 384, "b": 768, "l": 1024, "g": 1536}
    timm_size = {"s": "small", "b": "base", "l": "large", "g": "giant"}
    specs = {}
    for size, dim in dims.items():
        for reg in (0, 4):
            suffix = "_reg4" if reg else ""
            name = f"dinov2_vit{size}14{suffix}"
            timm_name = f"vit_{timm_size[size]}_patch14{suffix}_dinov2.lvd142m"
            specs[name] = BackboneSpec(name, timm_name, dim, reg, 0.0 if reg else 0.1, bool(reg))
    return specs


BACKBONES: dict[str, BackboneSpec] = _registry()


class UnknownBackboneError(UserError, ValueError):
    pass


class WeightsUnavailableError(UserError, RuntimeError):
    pass


def list_backbones() -> list[str]:
    return list(BACKBONES)


def get_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise UnknownBackboneError(
            f"unknown backbone {name!r}; valid backbones: {', '.join(BACKBONES)}"
        ) from None


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; anything else is passed to torch.device."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def default_backbone_name(device: torch.device) -> str:
    """The paper's ViT-B/14 where a GPU makes it interactive; ViT-S/14 on a CPU."""
    return "dinov2_vitb14" if device.type in ("cuda", "mps") else "dinov2_vits14"


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
        """[B, 3, H, W] normalised images (H, W multiples of 14) -> [B, C, H/14, W/14] float32 tokens
        taken after the final norm, with CLS and register tokens dropped."""
        b, _, h, w = batch.shape
        if h % PATCH_SIZE or w % PATCH_SIZE:
            raise ValueError(f"input size {h}x{w} is not a multiple of the patch size {PATCH_SIZE}")
        batch = batch.to(self.device, non_blocking=True)
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            return vit_tokens(self.model, batch).float()


def vit_tokens(model: ViT, x: torch.Tensor) -> torch.Tensor:
    """The ONE token extraction: [B, 3, H, W] -> [B, C, H/14, W/14], the last block's patch tokens after the
    final norm with CLS and register tokens dropped. No grad mode of its own: the SGD protocol fine-tunes
    through it, `Backbone.patch_tokens` wraps it in inference mode, the ONNX export traces it."""
    b, _, h, w = x.shape
    tokens = model.forward_features(x)[:, model.num_prefix_tokens :]
    return tokens.transpose(1, 2).reshape(b, -1, h // PATCH_SIZE, w // PATCH_SIZE)


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


def create_model(spec: BackboneSpec, pretrained: bool = False, **timm_kwargs) -> nn.Module:
    """The timm model of `spec` with Meta's position-embedding rule (see BackboneSpec). `timm_kwargs`
    override timm's architecture arguments (tests use `depth=1` to check every size cheaply)."""
    # dynamic_img_size: the position embedding is resized to any input grid, so images keep aspect.
    model: ViT = timm.create_model(
        spec.timm_name, pretrained=pretrained, num_classes=0, dynamic_img_size=True, **timm_kwargs
    )
    model.probeseg_spec = spec
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
            f"{path}: not a loadable weights file ({exc}); expected Meta's dinov2_*_pretrain.pth or a "
            "timm .safetensors file"
        ) from None
    for key in ("model", "state_dict", "teacher"):  # training checkpoints nest the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {k.removeprefix("backbone."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def checkpoint_layout(state: dict[str, torch.Tensor]) -> str:
    """'meta' for DINOv2's own files (they carry mask_token), 'timm' otherwise."""
    return "meta" if "mask_token" in state else "timm"


def load_weights_file(model: nn.Module, path: str | os.PathLike, spec: BackboneSpec) -> None:
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = read_checkpoint(path)
    layout = checkpoint_layout(state)
    converted = checkpoint_filter_fn(
        state, cast(ViT, model)
    )  # maps Meta's keys (registers, SwiGLU) onto timm's
    try:
        model.load_state_dict(converted, strict=True)
    except RuntimeError as exc:
        raise WeightsUnavailableError(
            f"{path}: {layout}-layout checkpoint does not fit {spec.name} ({str(exc).splitlines()[0]}). "
            f"Is it the checkpoint of another model size? Valid backbones: {', '.join(BACKBONES)}"
        ) from None


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

    for filename in ("model.safetensors", "pytorch_model.bin"):  # timm's files, in its order of preference
        cached = try_to_load_from_cache(f"timm/{spec.timm_name}", filename)
        if isinstance(cached, str):
            model = create_model(spec, pretrained=False)
            load_weights_file(model, cached, spec)
            return model
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
        model = create_model(spec, pretrained=False)
        load_weights_file(model, path, spec)
        weights_id = f"file:{path.name}:{_file_digest(path)}"
    model.eval().requires_grad_(False).to(dev)
    return Backbone(spec=spec, model=model, weights_id=weights_id, device=dev)
