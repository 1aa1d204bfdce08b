"""Part `scale`: the live loop at lab scale. A project of images of mixed sizes (512x384 to 4032x3024),
features from the backbone through the engine's own worker, then 20, 60 and 200 labelled images (brush
strokes inside the scenes' regions, ~20,000 labelled px an image); at each level, strokes through
`ProjectEngine.apply_op` (what the REST API calls) and the times from the acknowledged stroke to the first
new prediction of the stroked image (an interim head's patch-grid scores), to the final head, and to the
end of the work after it (need scores of every image). In-process: no HTTP, whose ack costs ~20 ms.

Baseline, in the same run: the same fit and scoring from cold caches (every label map read and gathered
again, every image's grids recomputed), which is what each stroke cost before the per-image caches
(pieces kept per image and label version). Then several annotators at once (threads, one stroke each
every `scale_stroke_every_s`), and the process's RSS at the end.
"""

from __future__ import annotations

import io
import json
import logging
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench import synth
from bench.config import BenchConfig
from bench.report import Report, mib, seconds
from bench.timing import load_average, rss_bytes

log = logging.getLogger("bench")

SIZES = ((384, 512), (768, 1024), (1536, 2048), (3024, 4032))  # (H, W), in turn
SMALL = 504  # scenes are drawn at this long side and scaled up (texture and strokes alike)


@dataclass
class Lab:
    repo: object
    engine: object
    project_id: int
    class_ids: list[int]
    gts: dict[int, np.ndarray]  # image id -> ground truth at SMALL scale
    sizes: dict[int, tuple[int, int]]  # image id -> (H, W)


def _scene(i: int, cfg: BenchConfig) -> tuple[bytes, np.ndarray, tuple[int, int]]:
    H, W = SIZES[i % len(SIZES)]
    h, w = round(SMALL * H / W), SMALL
    scene = synth.make_scene(h, w, cfg.num_classes, cfg.seed + 9000 + i)
    big = Image.fromarray(scene.rgb).resize((W, H), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=85)
    return buf.getvalue(), scene.gt, (H, W)


def build(cfg: BenchConfig, root: Path, report_progress: bool = True) -> tuple[Lab, dict]:
    from core.backbone import load_backbone
    from core.config import FeatureConfig
    from engine import EngineSettings, ProjectEngine
    from storage import Repository

    repo = Repository.open(root / "data")
    project = repo.create_project("default")
    class_ids = [repo.list_classes(project.id)[0].id]
    class_ids += [repo.add_class(project.id, f"class{c}").id for c in range(1, cfg.num_classes)]
    backbone = load_backbone(cfg.backbone, weights="random", device="cpu")
    # the app's own layout (data and data/features), so the page measured afterwards reuses it all
    engine = ProjectEngine.create(
        repo, backbone, root / "data" / "features", FeatureConfig(cfg.long_side), settings=EngineSettings()
    )
    gts, sizes = {}, {}
    t0 = time.perf_counter()
    for i in range(cfg.scale_images):
        data, gt, size = _scene(i, cfg)
        info = repo.add_image(project.id, data, f"scene{i:04d}.jpg")
        gts[info.id], sizes[info.id] = gt, size
    made = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.ensure_features(project_id=project.id)
    while not engine.worker.wait_idle(30):
        if report_progress:
            p = engine.feature_progress()
            log.info("   features %d / %d", p.done, p.total)
    extracted = time.perf_counter() - t0
    megapixels = sum(h * w for h, w in sizes.values()) / 1e6
    setup = {
        "images": cfg.scale_images,
        "megapixels": megapixels,
        "make_s": made,
        "features_s": extracted,
        "images_per_s": cfg.scale_images / extracted,
    }
    return Lab(repo, engine, project.id, class_ids, gts, sizes), setup


def _labels(lab: Lab, image_id: int, seed: int, per_image: int) -> np.ndarray:
    """Brush strokes at SMALL scale scaled up to the image (about `per_image` labelled px at full size)."""
    gt = lab.gts[image_id]
    H, W = lab.sizes[image_id]
    count = max(30, int(per_image * gt.size / (H * W)))
    small = synth.scribble_labels(gt, count, seed)
    return np.asarray(Image.fromarray(small).resize((W, H), Image.Resampling.NEAREST))


