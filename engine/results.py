"""Plain records the engine hands to its clients (UI, API): no torch modules, no locks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.metrics import SegmentationScores


@dataclass(frozen=True)
class FeatureProgress:
    """Background feature computation: `done` of `total` images since the queue was last empty."""

    done: int = 0
    total: int = 0
    current: str = ""  # name of the image being computed now, "" when idle
    failed: tuple[tuple[int, str], ...] = ()  # (image id, reason) of images that could not be processed
    seconds: float = 0.0  # spent on the `done` images so far (since the queue was last empty)

    @property
    def busy(self) -> bool:
        return self.done < self.total

    @property
    def rate(self) -> float | None:
        """Images per second so far (None before the first image is done)."""
        return self.done / self.seconds if self.done and self.seconds > 0 else None

    @property
    def seconds_left(self) -> float | None:
        rate = self.rate
        return (self.total - self.done) / rate if rate else None

    def describe(self) -> str:
        if self.busy:
            text = f"Computing features {self.done}/{self.total}"
            if self.rate is not None and self.seconds_left is not None:
                text += f" · {self.rate:.1f} images/s · {_duration(self.seconds_left)} left"
            return text + (f" ({self.current})" if self.current else "")
        if self.total:
            return f"Features ready for {self.total} new image{'s' if self.total != 1 else ''}"
        return "Features ready"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class TrainOutcome:
    """One finished training: the stored head and what the UI shows about it."""

    generation: int
    head_id: int | None
    seconds: float
    loss: float
    iterations: int
    pixel_counts: dict[str, int]  # class name -> labelled pixels
    trained_pixels: int
    images: int
    miou: float | None = None
    finished_at: float = 0.0


@dataclass(frozen=True)
class TrainStatus:
    """Where a project's training stands: idle, pending (debounce), running; the last result or error."""

    state: str = "idle"  # idle | pending | running
    generation: int = 0  # increases with every request; a newer request supersedes older ones
    last: TrainOutcome | None = None
    error: str | None = None  # why the latest training did not produce a head (no labels, one class, ...)
    error_generation: int = 0

    def describe(self) -> str:
        parts = []
        if self.state == "running":
            parts.append("Training…")
        elif self.state == "pending":
            parts.append("Retrain queued…")
        if self.error and (self.last is None or self.error_generation > self.last.generation):
            parts.append(f"Not trained: {self.error}")
        if self.last is not None:
            miou = f", mIoU {100 * self.last.miou:.1f}%" if self.last.miou is not None else ""
            parts.append(
                f"Last training: {self.last.seconds:.2f} s, loss {self.last.loss:.4f}, "
                f"{self.last.iterations} iterations, {self.last.trained_pixels:,} pixels from "
                f"{self.last.images} image{'s' if self.last.images != 1 else ''}{miou}"
            )
        return " · ".join(parts) if parts else "Not trained yet"


@dataclass(frozen=True)
class EvalResult:
    """Scores of the current head against the ground-truth masks of a project."""

    head_id: int
    images: int
    class_names: tuple[str, ...]
    scores: SegmentationScores
    split: str = "all"  # which ground-truth images were used ("val" when the project has a val split)
    skipped: int = 0  # ground-truth images without features yet
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GridScores:
    """The current head's class scores of one image on its patch grid: what a canvas needs to draw the
    prediction itself (core's rule: bilinear, align_corners=False, to the image size, then argmax)."""

    head_id: int
    logits: np.ndarray  # [K, h, w] float32, one channel per head class
    channel_index: tuple[int | None, ...]  # current class index of each channel (None: class deleted since)
    image_size: tuple[int, int]  # (H, W) the grid is upsampled to
    generation: int = 0  # training request the head answers (compare with `request_train`'s return value)
    counter: int = 0  # the engine's head counter when it was computed (`ProjectEngine.head_counter`)
    interim: bool = False  # from a fit still running (a better one follows)


@dataclass(frozen=True)
class EdgeLayer:
    """A final head's class channel of each pixel of one image at a display size, by the boundary rule."""

    head_id: int
    counter: int  # the engine's head counter when it was computed: the GridScores it refines
    channels: np.ndarray  # [h', w'] uint8, channels as in GridScores.logits
