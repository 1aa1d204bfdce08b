"""The method's constants and settings, with no torch import: the CLI builds its parsers (and answers
`--help`) from these defaults without loading torch. core.features and core.train re-export them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

PATCH_SIZE = 14  # pixels per ViT patch side for every DINOv2 backbone here
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # input normalisation, on RGB in 0..1
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FeatureConfig:
    long_side: int = 448  # pixels on the longer side fed to the backbone (rounded to a multiple of 14)
    batch_size: int = 8  # images per backbone forward in batched extraction


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