def label_up_to(lab: Lab, n: int, cfg: BenchConfig) -> list[int]:
    """Give the first n images scribbles (stored masks of strokes; the measured strokes are real ops)."""
    ids = sorted(lab.gts)[:n]
    for image_id in ids:
        if lab.repo.get_image(image_id).labelled_pixels == 0:
            lab.repo.save_scribbles(image_id, _labels(lab, image_id, cfg.seed + image_id, cfg.scale_pixels))
    return ids


def _stroke(lab: Lab, image_id: int, rng: np.random.Generator, n: int) -> dict:
    """One stroke op inside a region of the scene: a short line from an interior pixel, its true class."""
    gt = lab.gts[image_id]
    H, W = lab.sizes[image_id]
    h, w = gt.shape
    for _ in range(200):
        y, x = int(rng.integers(4, h - 4)), int(rng.integers(4, w - 12))
        c = int(gt[y, x])
        if (gt[y - 3 : y + 4, x - 3 : x + 12] == c).all():
            break
    sy, sx = H / h, W / w
    pts = [[round((x + dx) * sx), round(y * sy)] for dx in (0, 4, 8)]
    return {
        "op_id": f"bench-{image_id}-{n}-{rng.integers(1 << 30)}",
        "kind": "stroke",
        "class_id": lab.class_ids[c],
        "radius": max(2, round(2 * sx)),
        "points": pts,
    }


def _first_prediction(lab: Lab, image_id: int, counter: int, deadline: float) -> float | None:
    """Wait for a head newer than `counter` and score the image with it (what the canvas fetches)."""
    engine = lab.engine
    while time.perf_counter() < deadline:
        if engine.head_counter(lab.project_id) != counter:
            if engine.grid_scores(lab.project_id, image_id) is not None:
                return time.perf_counter()
        time.sleep(0.002)
    return None


def strokes(lab: Lab, ids: list[int], n: int, seed: int, pause_s: float) -> list[dict]:
    """n strokes one after another on random labelled images: ack, first prediction, final head, settled."""
    engine, pid = lab.engine, lab.project_id
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        image_id = int(rng.choice(ids))
        counter = engine.head_counter(pid)
        t0 = time.perf_counter()
        res, gen = engine.apply_op(pid, image_id, _stroke(lab, image_id, rng, k), "bench")
        acked = time.perf_counter()
        first = _first_prediction(lab, image_id, counter, t0 + 120)
        engine.trainer.wait(pid, gen, timeout=120)
        final = time.perf_counter()
        engine.wait_settled(pid, gen, timeout=300)
        settled = time.perf_counter()
        out.append(
            {
                "ack_s": acked - t0,
                "first_s": None if first is None else first - t0,
                "final_s": final - t0,
                "settled_s": settled - t0,
            }
        )
        time.sleep(pause_s)
    return out


def cold(lab: Lab) -> dict:
    """Baseline: a fit and its scoring with every per-image cache emptied (each stroke's cost before)."""
    engine, pid = lab.engine, lab.project_id
    engine.training_cache(pid).clear()
    for image_id in lab.gts:
        engine.needs.forget(image_id)
    t0 = time.perf_counter()
    outcome = engine.train_now(pid, timeout=600)
    fit = time.perf_counter() - t0
    engine.wait_settled(pid, timeout=600)
    return {"fit_s": fit, "settled_s": time.perf_counter() - t0, "trained_pixels": outcome.trained_pixels}


