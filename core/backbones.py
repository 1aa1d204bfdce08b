"""The registry of frozen backbones: one name per model across four families (timm's way), each spec carrying
everything the rest of the code may know about it: patch size, input normalisation, extra tokens, the
position-embedding rule, where weights come from and under which licence. No torch import: the CLI checks a
name (and lists the valid ones) without loading torch.

Families (the paper's Table 3 and the newest):
- `dinov2_*` (Oquab et al. 2023, Meta): ViT/14, learned position table, optional 4 registers; Apache-2.0.
- `dino_*` (DINO v1, Caron et al. 2021, Meta): ViT/16 and ViT/8, learned position table; Apache-2.0.
- `ibot_*` (iBOT, Zhou et al. 2022, ByteDance): ViT/16, DINO v1's architecture; no copy on the hub: the
  teacher's backbone from iBOT's own checkpoint files; Apache-2.0.
- `dinov3_*` (Simeoni et al. 2025, Meta): ViT/16 with rotary position embedding and 4 storage tokens;
  weights under Meta's DINOv3 License (not Apache-2.0), never the default.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import IMAGENET_MEAN, IMAGENET_STD, InputRecipe
from core.errors import UserError

APACHE = "Apache-2.0"
DINOV3_LICENCE = "DINOv3 License (Meta; not Apache-2.0)"
SAT_MEAN = (0.430, 0.411, 0.296)  # DINOv3's satellite model (SAT-493M) normalises by its own statistics
SAT_STD = (0.213, 0.156, 0.143)


@dataclass(frozen=True)
class BackboneSpec:
    name: str  # our public name, as in the family's torch hub (`dinov2_vits14`, `dino_vits16`)
    family: str  # dinov2 | dino | ibot | dinov3
    timm_name: str  # the timm architecture; for `hub` weights also the Hugging Face repo `timm/<timm_name>`
    embed_dim: int  # channels of each patch token
    patch_size: int  # image pixels per patch side
    num_registers: int  # register / storage tokens, dropped from the output like the CLS token
    # "learned": a learned table resized to other grids by the family's rule (Meta's DINOv2 hub models: a
    # scale factor of (grid + offset) / M without antialiasing, or the output size with antialiasing for
    # the `_reg` ones; DINO v1 and iBOT: + 0.1, no antialiasing); "rope": rotary embedding (DINOv3), which
    # needs no table and takes any grid.
    position: str = "learned"
    interpolate_offset: float = 0.1
    interpolate_antialias: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    hub: bool = True  # timm publishes these weights (`--weights hub`)
    licence: str = APACHE  # the licence of the pretrained weights

    @property
    def input(self) -> InputRecipe:
        """What the backbone's input must be (core.features builds it)."""
        return InputRecipe(self.patch_size, self.mean, self.std)


def _registry() -> dict[str, BackboneSpec]:
    specs: list[BackboneSpec] = []
    timm_size = {"s": "small", "b": "base", "l": "large", "g": "giant"}
    for size, dim in {"s": 384, "b": 768, "l": 1024, "g": 1536}.items():
        for reg in (0, 4):
            suffix = "_reg4" if reg else ""
            specs.append(
                BackboneSpec(
                    f"dinov2_vit{size}14{suffix}",
                    "dinov2",
                    f"vit_{timm_size[size]}_patch14{suffix}_dinov2.lvd142m",
                    dim,
                    14,
                    reg,
                    interpolate_offset=0.0 if reg else 0.1,
                    interpolate_antialias=bool(reg),
                )
            )
    for size, dim in {"s": 384, "b": 768}.items():
        for p in (16, 8):
            specs.append(
                BackboneSpec(
                    f"dino_vit{size}{p}", "dino", f"vit_{timm_size[size]}_patch{p}_224.dino", dim, p, 0
                )
            )
    for name, arch, dim in (
        ("ibot_vitb16", "vit_base_patch16_224", 768),
        ("ibot_vitl16", "vit_large_patch16_224", 1024),
        ("ibot_vitl16_in22k", "vit_large_patch16_224", 1024),
    ):
        specs.append(BackboneSpec(name, "ibot", arch, dim, 16, 0, hub=False))
    for name, arch, dim in (
        ("dinov3_vits16", "vit_small_patch16_dinov3.lvd1689m", 384),
        ("dinov3_vits16plus", "vit_small_plus_patch16_dinov3.lvd1689m", 384),
        ("dinov3_vitb16", "vit_base_patch16_dinov3.lvd1689m", 768),
        ("dinov3_vitl16", "vit_large_patch16_dinov3.lvd1689m", 1024),
        ("dinov3_vith16plus", "vit_huge_plus_patch16_dinov3.lvd1689m", 1280),
    ):
        specs.append(BackboneSpec(name, "dinov3", arch, dim, 16, 4, "rope", licence=DINOV3_LICENCE))
    specs.append(
        BackboneSpec(
            "dinov3_vitl16_sat",
            "dinov3",
            "vit_large_patch16_dinov3.sat493m",
            1024,
            16,
            4,
            "rope",
            mean=SAT_MEAN,
            std=SAT_STD,
            licence=DINOV3_LICENCE,
        )
    )
    return {s.name: s for s in specs}


BACKBONES: dict[str, BackboneSpec] = _registry()
FAMILIES = ("dinov2", "dino", "ibot", "dinov3")


class UnknownBackboneError(UserError, ValueError):
    pass


def valid_names() -> str:
    """The valid names, by family: what an unknown name's message lists."""
    return "; ".join(
        f"{family}: {', '.join(n for n, s in BACKBONES.items() if s.family == family)}" for family in FAMILIES
    )


def get_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise UnknownBackboneError(f"unknown backbone {name!r}; valid backbones: {valid_names()}") from None


def default_backbone_name(device_type: str) -> str:
    """The paper's DINOv2 ViT-B/14 where a GPU makes it interactive; ViT-S/14 on a CPU (never DINOv3 weights,
    whose licence is not Apache-2.0)."""
    return "dinov2_vitb14" if device_type in ("cuda", "mps") else "dinov2_vits14"
