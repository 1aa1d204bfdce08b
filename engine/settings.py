"""Engine settings: one frozen dataclass, so a running engine's behaviour is fixed and inspectable."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.edges import EdgeConfig
from core.train import TrainConfig


@dataclass(frozen=True)
class EngineSettings:
    debounce_s: float = 0.2  # auto-retrain waits this long after the last edit before it starts
    feature_batch: int = 4  # images per backbone call in the background worker (small: priorities interleave)
    # The app's fits sample at most 200,000 labelled pixels (stratified and unbiased, core.train; the CLI's
    # batch training 400,000): a fit on the cap is ~1 s here, so the final head follows a stroke within
    # seconds whatever the project holds (bench part scale).
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_iter=100, max_pixels=200_000))
    prediction_cache: int = 24  # predictions kept in memory (per head, image and size) ...
    prediction_cache_bytes: int = 256 * 2**20  # ... and their bytes (9 per pixel: a 12 MP image's is 108 MB)
    display_cache: int = 48  # downscaled images kept in memory
    project_kmeans_images: int = 40  # most images one project-wide K-means uses (current image always in)
    eval_max_images: int = 500  # most ground-truth images evaluated after each training
    edges: EdgeConfig | None = field(default_factory=EdgeConfig)  # core.edges (None: bilinear boundaries)
    seed: int = 0