def annotators(lab: Lab, ids: list[int], cfg: BenchConfig) -> dict:
    """Several annotators at once, each on its own images, one stroke every `scale_stroke_every_s`."""
    engine, pid = lab.engine, lab.project_id
    waits: list[float] = []
    lost = errors = acked = 0
    lock = threading.Lock()
    end = time.perf_counter() + cfg.scale_concurrent_s

    def one(a: int) -> None:
        nonlocal lost, errors, acked
        rng = np.random.default_rng(cfg.seed + 100 + a)
        mine = ids[a :: cfg.scale_annotators]
        k = 0
        while time.perf_counter() < end:
            image_id = int(rng.choice(mine))
            counter = engine.head_counter(pid)
            t0 = time.perf_counter()
            try:
                res, _gen = engine.apply_op(pid, image_id, _stroke(lab, image_id, rng, k), f"a{a}")
            except Exception:  # noqa: BLE001 (counted: the target is none)
                with lock:
                    errors += 1
                continue
            k += 1
            # an annotator draws again after the interval whether or not the prediction came
            first = _first_prediction(lab, image_id, counter, t0 + cfg.scale_stroke_every_s)
            with lock:
                acked += int(res.applied)
                if first is None:
                    lost += 1
                else:
                    waits.append(first - t0)
            time.sleep(max(0.0, t0 + cfg.scale_stroke_every_s - time.perf_counter()))

    threads = [threading.Thread(target=one, args=(a,)) for a in range(cfg.scale_annotators)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "acked": acked,
        "errors": errors,
        "no_prediction_within_interval": lost,
        "first_p50_s": statistics.median(waits) if waits else None,
        "first_p95_s": _p95(waits),
    }


def _p95(values: list[float]) -> float | None:
    return float(np.percentile(values, 95)) if values else None


def _median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def run_scale(cfg: BenchConfig, report: Report) -> None:
    from webapp.server import limit_heap_fragmentation

    limit_heap_fragmentation()  # the allocator setting the server runs with (its RSS is what is judged)
    with tempfile.TemporaryDirectory(prefix="probeseg-scale-") as tmp:
        lab, setup = build(cfg, Path(tmp))
        try:
            _measure(cfg, report, lab, setup)
            expected = _most_uncertain_name(lab)
            head_dir, folder = _batch_inputs(lab, Path(tmp), cfg.scale_batch_images)
        finally:
            lab.engine.close()
            lab.repo.close()
        _browser_section(cfg, report, browser(cfg, Path(tmp), expected))
        _batch_section(cfg, report, sharded_predict(head_dir, folder, Path(tmp)))


def _most_uncertain_name(lab: Lab) -> str:
    from webapp.callbacks_views import SORTS, sorted_images

    return sorted_images(lab.repo.list_images(lab.project_id), SORTS[1])[0].name


READY = (
    "(prev) => { const s = window.__probeseg && window.__probeseg.state; "
    "return !!(s && s.cfg && s.cfg.image && s.cfg.image.id !== prev && s.img && s.labelsFor === s.cfg.image.id); }"
)


def browser(cfg: BenchConfig, root: Path, most_uncertain: str) -> dict:
    """The page on the lab's project (the app started as a user starts it): first usable canvas, image
    switches with n, Suggest, the uncertainty sort, the project K-means view, long tasks while scrolling the
    gallery."""
    from playwright.sync_api import sync_playwright

    from bench.app import AppProcess
    from bench.canvas import launch

    app = AppProcess(cfg, root / "data")
    out: dict = {}
    try:
        app.wait_ready(cfg.app_start_timeout_s)
        with sync_playwright() as p:
            ctx = launch(p, root / "profile")
            page = ctx.new_page()
            t0 = time.perf_counter()
            log.info("   page: load")
            page.goto(app.url, wait_until="load")
            page.wait_for_function(READY, arg=-1)
            out["first_usable_s"] = time.perf_counter() - t0
            page.wait_for_timeout(1000)
            log.info("   page: image switches")
            switches = []
            for _ in range(cfg.scale_switches):
                prev = page.evaluate("() => window.__probeseg.state.cfg.image.id")
                t = time.perf_counter()
                page.keyboard.press("n")
                page.wait_for_function(READY, arg=prev)
                switches.append(time.perf_counter() - t)
                page.wait_for_timeout(150)
            out["switch_s"] = switches
            log.info("   page: suggest")
            t = time.perf_counter()
            page.locator("#suggest-btn").click()
            page.wait_for_function(
                "() => { const g = document.querySelector('#suggestions'); "
                "return g && g.offsetParent !== null && g.querySelectorAll('img').length > 0; }"
            )
            out["suggest_s"] = time.perf_counter() - t
            log.info("   page: sort")
            t = time.perf_counter()
            page.locator("#sort input").click()
            page.get_by_role("option", name="Most uncertain first").click()
            page.wait_for_function(
                "(name) => { const c = document.querySelector('#gallery .caption-label'); "
                "return !!(c && c.textContent.startsWith(name)); }",
                arg=most_uncertain,
            )
            out["sort_s"] = time.perf_counter() - t
            page.evaluate(
                "() => { window.__longtasks = []; new PerformanceObserver((l) => l.getEntries().forEach("
                "(e) => window.__longtasks.push(e.duration))).observe({ type: 'longtask' }); }"
            )
            log.info("   page: gallery scrolling")
            page.locator("#gallery").hover()
            for _ in range(30):
                page.mouse.wheel(0, 240)
                page.wait_for_timeout(60)
            page.wait_for_timeout(500)
            out["scroll_longtasks_ms"] = page.evaluate("() => window.__longtasks")
            log.info("   page: project K-means view")
            t = time.perf_counter()
            page.get_by_label("K-means (project)").check()
            page.wait_for_function(
                "() => { const n = document.querySelector('#view-note'); "
                "return !!(n && /project.s images/.test(n.textContent)); }"
            )
            out["kmeans_project_s"] = time.perf_counter() - t
            ctx.close()
    finally:
        app.stop()
    return out


