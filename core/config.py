"""The method's constants and settings, with no torch import: the CLI builds its parsers (and answers
`--help`) from these defaults without loading torch. core.features and core.train re-export them."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from core.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # input normalisation, on RGB in 0..1
IMAGENET_STD = (0.229, 0.224, 0.225)
SMALL_TOKENS = (
    32  # tokens across a small image's longer side (DINOv2: its long side fed at 448 px, as it saw objects)
)

# Bumped whenever the tokens for the same pixels and weights change. Part of every feature-cache key and
# recorded in every head, so old features are never mixed with new ones. History: 1 = first release;
# 2 = position embedding resized by Meta's rule and no PIL `reducing_gap` (tokens equal Meta's DINOv2).
FEATURE_VERSION = 2


@dataclass(frozen=True)
class InputRecipe:
    """What a backbone takes (its spec's `input`, core.backbones): a multiple of `patch` pixels a side,
    RGB in 0..1 normalised by `mean` and `std`."""

    patch: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


MAX_TOKENS_LIMIT = (
    65_536  # the most tokens an image may get (a 12 MP photo at ~14 px a token): bounded memory
)


RESOLUTION_HELP = (
    "image pixels per token: 'auto' (default: a small image's long side at 32 tokens, a big one's up to one "
    "token per patch (14 px for DINOv2) within 4096 tokens), '16px' (that many image pixels a token), or a "
    "number such as 448 "
    "(every image's longer side fed at that many pixels, the paper's setting; --long-side N is the same)"
)


@dataclass(frozen=True)
class FeatureConfig:
    """How an image becomes a token grid. Either a fixed backbone input (`long_side`, the paper's
    protocol: every image's longer side at that many pixels) or, when `scale` is set, a resolution in
    image pixels per token ("auto": per image, see `token_grid`), so big images keep their detail.
    Grids larger than `tile` tokens a side are extracted in overlapping tiles (core.features)."""

    long_side: int = 448  # pixels on the longer side fed to the backbone (rounded to a multiple of the patch)
    batch_size: int = 8  # images (or tiles) per backbone forward in batched extraction
    scale: float | str | None = None  # image pixels one token covers, "auto", or None: use long_side
    max_tokens: int = 4096  # tokens an image gets at most by `scale` (2-core CPU: a few seconds for ViT-S)
    tile: int = 37  # tokens per tile side (DINOv2: 37 x 14 = 518 px, the size it was trained at)
    overlap: int = 8  # tokens two neighbouring tiles share (blended across, so no seam shows)

    def __post_init__(self) -> None:
        if self.scale is not None and self.scale != "auto":
            if isinstance(self.scale, str) or not math.isfinite(self.scale) or self.scale <= 0:
                raise InputError(
                    f"the scale is image pixels per token (a number > 0) or 'auto', got {self.scale!r}"
                )
        if not 1 <= self.max_tokens <= MAX_TOKENS_LIMIT:
            raise InputError(
                f"max tokens per image must be within 1..{MAX_TOKENS_LIMIT}, got {self.max_tokens}"
            )
        if not 0 <= self.overlap < self.tile // 2:
            raise InputError(
                f"tile overlap must be within 0..{self.tile // 2 - 1} tokens, got {self.overlap}"
            )

    @classmethod
    def parse(cls, resolution: str, **kw: int) -> FeatureConfig:
        """The one reader of a resolution as the CLI and the page write it: 'auto' (the default), '20px'
        (image pixels per token) or '448' (a fixed long side in pixels, the paper's protocol)."""
        text = str(resolution).strip().lower()
        if text == "auto":
            return cls(scale="auto", **kw)
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*px", text)
        if m:
            return cls(scale=float(m.group(1)), **kw)
        if text.isdigit() and 14 <= int(text) <= 8192:
            return cls(long_side=int(text), **kw)
        raise InputError(
            f"resolution {resolution!r} not understood: use 'auto' (pixels per token chosen per image), '16px' "
            "(image pixels per token) or a long side in pixels such as '448' (every image fed at that size)"
        )

    @property
    def resolution(self) -> str:
        """This config as `parse` reads it (and as the page, head.json and the cache key show it)."""
        if self.scale is None:
            return str(self.long_side)
        return "auto" if self.scale == "auto" else f"{self.scale:g}px"

    def describe(self) -> str:
        """In words, for the page and the CLI."""
        if self.scale is None:
            return f"every image at {self.long_side} px on its longer side"
        if self.scale == "auto":
            return f"auto resolution (up to one token per patch, at most {self.max_tokens:,} tokens an image)"
        return f"{self.scale:g} image px a token (at most {self.max_tokens:,} tokens an image)"

    def token_grid(self, size: tuple[int, int], patch: int) -> tuple[int, int]:
        """(H, W) image pixels -> (h, w) tokens. Fixed long side: the long side at `long_side` pixels.
        By scale: H / scale by W / scale, at most `max_tokens`; "auto" is one token per patch of image
        pixels (the detail the backbone resolves at native size) for big images, a small image's long side
        at SMALL_TOKENS tokens (as today's 448-px input: objects at the size DINOv2 saw them), and
        within the budget a big photo gets as many tokens as `max_tokens` allows."""
        H, W = size
        if self.scale is None:
            f = self.long_side / max(H, W)
            return max(1, round(H * f / patch)), max(1, round(W * f / patch))
        s = min(max(H, W) / SMALL_TOKENS, float(patch)) if self.scale == "auto" else float(self.scale)
        s = max(s, math.sqrt(H * W / self.max_tokens))
        return max(1, min(round(H / s), H)), max(1, min(round(W / s), W))


@dataclass(frozen=True)
class TrainConfig:
    max_iter: int = 100  # L-BFGS iterations; each is one pass over all labelled pixels
    weight_decay: float = 1e-3  # L2 penalty on the head weights (standardised features), not the bias
    class_balance: bool = True  # weight each class by 1 / its labelled pixel count (rare classes count)
    max_pixels: int = 400_000  # cap for dense masks: a seeded, class-stratified sample of this many pixels
    seed: int = 0  # seeds the pixel sampling; training is deterministic given the inputs
    tolerance: float = 1e-7  # stop when the loss changes less than this between iterations
    warm_start: bool = True  # start from the previous head when one is given and shapes fit

    def to_dict(self) -> dict:
        return asdict(self)
