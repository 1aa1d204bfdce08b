"""Part `active`: simulated annotation sessions (experiments.simulate), every strategy side by side in one run.

Three datasets: synthetic token grids whose classes follow the ground truth (bench.synth, like DINOv2 tokens
up to noise; every class one look, all equally common), VOC-like token grids (a dominant background, one to
three objects an image, classes made of common and rare looks, a few looks close to another class's), and a
VOC-layout folder of textured synthetic scenes whose features come from the backbone
through the project's own path (FeatureStore; random weights here, as no real weights can be downloaded).
Each strategy runs with several annotator seeds; a strategy's figure is the median over seeds of the
strokes it needed to reach 95 % of the full-ground-truth mIoU (a seed that ran out of budget counts as
budget + 1, so the median stays honest); sessions stop once they reach it, but the first seed's, whose
whole curves are plotted. Targets: `uncertainty` needs at most half the strokes of `random`
and at most 1.5x those of the `error` oracle.
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
import statistics
import tempfile
from pathlib import Path

import torch
from PIL import Image

from bench import synth
from bench.config import BenchConfig
from bench.report import Report
from core.labels import write_label_png
from experiments import simulate

log = logging.getLogger("bench")

BENCH_DIR = Path(__file__).resolve().parent
PLOT = BENCH_DIR / "active.png"  # committed with a full run; the README shows it
# the app-facing strategies; lookahead (a refit per candidate stroke) was measured once, bench/NOTES.md
STRATEGIES = simulate.DEFAULT_STRATEGIES
MEANINGFUL_MIOU = 0.3  # below this full-label mIoU the stroke counts measure nothing (see run_active)


def synthetic_dataset(cfg: BenchConfig) -> tuple[list[simulate.Sample], list[simulate.Sample]]:
    model = synth.TokenModel.create(
        cfg.num_classes, cfg.active_dim, cfg.seed + 500, separation=cfg.active_separation
    )

    def samples(n: int, offset: int) -> list[simulate.Sample]:
        out = []
        for i in range(n):
            seed = cfg.seed + offset + i
            gt = synth.make_gt(cfg.active_size, cfg.active_size, cfg.num_classes, seed)
            out.append(
                simulate.Sample(synth.synthetic_tokens(gt, model, seed, long_side=cfg.active_size), gt)
            )
        return out

    return samples(cfg.active_train, 600), samples(cfg.active_val, 700)


def voc_like_dataset(cfg: BenchConfig) -> tuple[list[simulate.Sample], list[simulate.Sample]]:
    """VOC-like scenes (bench.synth.make_voc_like): background over ~80 % of the pixels, one to three objects
    an image, every class a union of appearance modes with rare looks and confusers, as real features are."""
    model = synth.ModeModel.create(
        cfg.num_classes, cfg.active_dim, cfg.seed + 900, separation=cfg.active_separation
    )

    def samples(n: int, offset: int) -> list[simulate.Sample]:
        out = []
        for i in range(n):
            gt, feats = synth.make_voc_like(cfg.active_size, model, cfg.seed + offset + i, cfg.active_size)
            out.append(simulate.Sample(feats, gt))
        return out

    return samples(cfg.active_train, 1000), samples(cfg.active_val, 1100)


def voc_dataset(cfg: BenchConfig, root: Path) -> tuple[list[simulate.Sample], list[simulate.Sample]]:
    """Textured scenes written in VOC layout, read back and featurised as `python app.py simulate` does."""
    from core.backbone import load_backbone
    from core.cache import FeatureStore
    from core.features import FeatureConfig, FeatureExtractor
    from core.voc import VocDataset

    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    splits = {
        "train": range(cfg.active_train),
        "val": range(cfg.active_train, cfg.active_train + cfg.active_val),
    }
    for split, ids in splits.items():
        for i in ids:
            scene = synth.make_scene(cfg.active_size, cfg.active_size, cfg.num_classes, cfg.seed + 800 + i)
            Image.fromarray(scene.rgb).save(root / "JPEGImages" / f"img{i:03d}.png")
            write_label_png(root / "SegmentationClass" / f"img{i:03d}.png", scene.gt)
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(
            "".join(f"img{i:03d}\n" for i in ids)
        )
    (root / "classes.txt").write_text("".join(f"class{c}\n" for c in range(cfg.num_classes)))
    ds = VocDataset.open(root)
    backbone = load_backbone(cfg.backbone, weights="random", device="cpu")
    store = FeatureStore(FeatureExtractor(backbone, FeatureConfig(long_side=cfg.active_size)))

    def samples(split: str) -> list[simulate.Sample]:
        ids = ds.ids(split)
        rgbs = [ds.image(i) for i in ids]
        return [
            simulate.Sample(f, ds.ground_truth(i, rgb.shape[:2]))
            for i, rgb, f in zip(ids, rgbs, store.get_many(rgbs), strict=True)
        ]

    return samples("train"), samples("val")


def _median_strokes(runs: list[dict], strategy: str, budget: int) -> float:
    return statistics.median(r["strategies"][strategy]["strokes_to_95"] or budget + 1 for r in runs)


def _session(cfg: BenchConfig, train: list, val: list, seed: int) -> dict:
    config = simulate.SimConfig(budget=cfg.active_budget, seed=seed)
    plotted = seed == cfg.active_seeds[0]  # whole curves for the plot; the rest stop at 95 %
    return simulate.simulate(train, val, cfg.num_classes, STRATEGIES, config, whole_curves=plotted)


def _sessions(cfg: BenchConfig, train: list, val: list) -> list[dict]:
    """Every seed's session on one dataset, side by side, one process per core (forked: the data is not made
    again)."""
    work = functools.partial(_session, cfg, train, val)
    workers = min(len(cfg.active_seeds), os.cpu_count() or 1)
    if workers == 1:
        return [work(seed) for seed in cfg.active_seeds]
    # one torch thread per session: the sessions run side by side, one per core
    with multiprocessing.get_context("fork").Pool(workers, torch.set_num_threads, (1,)) as pool:
        return pool.map(work, cfg.active_seeds, chunksize=1)


def run_active(cfg: BenchConfig, report: Report) -> None:
    section = report.section(
        "active",
        f"Active labelling: strokes to 95 % of full-label mIoU (median of {len(cfg.active_seeds)} annotator "
        f"seeds, budget {cfg.active_budget})",
        ["dataset", "full-label mIoU", *STRATEGIES, "uncertainty / random", "uncertainty / error"],
    )
    figures: dict = {"datasets": {}}
    with tempfile.TemporaryDirectory(prefix="bench-active-") as tmp:
        datasets = {
            "synthetic tokens": synthetic_dataset(cfg),
            "VOC-like tokens": voc_like_dataset(cfg),
            "VOC layout (random ViT)": voc_dataset(cfg, Path(tmp)),
        }
        for name, (train, val) in datasets.items():
            runs = _sessions(cfg, train, val)
            for seed, run in zip(cfg.active_seeds, runs, strict=True):
                log.info(
                    "   %s seed %d: %s",
                    name,
                    seed,
                    {k: v["strokes_to_95"] for k, v in run["strategies"].items()},
                )
            med = {s: _median_strokes(runs, s, cfg.active_budget) for s in STRATEGIES}
            full = statistics.median(r["full_label_miou"] for r in runs)
            vs_random, vs_error = med["uncertainty"] / med["random"], med["uncertainty"] / med["error"]
            section.add_row(
                [
                    name,
                    f"{100 * full:.1f} %",
                    *(f"{med[s]:g}" for s in STRATEGIES),
                    f"{vs_random:.2f}",
                    f"{vs_error:.2f}",
                ],
                {
                    "dataset": name,
                    "full_label_miou": full,
                    "median_strokes_to_95": med,
                    "per_seed": [{k: v["strokes_to_95"] for k, v in r["strategies"].items()} for r in runs],
                },
            )
            # Features that cannot segment (random ViT weights: a full-label mIoU near chance) reach "95 % of
            # full" in a stroke or two whatever the strategy: no verdict on them.
            meaningful = full >= MEANINGFUL_MIOU
            why = "" if meaningful else f"; full-label mIoU {100 * full:.0f} %: too low for a verdict"
            report.target(
                f"uncertainty vs random, {name}",
                "<= 0.5x the strokes to 95 %",
                f"{vs_random:.2f}x",
                vs_random <= 0.5 if meaningful else None,
                f"{med['uncertainty']:g} vs {med['random']:g} strokes{why}",
            )
            report.target(
                f"uncertainty vs error oracle, {name}",
                "<= 1.5x the strokes to 95 %",
                f"{vs_error:.2f}x",
                vs_error <= 1.5 if meaningful else None,
                f"{med['uncertainty']:g} vs {med['error']:g} strokes{why}",
            )
            figures["datasets"][name] = {
                "median_strokes_to_95": med,
                "full_label_miou": full,
                "simulation": runs[0],
            }
        if cfg.name == "full":
            simulate.plot_simulation(figures["datasets"]["synthetic tokens"]["simulation"], PLOT)
            section.notes.append(
                f"![simulated annotation sessions]({PLOT.name}) (synthetic tokens, seed "
                f"{cfg.active_seeds[0]})"
            )
    section.notes.append(
        "random: a random pixel of each class in turn; uncertainty: the app's rule (core.active: "
        "entropy where unlabelled, weighted by how common that kind of patch is among unsure ones, "
        "blobs before boundary strips; best region across images); both stroke from the middle of the "
        "segment chosen (for uncertainty, the one in the box holding most need); error: the largest wrong "
        "region (an oracle); refine: error, plus accepting each image's confident predictions once"
    )
    report.figures["active"] = json.loads(json.dumps(figures, default=float))