def _browser_section(cfg: BenchConfig, report: Report, got: dict) -> None:
    s = report.section(
        "scale_page",
        f"The page in Chromium with {cfg.scale_images} images (1366x768, the app as a user starts it)",
        ["figure", "value"],
    )
    switch = got["switch_s"]
    longest = max(got["scroll_longtasks_ms"], default=0.0)
    rows = [
        ("first usable canvas after load", seconds(got["first_usable_s"])),
        (
            f"image switch (n) p50 / p95 of {len(switch)}",
            f"{seconds(_median(switch))} / {seconds(_p95(switch))}",
        ),
        ("Suggest (g) until the suggestions show", seconds(got["suggest_s"])),
        ("sort: most uncertain first", seconds(got["sort_s"])),
        ("K-means (project) view", seconds(got["kmeans_project_s"])),
        ("longest task while scrolling the gallery", f"{longest:.0f} ms"),
    ]
    for name, value in rows:
        s.add_row([name, value])
    s.records.append(got)
    report.figures.setdefault("scale", {})["page"] = got
    full = cfg.name == "full"
    report.target(
        "scale page: first usable canvas",
        "<= 5 s",
        seconds(got["first_usable_s"]),
        got["first_usable_s"] <= 5.0 if full else None,
    )
    report.target(
        "scale page: image switch p50",
        "<= 300 ms",
        seconds(_median(switch)),
        (_median(switch) or 1e9) <= 0.3 if full else None,
    )
    report.target(
        "scale page: Suggest", "<= 1 s", seconds(got["suggest_s"]), got["suggest_s"] <= 1.0 if full else None
    )
    report.target(
        "scale page: gallery scrolling, longest task",
        "<= 200 ms",
        f"{longest:.0f} ms",
        longest <= 200 if full else None,
    )


