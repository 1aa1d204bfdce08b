"""Benchmark sizes: `full` (the numbers in RESULTS.md, ~7 min for `trainer` and ~25 min for `active` on a
2-core CPU), `quick` (~2 min) and `tiny` (seconds; the smoke test uses it to exercise the machinery, its numbers
mean nothing)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

PARTS = ("trainer", "dense", "canvas", "features", "memory", "soak", "active", "scale", "resolution")


@dataclass(frozen=True)
class BenchConfig:
    name: str
    seed: int = 0
    num_classes: int = 5  # classes of the synthetic scenes
    # 1. retrain time against labelled pixels
    image_size: int = 512  # synthetic training/validation images are square
    train_images: int = 16
    val_images: int = 4
    val_pixels_per_image: int = 20_000  # uniformly sampled validation pixels (same for every method)
    pixel_counts: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    dims: tuple[int, ...] = (384, 768)
    repeats: int = 7  # timed runs per figure after the warm-up (fewer when the budget runs out)
    cell_budget_s: float = 15.0  # stop repeating a figure once its timed runs took this long
    max_iter: int = 100  # L-BFGS iterations (TrainConfig default), for the trainer and the literal Eq. 1
    literal_cells: tuple[tuple[int, int], ...] = ((384, 1_000), (384, 100_000), (768, 100_000))
    forest_trees: int = 100
    forest_budget_s: float = 60.0  # a forest fit projected above this (from the last size) is skipped
    threads: int = 1  # torch threads and forest jobs for part 1: CPU time then measures work, not spinning
    # Interleaved comparisons (trainer, baseline, trainer, baseline, ...): at least min rounds, at most max,
    # stopping once the per-round CPU ratio's (max - min) / median is at most spread_goal or the budget is used.
    compare_min_rounds: int = 3
    compare_max_rounds: int = 7
    compare_budget_s: float = 60.0
    spread_goal: float = 0.2
    # 1c. interactive fits: a few strokes on cached token grids, then one more stroke on one image
    interactive_pixels: int = 1_000
    interactive_stroke_pixels: int = 80
    # 2. dense masks
    dense_images: int = 24
    dense_size: int = 400
    dense_val_images: int = 4
    dense_dim: int = 384
    dense_repeats: int = 3
    # 3. the annotation canvas in Chromium (bench/canvas.py)
    canvas_strokes: int = 30
    canvas_warmup_strokes: int = 3
    canvas_pause_ms: int = 400  # between a stroke's overlay and the next stroke
    canvas_images: int = 3
    canvas_images_large: int = 20
    canvas_labelled_pixels: int = 100_000  # already labelled on the large project's other images
    canvas_size: int = 512
    # the same on big photos at the default resolution (issue: masks as sharp as the image)
    canvas_big_size: tuple[int, int] = (1536, 2048)  # (H, W)
    canvas_big_images: int = 3
    canvas_big_images_large: int = 20
    canvas_big_labelled_pixels: int = 300_000
    canvas_big_resolution: str = "auto"
    canvas_collab_strokes: int = 10  # strokes in one page, watched from another
    canvas_idle_tabs: int = 5
    canvas_idle_s: float = 60.0
    canvas_clients: int = 8
    canvas_concurrent_s: float = 60.0
    app_start_timeout_s: float = 240.0
    # 7. active labelling (bench/active.py): simulated sessions on synthetic tokens and a VOC-layout folder
    active_size: int = 224
    active_dim: int = 384
    active_separation: float = 6.0  # distance between class means of the synthetic tokens (noise 1)
    active_train: int = 12
    active_val: int = 12  # held-out images: fewer make the mIoU curve (and strokes to 95 %) jumpy
    active_budget: int = 80
    # sessions are chaotic: medians of 7 seeds moved by 3-4 strokes from one set of seeds to the next
    active_seeds: tuple[int, ...] = tuple(range(25))
    # 4. feature extraction
    backbone: str = "dinov2_vits14"
    long_side: int = 448
    feature_images: int = 8
    feature_batch: int = 8
    feature_repeats: int = 5
    feature_families: tuple[str, ...] = (  # one model of each family, S and B (bench part features, 4c)
        "dinov2_vits14",
        "dino_vits16",
        "dinov3_vits16",
        "dinov2_vitb14",
        "dino_vitb16",
        "ibot_vitb16",
        "dinov3_vitb16",
    )
    gpu_backbones: tuple[str, ...] = ("dinov2_vits14", "dinov2_vitb14")
    gpu_long_side: int = 448
    gpu_batch: int = 64
    gpu_iters: int = 10
    # 5. memory
    memory_images: int = 1_000
    memory_size: int = 512
    memory_lru_bytes: int = 512 * 2**20  # FeatureStore's default bound
    memory_train_images: int = 20  # images with labels the served head is trained on
    memory_diagnostic: bool = True  # rerun the memory child with glibc's mmap threshold pinned
    # 6. reliability soak
    soak_writers: int = 8  # half threads sharing one repository, half processes
    soak_seconds: float = 60.0
    soak_kill_after: tuple[int, ...] = (3, 60, 150)  # SIGKILL a writer after this many acknowledged writes
    # 8. the live loop at lab scale (bench/scale.py): mixed sizes 512x384 .. 4032x3024
    scale_images: int = 400
    scale_levels: tuple[int, ...] = (20, 60, 200)  # labelled images at which strokes are timed
    scale_pixels: int = 20_000  # labelled px an image (brush strokes, at full size)
    scale_strokes: int = 15  # timed strokes per level
    scale_pause_s: float = 0.3  # between a stroke's final head and the next stroke
    scale_annotators: int = 4
    scale_concurrent_s: float = 60.0
    scale_stroke_every_s: float = 2.0
    scale_switches: int = 15  # image switches timed in the page
    scale_batch_images: int = 200  # `predict` over this many, one process vs torchrun with 2 ranks
    scale_rss_bound: int = 3 * 2**30  # the server's RSS at the end (README, "Memory and disk at scale")
    # 9. masks at the image's scale (bench/resolution.py)
    resolution_scenes: int = 4
    resolution_size: tuple[int, int] = (248, 330)  # (H, W) at 1x
    resolution_scales: tuple[int, ...] = (1, 4, 8)
    resolution_pixels: int = 1_500  # scribbled px per scene at 1x
    # synthetic token noise: low, so a region's inside is classified right and the boundaries are what is
    # measured (the figures imply as much: mIoU 0.97 at 1x); at 1.0 errors inside regions dominate
    resolution_noise: float = 0.1
    resolution_huge: tuple[int, int] = (9_000, 12_000)  # (H, W) of the photo run end to end (bench/huge.py)
    resolution_huge_rss_bound: int = 7 * 2**29  # its peak RSS (3.5 GiB) (README, "Resolution")

    def to_dict(self) -> dict:
        return asdict(self)


FULL = BenchConfig(name="full")

QUICK = replace(
    FULL,
    name="quick",
    image_size=256,
    train_images=8,
    val_images=2,
    val_pixels_per_image=10_000,
    pixel_counts=(1_000, 10_000, 100_000),
    dims=(384,),
    repeats=3,
    cell_budget_s=5.0,
    literal_cells=((384, 100_000),),
    forest_budget_s=8.0,
    compare_max_rounds=4,
    compare_budget_s=15.0,
    dense_images=4,
    dense_val_images=1,
    dense_repeats=2,
    canvas_strokes=8,
    canvas_warmup_strokes=2,
    canvas_images_large=8,
    canvas_labelled_pixels=40_000,
    canvas_big_images_large=6,
    canvas_big_labelled_pixels=90_000,
    canvas_concurrent_s=15.0,
    canvas_idle_s=20.0,
    feature_images=2,
    feature_batch=2,
    feature_repeats=2,
    feature_families=("dinov2_vits14", "dino_vits16", "dinov3_vits16"),
    gpu_iters=5,
    memory_images=200,
    memory_lru_bytes=128 * 2**20,
    memory_diagnostic=False,
    soak_seconds=10.0,
    scale_images=60,
    scale_levels=(10, 30),
    scale_strokes=5,
    scale_concurrent_s=15.0,
    scale_batch_images=20,
    resolution_scenes=2,
    resolution_scales=(1, 4),
    resolution_huge=(3_000, 4_000),
    active_train=6,
    active_val=3,
    active_budget=30,
    active_seeds=(0,),
)

TINY = replace(
    FULL,
    name="tiny",
    image_size=96,
    train_images=3,
    val_images=1,
    val_pixels_per_image=2_000,
    pixel_counts=(300, 2_000),
    dims=(32,),
    repeats=2,
    cell_budget_s=2.0,
    max_iter=20,
    literal_cells=((32, 2_000),),
    forest_trees=5,
    forest_budget_s=5.0,
    compare_min_rounds=2,
    compare_max_rounds=2,
    compare_budget_s=2.0,
    interactive_pixels=300,
    interactive_stroke_pixels=30,
    dense_images=3,
    dense_size=64,
    dense_val_images=1,
    dense_dim=32,
    dense_repeats=1,
    canvas_strokes=3,
    canvas_warmup_strokes=1,
    canvas_images=1,
    canvas_images_large=2,
    canvas_labelled_pixels=2_000,
    canvas_size=96,
    canvas_big_size=(144, 192),
    canvas_big_images=1,
    canvas_big_images_large=2,
    canvas_big_labelled_pixels=2_000,
    canvas_collab_strokes=2,
    canvas_idle_tabs=2,
    canvas_idle_s=3.0,
    canvas_clients=2,
    canvas_concurrent_s=3.0,
    app_start_timeout_s=240.0,  # three server starts in the soak, also on a busy machine
    long_side=112,
    feature_images=2,
    feature_batch=2,
    feature_repeats=1,
    feature_families=("dino_vits16", "dinov3_vits16"),
    gpu_backbones=("dinov2_vits14",),
    gpu_long_side=112,
    gpu_batch=2,
    gpu_iters=1,
    memory_images=12,
    memory_size=64,
    memory_lru_bytes=64 * 2**10,
    memory_train_images=2,
    soak_writers=4,
    soak_seconds=2.0,
    soak_kill_after=(2, 5, 10),
    memory_diagnostic=False,
    scale_images=4,
    scale_levels=(2, 3),
    scale_pixels=2_000,
    scale_strokes=2,
    scale_annotators=2,
    scale_switches=2,
    scale_batch_images=3,
    scale_concurrent_s=2.0,
    scale_stroke_every_s=1.0,
    resolution_scenes=1,
    resolution_size=(60, 80),
    resolution_scales=(1, 2),
    resolution_pixels=300,
    resolution_huge=(300, 400),
    active_size=56,
    active_dim=32,
    active_train=3,
    active_val=1,
    active_budget=4,
    active_seeds=(0,),
)

PRESETS = {c.name: c for c in (FULL, QUICK, TINY)}
