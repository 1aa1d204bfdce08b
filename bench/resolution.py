"""Part `resolution`: masks as sharp as the image. Synthetic scenes with exact ground truth, a head trained on
scribbles at their own size (1x), then the same scenes drawn 4x and 8x larger (regions and textures scaled,
noise per pixel) predicted with it. The quality figures use synthetic tokens (bench.synth.TokenModel: each
token the mix of class means over the pixels it covers, plus noise, `resolution_noise`) on the grid each
resolution gives, because random backbone weights carry no shape; the cost figures run the real
(random-weight) backbone:
- at a fixed long side of 448 px (every image gets the same 32-token grid: before scales) and at `auto`;
- with the plain bilinear boundary and with the boundary rule (core.edges);
- mIoU and boundary F1 within 3 px (boundary pixels: a 4-neighbour of another class; matched within a
  Euclidean distance of 3 px, both ways);
- feature extraction CPU seconds per megapixel and cache bytes per image, against the bare backbone forward
  of the same tiles (what tiling and blending add);
- a 12,000 x 9,000 photo end to end in a child process (bench/huge.py): its peak RSS against a stated bound.
Random backbone weights, as everywhere in bench/: the figures compare settings, not the real model."""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from bench import synth
from bench.config import BenchConfig
from bench.report import Report, fmt, mib

log = logging.getLogger("bench")
RESOLUTIONS = ("448", "auto")  # before scales (a fixed long side) and the default now