def _measure(cfg: BenchConfig, report: Report, lab: Lab, setup: dict) -> None:
    s = report.section(
        "scale_setup",
        f"Lab scale: {setup['images']} images of mixed sizes ({setup['megapixels']:.0f} MP), {cfg.backbone} "
        f"random weights at long side {cfg.long_side}",
        ["step", "value"],
    )
    s.add_row(["feature extraction (engine worker)", f"{setup['images_per_s']:.2f} images/s"], setup)
    rows = report.section(
        "scale_strokes",
        "Stroke to prediction at lab scale (engine.apply_op; medians and p95 over the strokes)",
        [
            "labelled images",
            "labelled px",
            "ack p50",
            "first prediction p50",
            "first p95",
            "final head p50",
            "settled p50",
            "cold fit (baseline)",
            "cold fit + scoring",
            "speed-up (first vs cold)",
        ],
    )
    figures: dict = {}
    for level in cfg.scale_levels:
        ids = label_up_to(lab, level, cfg)
        labelled_px = sum(i.labelled_pixels for i in lab.repo.list_images(lab.project_id))
        base = cold(lab)  # also the warm-up: every cache filled for the strokes that follow
        got = strokes(lab, ids, cfg.scale_strokes, cfg.seed + level, cfg.scale_pause_s)
        first = [g["first_s"] for g in got]
        rec = {
            "labelled_images": level,
            "labelled_px": labelled_px,
            "ack_p50_s": _median([g["ack_s"] for g in got]),
            "first_p50_s": _median(first),
            "first_p95_s": _p95([f for f in first if f is not None]),
            "final_p50_s": _median([g["final_s"] for g in got]),
            "settled_p50_s": _median([g["settled_s"] for g in got]),
            "cold_fit_s": base["fit_s"],
            "cold_settled_s": base["settled_s"],
            "no_prediction": sum(f is None for f in first),
            "load": load_average(),
        }
        speedup = base["settled_s"] / rec["first_p50_s"] if rec["first_p50_s"] else None
        rows.add_row(
            [
                level,
                labelled_px,
                seconds(rec["ack_p50_s"]),
                seconds(rec["first_p50_s"]),
                seconds(rec["first_p95_s"]),
                seconds(rec["final_p50_s"]),
                seconds(rec["settled_p50_s"]),
                seconds(rec["cold_fit_s"]),
                seconds(rec["cold_settled_s"]),
                "-" if speedup is None else f"{speedup:.1f}x",
            ],
            rec,
        )
        figures[f"labelled_{level}"] = rec
        log.info(
            "   %d labelled: first p50 %s, final p50 %s",
            level,
            seconds(rec["first_p50_s"]),
            seconds(rec["final_p50_s"]),
        )
    rows.notes.append(
        "first prediction: from the call to the moment a newer head (interim or final) has scored the stroked "
        "image; final head: the stroke's own fit stored; settled: need scores of every image stored too. "
        "Baseline (same run): the same fit and scoring with every per-image cache emptied, which each "
        "stroke cost before; the speed-up compares it with the first prediction."
    )
    top = figures[f"labelled_{cfg.scale_levels[-1]}"]
    many = annotators(lab, sorted(lab.gts)[: cfg.scale_levels[-1]], cfg)
    current, peak = rss_bytes()
    c = report.section(
        "scale_concurrent",
        f"{cfg.scale_annotators} annotators at once for {cfg.scale_concurrent_s:.0f} s (one stroke each every "
        f"{cfg.scale_stroke_every_s:.0f} s), then memory",
        ["figure", "value"],
    )
    c.add_row(["strokes acknowledged", many["acked"]], many)
    c.add_row(["errors", many["errors"]])
    c.add_row(["strokes without a prediction before the next one", many["no_prediction_within_interval"]])
    c.add_row(["first prediction p50", seconds(many["first_p50_s"])])
    c.add_row(["first prediction p95", seconds(many["first_p95_s"])])
    cache = lab.engine.training_cache(lab.project_id).nbytes
    c.add_row(["training cache (gathered + labelled pixels)", mib(cache)])
    c.add_row(["RSS at the end / peak", f"{mib(current)} / {mib(peak)}"])
    figures |= {"concurrent": many, "rss_end": current, "rss_peak": peak, "training_cache_bytes": cache}
    report.figures["scale"] = figures

    full = cfg.name == "full"
    for level in cfg.scale_levels:
        r = figures[f"labelled_{level}"]
        report.target(
            f"scale: {level} labelled, stroke -> first prediction p50",
            "<= 500 ms",
            seconds(r["first_p50_s"]),
            (r["first_p50_s"] or 1e9) <= 0.5 if full else None,
        )
        report.target(
            f"scale: {level} labelled, final head p50",
            "<= 3 s",
            seconds(r["final_p50_s"]),
            r["final_p50_s"] <= 3.0 if full else None,
        )
    report.target(
        f"scale: {cfg.scale_levels[-1]} labelled, first prediction p95",
        "<= 1 s",
        seconds(top["first_p95_s"]),
        (top["first_p95_s"] or 1e9) <= 1.0 if full else None,
    )
    report.target(
        f"scale: {cfg.scale_annotators} annotators, lost / errors",
        "0 / 0",
        f"{many['no_prediction_within_interval']} / {many['errors']}",
        (many["no_prediction_within_interval"] == 0 and many["errors"] == 0) if full else None,
    )
    report.target(
        f"scale: {cfg.scale_annotators} annotators, first prediction p50",
        "<= 1 s",
        seconds(many["first_p50_s"]),
        (many["first_p50_s"] or 1e9) <= 1.0 if full else None,
    )
    report.target(
        "scale: server RSS at the end",
        f"<= {mib(cfg.scale_rss_bound)}",
        mib(current),
        current <= cfg.scale_rss_bound if full else None,
    )


