"""The settings of the paper's experiments (protocol, label generators, zero-shot labels) as small frozen
dataclasses, with no torch, scipy or open_clip import: the CLI builds its parsers (and answers `--help`) from
their defaults without loading any of them."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from core.config import TrainConfig
from core.errors import UserError

SCHEDULES = ("constant", "poly", "cosine")
KINDS = ("scribble", "point", "noisy", "zeroshot")

# ----------------------------------------------------------------------------------------------------------
# the training protocol


class ProtocolError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class ProtocolConfig:
    iterations: int = 20_000
    batch_size: int = 10  # global batch, split evenly over DistributedDataParallel processes
    lr: float = 0.001  # head learning rate
    momentum: float = 0.9
    # The objective, by default the interactive trainer's (core.train, TrainConfig): class-balanced Eq. 1
    # plus an L2 penalty on the head's weights (not its bias). --no-class-balance --weight-decay 0 is the
    # paper's literal Eq. 1.
    weight_decay: float = TrainConfig.weight_decay
    class_balance: bool = TrainConfig.class_balance
    schedule: str = "constant"  # constant | poly (power 0.9) | cosine
    crop: int = 448  # square training crop, a multiple of the backbone's patch (14 for DINOv2)
    base_long_side: int = 448  # scale 1.0 resizes the image's long side to this; also the inference size
    scale_range: tuple[float, float] = (0.5, 2.0)  # random scale factor, uniform in this range
    flip: bool = True  # horizontal flip with probability 0.5
    color_jitter: tuple[float, float, float, float] = (
        0.4,
        0.4,
        0.4,
        0.1,
    )  # brightness, contrast, saturation, hue
    jitter_prob: float = 0.8  # chance a sample is colour-jittered
    finetune: bool = False  # train the backbone too (Table 4, "Tuning")
    backbone_lr: float = 1e-5  # backbone learning rate when fine-tuning
    seed: int = 0
    checkpoint_every: int = 1000  # iterations between checkpoints (0: only at the end)
    resume: bool = True  # continue from <out>/checkpoint.pt when present
    log_every: int = 20  # iterations per loss-history point
    workers: int = 4  # data-loading processes per training process
    stats_images: int = 100  # training images used for the head's feature standardisation
    amp: bool = True  # bf16 autocast for the backbone on CUDA

    def __post_init__(self):
        object.__setattr__(self, "scale_range", tuple(float(v) for v in self.scale_range))
        object.__setattr__(self, "color_jitter", tuple(float(v) for v in self.color_jitter))
        if self.iterations < 1 or self.batch_size < 1:
            raise ProtocolError("iterations and batch size must be >= 1")
        if self.crop < 16:  # (a multiple of the backbone's patch: checked where the backbone is known)
            raise ProtocolError(f"--crop must be at least 16 px (e.g. 448), got {self.crop}")
        if self.base_long_side < 16:
            raise ProtocolError("--base-long-side must be >= 16")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ProtocolError(f"--scale-range needs 0 < low <= high, got {lo} {hi}")
        if self.schedule not in SCHEDULES:
            raise ProtocolError(f"unknown schedule {self.schedule!r}; choose {', '.join(SCHEDULES)}")
        if len(self.color_jitter) != 4 or min(self.color_jitter) < 0 or self.color_jitter[3] > 0.5:
            raise ProtocolError(
                "--color-jitter takes 4 values >= 0: brightness contrast saturation hue (hue <= 0.5)"
            )
        if self.lr <= 0 or self.backbone_lr < 0:
            raise ProtocolError("learning rates must be positive")
        if self.weight_decay < 0:
            raise ProtocolError(f"--weight-decay must be >= 0, got {self.weight_decay}")

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------------
# label generators


class LabelGenError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class ScribbleConfig:
    width: int = 3  # stroke width in pixels (the centre line widened by (width - 1) / 2 on each side)
    coverage: float = 0.5  # fraction of each object's skeleton pixels the stroke's centre line covers
    background_strokes: int = 2  # strokes in each background component (sharing the same coverage)
    min_area: int = 16  # components smaller than this get no stroke

    def __post_init__(self):
        if self.width < 1:
            raise LabelGenError(f"scribble width must be >= 1 pixel, got {self.width}")
        if not 0 < self.coverage <= 1:
            raise LabelGenError(f"scribble coverage must be in (0, 1], got {self.coverage}")
        if self.background_strokes < 0:
            raise LabelGenError(f"background strokes must be >= 0, got {self.background_strokes}")


@dataclass(frozen=True)
class PointConfig:
    points: int = 1  # points per object (connected component of a non-background class)
    background_points: int = 1  # points per image in the background
    radius: int = 0  # 0: one pixel per point; r: a disk of radius r clipped to the object
    min_area: int = 1  # components smaller than this get no point

    def __post_init__(self):
        if self.points < 1:
            raise LabelGenError(f"points per object must be >= 1, got {self.points}")
        if self.background_points < 0 or self.radius < 0:
            raise LabelGenError("background points and radius must be >= 0")


@dataclass(frozen=True)
class NoisyConfig:
    target_miou: float = 0.636  # mIoU of the labels against the ground truth (SEAM: 0.636, EPS: 0.694)
    tolerance: float = 0.005  # accepted |achieved - target|
    flip: float = 0.25  # at strength 1: chance an object is relabelled to a wrong class
    drop: float = 0.15  # at strength 1: chance an object is dropped to background
    grow: float = 0.6  # share of objects whose boundary moves outwards (the rest shrink)
    boundary: float = 0.15  # at strength 1: boundary shift as a fraction of sqrt(object area)
    estimate_images: int = 600  # calibrate on a seeded subset of this many images, then check on all
    max_strength: float = 64.0

    def __post_init__(self):
        if not 0 < self.target_miou < 1:
            raise LabelGenError(f"target mIoU must be in (0, 1) (e.g. 0.636), got {self.target_miou}")
        if self.tolerance <= 0:
            raise LabelGenError(f"tolerance must be > 0, got {self.tolerance}")


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# ----------------------------------------------------------------------------------------------------------
# zero-shot labels

DEFAULT_MODEL = "ViT-B-16"
DEFAULT_TAG = "openai"

# A compact prompt ensemble (a subset of CLIP's ImageNet templates, as used by MaskCLIP and its successors).
TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a bad photo of a {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
    "a dark photo of a {}.",
    "a blurry photo of a {}.",
    "a jpeg corrupted photo of a {}.",
    "a good photo of a {}.",
    "there is a {} in the scene.",
    "this is a photo of a {}.",
)


class ZeroShotError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class ZeroShotConfig:
    long_side: int = 448  # pixels on the longer side fed to CLIP (rounded to a multiple of its patch size)
    templates: tuple[str, ...] = TEMPLATES
    min_confidence: float = 0.0  # pixels whose top class probability is below this stay unlabelled (255)
    denoise: float = (
        0.0  # drop classes whose best patch probability in the image is below this (MaskCLIP: 0.5)
    )
    temperature: float = 100.0  # CLIP's logit scale: softmax(temperature * cosine)

    def __post_init__(self):
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ZeroShotError("every prompt template must contain '{}' where the class name goes")
        if not 0 <= self.min_confidence < 1 or not 0 <= self.denoise < 1:
            raise ZeroShotError("min_confidence and denoise must be in [0, 1)")