def boundary(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another class."""
    b = np.zeros(labels.shape, bool)
    dx = labels[:, 1:] != labels[:, :-1]
    dy = labels[1:] != labels[:-1]
    b[:, 1:] |= dx
    b[:, :-1] |= dx
    b[1:] |= dy
    b[:-1] |= dy
    return b


def boundary_f1(pred: np.ndarray, gt: np.ndarray, tol: float = 3.0) -> float:
    """F1 of boundary pixels matched within `tol` px (Euclidean) of the other map's boundary."""
    bp, bg = boundary(pred), boundary(gt)
    if not bp.any() or not bg.any():
        return float(bp.any() == bg.any())
    precision = float((ndimage.distance_transform_edt(~bg)[bp] <= tol).mean())
    recall = float((ndimage.distance_transform_edt(~bp)[bg] <= tol).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _bare_cpu(backbone, rgb: np.ndarray, config) -> float:  # type: ignore[no-untyped-def]
    """CPU seconds of the backbone alone on the tiles (or the one input) the extractor uses."""
    import torch

    from core.features import preprocess, tile_starts

    p = backbone.spec.patch_size
    x = preprocess(rgb, config, backbone.spec.input)
    h, w = x.shape[1] // p, x.shape[2] // p
    tiled = config.scale is not None and max(h, w) > config.tile
    ty, tx = (min(config.tile, h), min(config.tile, w)) if tiled else (h, w)
    boxes = [(y, x0) for y in tile_starts(h, ty, config.overlap) for x0 in tile_starts(w, tx, config.overlap)]
    t0 = time.process_time()
    for b0 in range(0, len(boxes), config.batch_size):
        chunk = boxes[b0 : b0 + config.batch_size]
        backbone.patch_tokens(
            torch.stack([x[:, y * p : (y + ty) * p, x0 * p : (x0 + tx) * p] for y, x0 in chunk])
        )
    return time.process_time() - t0


def run_resolution(cfg: BenchConfig, report: Report) -> None:
    from core.backbone import load_backbone
    from core.config import FeatureConfig
    from core.edges import EdgeConfig
    from core.features import FeatureExtractor
    from core.metrics import ConfusionMatrix
    from core.predict import Predictor
    from core.train import LabelledImage, train_head

    backbone = load_backbone(cfg.backbone, weights="random", device="cpu")
    model = synth.TokenModel.create(
        cfg.num_classes, backbone.spec.embed_dim, cfg.seed, noise=cfg.resolution_noise
    )
    h0, w0 = cfg.resolution_size
    seeds = [cfg.seed + 500 + i for i in range(cfg.resolution_scenes)]
    base = {s: synth.make_scene(h0, w0, cfg.num_classes, s) for s in seeds}
    rows: list[dict] = []
    for res in RESOLUTIONS:
        fcfg = FeatureConfig.parse(res)
        ex = FeatureExtractor(backbone, fcfg)
        train = [
            LabelledImage(
                synth.synthetic_tokens(base[s].gt, model, s, fcfg),
                synth.scribble_labels(base[s].gt, cfg.resolution_pixels, s),
                key=str(s),
            )
            for s in seeds
        ]
        head = train_head(train, cfg.num_classes).head
        for scale in cfg.resolution_scales:
            log.info("   resolution %s, %dx", res, scale)
            scores = {False: ConfusionMatrix(cfg.num_classes), True: ConfusionMatrix(cfg.num_classes)}
            f1s: dict[bool, list[float]] = {False: [], True: []}
            cpu, bare, mp, nbytes, grids, refine_s = 0.0, 0.0, 0.0, [], [], []
            for s in seeds:
                scene = (
                    base[s]
                    if scale == 1
                    else synth.make_scene(h0 * scale, w0 * scale, cfg.num_classes, s, scale)
                )
                t0 = time.process_time()
                real = ex.extract(scene.rgb)
                cpu += time.process_time() - t0
                bare += _bare_cpu(backbone, scene.rgb, fcfg)
                mp += scene.gt.size / 1e6
                nbytes.append(real.tokens.numel() * 2)  # float16 in the cache
                grids.append(real.grid)
                feats = synth.synthetic_tokens(scene.gt, model, s + 1000 * scale, fcfg)
                for edges in (False, True):
                    predictor = Predictor(edges=EdgeConfig() if edges else None)
                    predictor.set_features(feats, scene.rgb)
                    t0 = time.perf_counter()
                    labels = predictor.predict(head).labels
                    if edges:
                        refine_s.append((time.perf_counter() - t0) / (scene.gt.size / 1e6))
                    scores[edges].update(scene.gt, labels)
                    f1s[edges].append(boundary_f1(labels, scene.gt))
            for edges in (False, True):
                rows.append(
                    {
                        "resolution": res,
                        "edges": edges,
                        "scale": scale,
                        "size": [h0 * scale, w0 * scale],
                        "grid": list(grids[0]),
                        "miou": scores[edges].scores().miou,
                        "boundary_f1": statistics.mean(f1s[edges]),
                        "cpu_s_per_mp": cpu / mp,
                        "bare_cpu_s_per_mp": bare / mp,
                        "cache_bytes": statistics.mean(nbytes),
                        "predict_s_per_mp": statistics.mean(refine_s) if edges else None,
                    }
                )
    _report(cfg, report, rows)
    _huge(cfg, report)


def _huge(cfg: BenchConfig, report: Report) -> None:
    """The big photo end to end, in a child process (bench/huge.py) whose peak RSS is its own."""
    from PIL import Image

    from core.imageio import resize_rgb

    H, W = cfg.resolution_huge
    log.info("   a %dx%d photo end to end", W, H)
    scene = synth.make_scene(H // 8, W // 8, cfg.num_classes, cfg.seed + 900, 1.0)
    with tempfile.TemporaryDirectory(prefix="bench-huge-") as tmp:
        png, out = Path(tmp) / "photo.png", Path(tmp) / "labels.png"
        Image.fromarray(resize_rgb(scene.rgb, (H, W))).save(png, format="PNG", compress_level=1)
        del scene
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.huge",
                str(png),
                str(out),
                "--backbone",
                cfg.backbone,
                "--classes",
                str(cfg.num_classes),
                "--seed",
                str(cfg.seed),
            ],
            capture_output=True,
            text=True,
            timeout=3600,
            cwd=Path(__file__).resolve().parents[1],
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"bench.huge failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        r = json.loads(out.with_suffix(".json").read_text()) | {"wall_s": wall}
    s = report.section(
        "resolution_huge",
        f"A {W:,} x {H:,} photo end to end (decode, features at auto, predict with the boundary rule, write)",
        ["step", "value"],
    )
    s.add_row(["token grid", f"{r['grid'][1]}x{r['grid'][0]}"], r)
    for step, sec in r["seconds"].items():
        s.add_row([f"{step}: wall, peak RSS", f"{sec:.1f} s, {mib(r['rss_peak_by_step'][step])}"])
    s.add_row(["peak RSS after loading the backbone", mib(r["rss_baseline"])])
    s.add_row(["peak RSS", mib(r["rss_peak"])])
    s.add_row(
        [
            "peak RSS per image pixel, over the baseline",
            f"{(r['rss_peak'] - r['rss_baseline']) / (H * W):.1f} B",
        ]
    )
    s.notes.append(
        "A child process (bench/huge.py): the PNG decoded by core.imageio, features by core.features at `auto`, "
        "labels by core.predict with the boundary rule, in bands of rows; a random-weight head of the bench's "
        "classes. The image itself is 3 bytes a pixel, the labels, confidence and entropy `predict` returns 9."
    )
    report.figures["resolution"]["huge"] = r
    bound = cfg.resolution_huge_rss_bound
    report.target(
        f"resolution: peak RSS on a {W:,} x {H:,} photo",
        f"<= {mib(bound)}",
        mib(r["rss_peak"]),
        r["rss_peak"] <= bound if report.mode == "full" else None,
    )


def _report(cfg: BenchConfig, report: Report, rows: list[dict]) -> None:
    s = report.section(
        "resolution",
        f"Masks at 1x, 4x and 8x the training size ({cfg.resolution_scenes} scenes of "
        f"{cfg.resolution_size[1]}x{cfg.resolution_size[0]} at 1x, {cfg.num_classes} classes, "
        f"{cfg.resolution_pixels:,} scribbled px each)",
        [
            "resolution",
            "boundaries",
            "size",
            "grid",
            "mIoU",
            "boundary F1 @3px",
            "features CPU s/MP",
            "bare forward s/MP",
            "overhead",
            "cache / image",
            "edges s/MP",
        ],
    )
    for r in rows:
        s.add_row(
            [
                r["resolution"],
                "follow edges" if r["edges"] else "bilinear",
                f"{r['scale']}x ({r['size'][1]}x{r['size'][0]})",
                f"{r['grid'][1]}x{r['grid'][0]}",
                fmt(r["miou"]),
                fmt(r["boundary_f1"]),
                fmt(r["cpu_s_per_mp"]),
                fmt(r["bare_cpu_s_per_mp"]),
                f"{r['cpu_s_per_mp'] / max(r['bare_cpu_s_per_mp'], 1e-9):.2f}x",
                f"{r['cache_bytes'] / 1024:,.0f} KiB",
                fmt(r["predict_s_per_mp"]) if r["predict_s_per_mp"] is not None else "",
            ],
            r,
        )
    s.notes.append(
        "448: every image's longer side fed at 448 px (32 tokens), as before scales; auto: the default now "
        "(tiles of 37 tokens past 37). Boundary F1: boundary pixels matched within 3 px both ways. CPU seconds "
        "over both cores (process time); 'bare forward' is the backbone alone on the same tiles."
    )
    report.figures["resolution"] = {"rows": rows}
    full = report.mode == "full"
    get = {(r["resolution"], r["edges"], r["scale"]): r for r in rows}
    before = get[("448", False, 1)]["miou"]
    for scale, goal in ((1, 0.93), (4, 0.90), (8, 0.90)):
        r = get.get(("auto", True, scale))
        if r is None:
            continue
        report.target(
            f"resolution: boundary F1 @3px at {scale}x",
            f">= {goal}",
            fmt(r["boundary_f1"]),
            r["boundary_f1"] >= goal if full else None,
            f"bilinear {fmt(get[('auto', False, scale)]['boundary_f1'])}, before scales "
            f"{fmt(get[('448', False, scale)]['boundary_f1'])}",
        )
        report.target(
            f"resolution: mIoU at {scale}x not below 448/bilinear at 1x",
            f">= {fmt(before)}",
            fmt(r["miou"]),
            r["miou"] >= before - 1e-9 if full else None,
        )
    worst = max(
        r["cpu_s_per_mp"] / max(r["bare_cpu_s_per_mp"], 1e-9) for r in rows if r["resolution"] == "auto"
    )
    report.target(
        "resolution: extraction overhead over the bare forward",
        "<= 1.3x",
        f"{worst:.2f}x",
        worst <= 1.3 if full else None,
    )