def _batch_inputs(lab: Lab, root: Path, n: int) -> tuple[Path, Path]:
    """The lab's head (as the page exports it) and its first n images as files, for `predict`."""
    head = lab.repo.latest_head(lab.project_id)
    assert head is not None  # trained at every level above
    weights, _meta = lab.repo.export_head(head.id, root / "head")
    folder = root / "batch"
    folder.mkdir()
    for info in lab.repo.list_images(lab.project_id)[:n]:
        (folder / info.name).write_bytes(lab.repo.image_bytes(info.id))
    return weights.parent, folder


def sharded_predict(head: Path, folder: Path, root: Path) -> dict:
    """`predict` over the folder in one process and under torchrun with 2 CPU ranks: time and equality."""
    import os
    import subprocess
    import sys

    from bench.app import REPO_ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    common = ["predict", "--head", str(head), "--images", str(folder), "--no-cache"]
    runs = {
        "one": [sys.executable, "app.py"],
        "two": [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "app.py",
        ],
    }
    out: dict = {"images": len(list(folder.iterdir()))}
    for name, cmd in runs.items():
        t = time.perf_counter()
        done = subprocess.run(
            [*cmd, *common, "--out", str(root / name), "--coco", str(root / f"{name}.json")],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"predict ({name}) failed: {done.stderr[-600:]}")
        out[f"{name}_s"] = time.perf_counter() - t
    from core.labels import read_label_png

    pngs = sorted(p.name for p in (root / "one").glob("*.png"))
    same_files = pngs == sorted(p.name for p in (root / "two").glob("*.png"))
    # The ranks run one torch thread each and batch other images together than one process does: float sums
    # in another order, so a pixel whose two best classes tie may flip. Equal files, and the share of pixels
    # that agree.
    agree = total = identical = 0
    for name in pngs if same_files else []:
        a, b = read_label_png(root / "one" / name), read_label_png(root / "two" / name)
        agree, total = agree + int((a == b).sum()), total + a.size
        identical += int((root / "one" / name).read_bytes() == (root / "two" / name).read_bytes())
    doc_one, doc_two = (json.loads((root / f"{n}.json").read_text()) for n in ("one", "two"))
    out |= {
        "same_files": same_files and doc_one["images"] == doc_two["images"],
        "identical_pngs": identical,
        "pixel_agreement": agree / total if total else 0.0,
        "speedup": out["one_s"] / out["two_s"],
    }
    out["same"] = out["same_files"] and out["pixel_agreement"] >= 0.999
    return out


def _batch_section(cfg: BenchConfig, report: Report, got: dict) -> None:
    s = report.section(
        "scale_batch",
        f"`predict` over {got['images']} images of mixed sizes: one process vs torchrun with 2 CPU ranks (gloo)",
        ["run", "wall time", "images/s"],
    )
    s.add_row(["one process", seconds(got["one_s"]), f"{got['images'] / got['one_s']:.2f}"], got)
    s.add_row(["torchrun, 2 ranks", seconds(got["two_s"]), f"{got['images'] / got['two_s']:.2f}"])
    s.notes.append(
        f"speed-up {got['speedup']:.2f}x on this machine's 2 cores (one process already uses both through "
        "torch's threads; ranks pay off across GPUs or machines); the same files and COCO images: "
        f"{'yes' if got['same_files'] else 'NO'}; {got['identical_pngs']} of {got['images']} PNGs byte-identical, "
        f"{100 * got['pixel_agreement']:.4f} % of pixels equal (the ranks' single-threaded float sums differ in "
        "order: a tie between two classes may flip)"
    )
    report.figures.setdefault("scale", {})["batch"] = got
    report.target(
        "scale: torchrun 2 ranks, outputs equal one process",
        "same files, >= 99.9 % of pixels",
        f"{100 * got['pixel_agreement']:.3f} %",
        got["same"] if cfg.name == "full" else None,
    )
