"""Imperfect labels made from ground-truth masks: the paper's label kinds, reproducibly.

Every generator is seeded per image (from the run seed and the image id), so a label file does not depend on
which other images were generated with it or in which order. "Objects" are the 8-connected components of
each class in the ground truth; void pixels (255) are never labelled by the sparse kinds.

scribble   one stroke per object that follows the object's skeleton (its medial axis). The stroke's centre
           line covers `coverage` of the skeleton pixels (a contiguous stretch grown from a random skeleton
           pixel), and is widened to `width` pixels, clipped to the object. The background (class 0 when it
           is named "background") gets `background_strokes` strokes that together cover the same fraction of
           its skeleton. Components under `min_area` pixels get no stroke (annotators skip fragments).
           Density (labelled / valid pixels) is roughly coverage x width x skeleton length / area: a few
           percent of the pixels on VOC-sized images with the defaults.
point      `points` points per object and `background_points` per image in the background, each a single
           pixel (radius 0) or a disk of `radius` pixels clipped to its object; points are drawn uniformly
           among the pixels where the whole disk fits inside the object (any pixel if none fits).
noisy      dense masks imitating image-level pseudo-labels (SEAM, EPS): void filled with the nearest label,
           object boundaries shifted outwards (spilling into the background) or inwards (given to the
           background), whole objects relabelled as another class, objects dropped to background. One
           strength knob scales all of it; it is calibrated (bisection / regula falsi over the strength) so
           that the labels' mIoU against the ground truth hits `target_miou` within `tolerance`, e.g. the
           paper's SEAM 63.6 and EPS 69.4. By design these labels contain wrong classes.

Sparse generators never label a pixel with anything but its ground-truth class.
"""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from core.labels import IGNORE, write_label_png
from core.metrics import class_iou
from experiments.config import (  # noqa: F401  (re-exported: the generators' settings)
    KINDS,
    LabelGenError,
    NoisyConfig,
    PointConfig,
    ScribbleConfig,
    default_workers,
)

MANIFEST = "labels.json"
_EIGHT = np.ones((3, 3), dtype=bool)


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    """The generator of one image: independent of the other images and of the order they are made in."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(image_id.encode())])


def background_index(classes: Sequence[str]) -> int | None:
    """Class 0 is the background when it is called so (VOC); otherwise every class is an object class."""
    return (
        0 if classes and classes[0].strip().lower() in ("background", "bg", "_background_", "void") else None
    )


# ----------------------------------------------------------------------------------------------------------
# helpers


@dataclass
class _Component:
    cls: int
    slc: tuple[slice, slice]  # bounding box in the image
    mask: np.ndarray  # bool crop of the bounding box

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def components(labels: np.ndarray, classes: Iterable[int] | None = None) -> list[_Component]:
    """8-connected components of each class (255 excluded), in a deterministic order (class, then scan)."""
    out = []
    present = np.unique(labels)
    for c in present if classes is None else classes:
        c = int(c)
        if c == IGNORE or c not in present:
            continue
        lab, n = ndimage.label(labels == c, structure=_EIGHT)
        for i, slc in enumerate(ndimage.find_objects(lab), start=1):
            if slc is not None:
                out.append(_Component(c, slc, lab[slc] == i))
    return out


def _grow_along(skel: np.ndarray, count: int, seeds: int, rng: np.random.Generator) -> np.ndarray:
    """`count` skeleton pixels reached first by a breadth-first walk along the skeleton from `seeds` random
    skeleton pixels: contiguous strokes (one per seed) of about count / seeds pixels each."""
    ys, xs = np.nonzero(skel)
    n = ys.size
    ids = np.full(skel.shape, -1, dtype=np.int64)
    ids[ys, xs] = np.arange(n)
    h, w = skel.shape
    visited = np.zeros(n, dtype=bool)
    taken = []
    queue: deque[int] = deque()
    for s in rng.choice(n, size=min(max(1, seeds), n), replace=False):
        visited[s] = True
        queue.append(int(s))
    while len(taken) < count:
        if not queue:  # a skeleton piece not connected to the seeds so far: start a new stroke there
            s = int(rng.choice(np.flatnonzero(~visited)))
            visited[s] = True
            queue.append(s)
        i = queue.popleft()
        taken.append(i)
        y, x = ys[i], xs[i]
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                yy, xx = y + dy, x + dx
                if (dy or dx) and 0 <= yy < h and 0 <= xx < w:
                    j = ids[yy, xx]
                    if j >= 0 and not visited[j]:
                        visited[j] = True
                        queue.append(int(j))
    line = np.zeros_like(skel)
    sel = np.asarray(taken, dtype=np.int64)
    line[ys[sel], xs[sel]] = True
    return line


def _widen(line: np.ndarray, radius: float, inside: np.ndarray) -> np.ndarray:
    """Pixels within `radius` of `line`, kept inside `inside`."""
    if radius <= 0:
        return line & inside
    return (ndimage.distance_transform_edt(~line) <= radius) & inside


# ----------------------------------------------------------------------------------------------------------
# sparse generators


def scribble_labels(
    gt: np.ndarray,
    rng: np.random.Generator,
    config: ScribbleConfig = ScribbleConfig(),
    background: int | None = 0,
) -> tuple[np.ndarray, dict]:
    """Scribbles for one ground-truth map. Returns (labels, stats) with stats holding `skeleton_pixels` and
    `centreline_pixels` summed over the components that got a stroke."""
    gt = np.asarray(gt)
    out = np.full(gt.shape, IGNORE, dtype=np.uint8)
    skel_total = line_total = strokes = 0
    radius = (config.width - 1) / 2
    for comp in components(gt):
        if comp.area < config.min_area:
            continue
        is_bg = comp.cls == background
        if is_bg and config.background_strokes == 0:
            continue
        mask = np.pad(comp.mask, 1)  # the skeleton of a box touching the crop edge needs a border
        skel = skeletonize(mask)
        if not skel.any():
            skel = np.zeros_like(mask)
            ys, xs = np.nonzero(mask)
            skel[ys[ys.size // 2], xs[xs.size // 2]] = True
        n = int(skel.sum())
        count = max(1, int(round(config.coverage * n)))
        seeds = config.background_strokes if is_bg else 1
        line = _grow_along(skel, count, seeds, rng)
        drawn = _widen(line, radius, mask)[1:-1, 1:-1]
        out[comp.slc][drawn] = comp.cls
        skel_total += n
        line_total += count
        strokes += min(seeds, n)
    return out, {"skeleton_pixels": skel_total, "centreline_pixels": line_total, "strokes": strokes}


def _pick_points(mask: np.ndarray, k: int, radius: int, rng: np.random.Generator) -> np.ndarray:
    """A bool map of k distinct points inside mask, drawn where a disk of `radius` fits (if anywhere)."""
    cand = mask
    if radius > 0:
        fits = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1] > radius
        if fits.any():
            cand = fits
    ys, xs = np.nonzero(cand)
    pick = rng.choice(ys.size, size=min(k, ys.size), replace=False)
    pts = np.zeros_like(mask)
    pts[ys[pick], xs[pick]] = True
    return pts


def point_labels(
    gt: np.ndarray, rng: np.random.Generator, config: PointConfig = PointConfig(), background: int | None = 0
) -> tuple[np.ndarray, dict]:
    """Points for one ground-truth map. Returns (labels, stats) with the number of points drawn."""
    gt = np.asarray(gt)
    out = np.full(gt.shape, IGNORE, dtype=np.uint8)
    n_obj = 0
    for comp in components(gt, [c for c in np.unique(gt) if c != background]):
        if comp.area < config.min_area:
            continue
        pts = _pick_points(comp.mask, config.points, config.radius, rng)
        out[comp.slc][_widen(pts, config.radius, comp.mask)] = comp.cls
        n_obj += int(pts.sum())
    n_bg = 0
    if background is not None and config.background_points:
        bg = gt == background
        if bg.any():
            pts = _pick_points(bg, config.background_points, config.radius, rng)
            out[_widen(pts, config.radius, bg)] = background
            n_bg = int(pts.sum())
    return out, {"object_points": n_obj, "background_points": n_bg}


# ----------------------------------------------------------------------------------------------------------
# noisy dense labels


def fill_void(gt: np.ndarray) -> np.ndarray:
    """Void (255) pixels take the label of the nearest labelled pixel (pseudo-labels are dense)."""
    void = gt == IGNORE
    if not void.any() or void.all():
        return gt.copy()
    _, (iy, ix) = ndimage.distance_transform_edt(void, return_indices=True)
    return gt[iy, ix]


@dataclass
class _NoisyObject:
    comp: _Component
    u_flip: float
    u_drop: float
    grows: bool
    scale: float
    wrong: int


@dataclass
class NoisePlan:
    """The random draws of one image; `corrupt` applies them at any strength (so calibration can re-run it)."""

    filled: np.ndarray
    objects: list[_NoisyObject]
    background: int | None


def plan_noise(
    gt: np.ndarray,
    rng: np.random.Generator,
    num_classes: int,
    config: NoisyConfig,
    background: int | None = 0,
) -> NoisePlan:
    filled = fill_void(np.asarray(gt))
    objects = []
    others = [c for c in range(num_classes) if c != background]
    for comp in components(filled, [c for c in np.unique(filled) if c != background and c != IGNORE]):
        wrong_choices = [c for c in others if c != comp.cls]
        objects.append(
            _NoisyObject(
                comp=comp,
                u_flip=float(rng.random()),
                u_drop=float(rng.random()),
                grows=bool(rng.random() < config.grow),
                scale=float(rng.uniform(0.5, 1.5)),
                wrong=int(rng.choice(wrong_choices)) if wrong_choices else comp.cls,
            )
        )
    return NoisePlan(filled, objects, background)


def _expanded(slc: tuple[slice, slice], pad: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    return tuple(slice(max(0, s.start - pad), min(n, s.stop + pad)) for s, n in zip(slc, shape, strict=True))


def corrupt(
    plan: NoisePlan,
    strength: float,
    boundary_strength: float | None = None,
    config: NoisyConfig = NoisyConfig(),
) -> np.ndarray:
    """The noisy label map of one image at a strength (0 = the void-filled ground truth)."""
    b_strength = strength if boundary_strength is None else boundary_strength
    out = plan.filled.copy()
    bg = plan.background
    shape = out.shape
    for ob in plan.objects:
        comp = ob.comp
        r = b_strength * ob.scale * config.boundary * math.sqrt(comp.area)
        r = min(r, float(np.hypot(*shape)))
        region_slc, region = comp.slc, comp.mask.copy()
        if r >= 1.0:
            big = _expanded(comp.slc, int(math.ceil(r)) + 1, shape)
            mask = np.zeros((big[0].stop - big[0].start, big[1].stop - big[1].start), dtype=bool)
            oy, ox = comp.slc[0].start - big[0].start, comp.slc[1].start - big[1].start
            mask[oy : oy + comp.mask.shape[0], ox : ox + comp.mask.shape[1]] = comp.mask
            window = out[big]
            if ob.grows:
                near = ndimage.distance_transform_edt(~mask) <= r
                spill = near & ~mask & ((window == bg) if bg is not None else (window != comp.cls))
                window[spill] = comp.cls
                region_slc, region = big, mask | spill
            else:
                depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
                rim = mask & (depth <= r)
                if bg is not None:
                    window[rim] = bg
                else:
                    _, (iy, ix) = ndimage.distance_transform_edt(mask, return_indices=True)
                    window[rim] = window[iy, ix][rim]
                region_slc, region = big, mask & ~rim
        if ob.u_flip < strength * config.flip:
            out[region_slc][region] = ob.wrong
        elif bg is not None and ob.u_drop < strength * config.drop:
            out[region_slc][region] = bg
    return out


# ----------------------------------------------------------------------------------------------------------
# label quality


class LabelQuality:
    """How good a set of label maps is against the ground truth (GT void pixels excluded).

    miou       mIoU with unlabelled pixels counted as misses: for dense labels the usual pseudo-label
               quality (the paper's SEAM 63.6 / EPS 69.4); for sparse labels it is low by construction.
    coverage   labelled pixels / valid pixels (the density).
    precision  correct labelled pixels / labelled pixels (1.0 for scribbles and points).
    """

    def __init__(self, num_classes: int):
        self.k = num_classes
        self.matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)  # last column: unlabelled

    def update(self, gt: np.ndarray, labels: np.ndarray) -> LabelQuality:
        gt, labels = np.asarray(gt), np.asarray(labels)
        if gt.shape != labels.shape:
            raise LabelGenError(f"labels {labels.shape} and ground truth {gt.shape} differ in size")
        keep = gt != IGNORE
        g = gt[keep].astype(np.int64)
        p = labels[keep].astype(np.int64)
        p = np.where(p == IGNORE, self.k, p)
        if (g >= self.k).any() or (p > self.k).any():
            raise LabelGenError(f"class index out of range for {self.k} classes")
        self.matrix += np.bincount(g * (self.k + 1) + p, minlength=self.k * (self.k + 1)).reshape(
            self.k, self.k + 1
        )
        return self

    def miou(self) -> float:
        cm = self.matrix  # unlabelled pixels (last column) count in the ground-truth total only: misses
        return class_iou(np.diag(cm[:, : self.k]), cm.sum(1), cm[:, : self.k].sum(0))[1]

    def summary(self) -> dict:
        cm = self.matrix
        total = int(cm.sum())
        labelled = int(cm[:, : self.k].sum())
        correct = int(np.trace(cm[:, : self.k]))
        return {
            "miou": self.miou(),
            "coverage": labelled / total if total else math.nan,
            "precision": correct / labelled if labelled else math.nan,
            "labelled_pixels": labelled,
            "valid_pixels": total,
        }


# ----------------------------------------------------------------------------------------------------------
# calibration of the noisy labels


def _solve(
    f: Callable[[float], float],
    lo: float,
    f_lo: float,
    hi: float,
    f_hi: float,
    target: float,
    tol: float,
    max_iter: int = 40,
) -> tuple[float, float, float, float]:
    """Find s in [lo, hi] with |f(s) - target| <= tol for f decreasing-ish with f(lo) >= target > f(hi):
    Illinois regula falsi, with a bisection step every third try so a step-shaped f cannot stall it.
    Returns (best s, f(best s), lo, f(lo)) where lo is the last strength still at or above the target."""
    best = (lo, f_lo) if abs(f_lo - target) <= abs(f_hi - target) else (hi, f_hi)
    g_lo, g_hi = f_lo - target, f_hi - target
    side = 0
    for i in range(max_iter):
        if abs(best[1] - target) <= tol or hi - lo < 1e-6 * max(1.0, hi):
            break
        s = (lo * g_hi - hi * g_lo) / (g_hi - g_lo) if i % 3 != 2 and g_hi != g_lo else (lo + hi) / 2
        if not lo < s < hi:
            s = (lo + hi) / 2
        v = f(s)
        if abs(v - target) < abs(best[1] - target):
            best = (s, v)
        if v >= target:
            lo, f_lo, g_lo = s, v, v - target
            if side == 1:
                g_hi /= 2
            side = 1
        else:
            hi, g_hi = s, v - target
            if side == -1:
                g_lo /= 2
            side = -1
    return best[0], best[1], lo, f_lo


@dataclass
class NoisyCalibration:
    strength: float  # objects: flips and drops
    boundary_strength: float  # boundary shifts
    estimated_miou: float  # on the calibration subset
    evaluations: int = 0
    history: list = field(default_factory=list)


def calibrate_noisy(
    plans: Sequence[NoisePlan] | Callable[[], Iterable[tuple[np.ndarray, NoisePlan]]],
    gts: Sequence[np.ndarray] | None,
    num_classes: int,
    config: NoisyConfig,
) -> NoisyCalibration:
    """Find the strengths at which the labels' mIoU against the ground truth is config.target_miou.

    First both knobs move together; if a whole-object flip makes the mIoU jump over the tolerance band, the
    object knob stays at the last strength above the target and the (pixel-fine) boundary knob closes the gap."""
    target, tol = config.target_miou, config.tolerance
    history: list = []

    def evaluate(s_obj: float, s_bnd: float) -> float:
        q = LabelQuality(num_classes)
        if callable(plans):
            for gt, plan in plans():
                q.update(gt, corrupt(plan, s_obj, s_bnd, config))
        else:
            for gt, plan in zip(gts, plans, strict=True):
                q.update(gt, corrupt(plan, s_obj, s_bnd, config))
        v = q.miou()
        history.append((s_obj, s_bnd, v))
        return v

    f0 = evaluate(0.0, 0.0)
    if f0 < target - tol:
        raise LabelGenError(
            f"the ground truth itself scores mIoU {100 * f0:.1f} against itself after filling void pixels, "
            f"below the target {100 * target:.1f}; pick a lower --target-miou"
        )
    if abs(f0 - target) <= tol:
        return NoisyCalibration(0.0, 0.0, f0, len(history), history)

    def bracket(f: Callable[[float], float], start: float) -> tuple[float, float]:
        hi = max(start, 0.25)
        while True:
            v = f(hi)
            if v < target or hi >= config.max_strength:
                return hi, v
            hi *= 2

    both = lambda s: evaluate(s, s)  # noqa: E731
    hi, f_hi = bracket(both, 0.25)
    if f_hi >= target:
        raise LabelGenError(
            f"even the strongest corruption leaves mIoU {100 * f_hi:.1f} above the target {100 * target:.1f}; "
            "raise --target-miou"
        )
    s, v, lo, f_lo = _solve(both, 0.0, f0, hi, f_hi, target, tol)
    if abs(v - target) <= tol:
        return NoisyCalibration(s, s, v, len(history), history)
    s_obj = lo
    bnd = lambda b: evaluate(s_obj, b)  # noqa: E731
    hi2, f_hi2 = bracket(bnd, max(lo * 2, 0.25))
    if f_hi2 >= target:
        return NoisyCalibration(s, s, v, len(history), history)  # best effort; the caller reports it
    b, v2, _, _ = _solve(bnd, lo, f_lo, hi2, f_hi2, target, tol)
    if abs(v2 - target) < abs(v - target):
        return NoisyCalibration(s_obj, b, v2, len(history), history)
    return NoisyCalibration(s, s, v, len(history), history)


# ----------------------------------------------------------------------------------------------------------
# whole datasets


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img", dynamic_ncols=True)


def write_manifest(out_dir: str | os.PathLike, manifest: dict) -> Path:
    path = Path(out_dir) / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, allow_nan=False, default=_json_default))
    return path


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_manifest(labels_dir: str | os.PathLike) -> dict | None:
    path = Path(labels_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def _clean(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def _label_one(job: tuple) -> tuple[np.ndarray, dict]:
    """Make, write and measure the labels of one image (runs in worker processes)."""
    dataset, image_id, kind, config, seed, bg, out, strengths = job
    gt = dataset.ground_truth(image_id)
    rng = image_rng(seed, image_id)
    if kind == "noisy":
        plan = plan_noise(gt, rng, len(dataset.classes), config, bg)
        labels, stats = corrupt(plan, strengths[0], strengths[1], config), {}
    elif kind == "scribble":
        labels, stats = scribble_labels(gt, rng, config, bg)
    else:
        labels, stats = point_labels(gt, rng, config, bg)
    write_label_png(Path(out) / f"{image_id}.png", labels)
    return LabelQuality(len(dataset.classes)).update(gt, labels).matrix, stats


def _label_all(
    dataset,
    ids,
    kind,
    config,
    seed,
    bg,
    out,
    quality: LabelQuality,
    progress: bool,
    workers: int,
    strengths=(0.0, 0.0),
) -> dict[str, int]:
    """Label every image (in `workers` processes when > 1); accumulates quality, returns summed stats."""
    jobs = [(dataset, image_id, kind, config, seed, bg, str(out), strengths) for image_id in ids]
    totals: dict[str, int] = {}
    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_label_one, jobs, chunksize=max(1, min(64, len(jobs) // (4 * workers))))
            results = _progress(results, len(jobs), f"{kind} labels", progress)
            for matrix, stats in results:
                quality.matrix += matrix
                for key, v in stats.items():
                    totals[key] = totals.get(key, 0) + int(v)
    else:
        for job in _progress(jobs, len(jobs), f"{kind} labels", progress):
            matrix, stats = _label_one(job)
            quality.matrix += matrix
            for key, v in stats.items():
                totals[key] = totals.get(key, 0) + int(v)
    return totals


def generate_labels(
    dataset,
    split: str,
    kind: str,
    out_dir: str | os.PathLike,
    config: ScribbleConfig | PointConfig | NoisyConfig,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    workers: int = 1,
) -> dict:
    """Write imperfect labels for every image of a split (`<out>/<id>.png`, palette, 255 = unlabelled) and
    `<out>/labels.json` (kind, settings, density and quality against the ground truth). Returns the manifest.
    `workers` > 1 labels images in that many processes (the result does not depend on it)."""
    if kind not in ("scribble", "point", "noisy"):
        raise LabelGenError(
            f"unknown label kind {kind!r}; choose scribble, point or noisy (zeroshot: experiments.zeroshot)"
        )
    ids = dataset.ids(split)[:limit] if limit else dataset.ids(split)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bg = background_index(dataset.classes)
    start = time.perf_counter()
    quality = LabelQuality(len(dataset.classes))
    if kind == "noisy":
        extra = _generate_noisy(dataset, ids, out, config, seed, bg, quality, progress, workers)
    else:
        totals = _label_all(dataset, ids, kind, config, seed, bg, out, quality, progress, workers)
        extra = {"totals": totals}
        if kind == "scribble" and totals.get("skeleton_pixels"):
            extra["skeleton_coverage"] = totals["centreline_pixels"] / totals["skeleton_pixels"]
    manifest = {
        "kind": kind,
        "split": split,
        "images": len(ids),
        "seed": seed,
        "config": asdict(config),
        "classes": list(dataset.classes),
        "background": bg,
        "quality": _clean(quality.summary()),
        "seconds": round(time.perf_counter() - start, 3),
        **extra,
    }
    write_manifest(out, manifest)
    return manifest


def _generate_noisy(
    dataset, ids, out, config: NoisyConfig, seed, bg, quality: LabelQuality, progress, workers
) -> dict:
    """Calibrate the strengths on a seeded subset held in memory, write the whole split at them and measure
    it; if the whole split misses the tolerance (the subset misjudged it), recalibrate on all and rewrite."""
    k = len(dataset.classes)
    if len(ids) > config.estimate_images:
        sub = sorted(np.random.default_rng(seed).choice(len(ids), config.estimate_images, replace=False))
        subset = [ids[i] for i in sub]
    else:
        subset = list(ids)
    gts, plans = [], []
    for image_id in _progress(subset, len(subset), "noisy: planning", progress):
        gt = dataset.ground_truth(image_id)
        gts.append(gt)
        plans.append(plan_noise(gt, image_rng(seed, image_id), k, config, bg))
    cal = calibrate_noisy(plans, gts, k, config)
    del gts, plans

    def label_with(cal) -> None:
        _label_all(
            dataset,
            ids,
            "noisy",
            config,
            seed,
            bg,
            out,
            quality,
            progress,
            workers,
            (cal.strength, cal.boundary_strength),
        )

    label_with(cal)
    recalibrated = False
    if len(subset) < len(ids) and abs(quality.miou() - config.target_miou) > config.tolerance:

        def stream():
            for image_id in ids:
                gt = dataset.ground_truth(image_id)
                yield gt, plan_noise(gt, image_rng(seed, image_id), k, config, bg)

        cal = calibrate_noisy(stream, None, k, config)
        quality.matrix[:] = 0
        label_with(cal)
        recalibrated = True
    achieved = quality.miou()
    return {
        "target_miou": config.target_miou,
        "achieved_miou": achieved,
        "within_tolerance": bool(abs(achieved - config.target_miou) <= config.tolerance),
        "strength": cal.strength,
        "boundary_strength": cal.boundary_strength,
        "calibration_images": len(ids) if recalibrated else len(subset),
        "calibration_passes": cal.evaluations,
    }


def measure_labels(dataset, split: str, labels_dir: str | os.PathLike, limit: int | None = None) -> dict:
    """Quality of existing labels (e.g. real SEAM or EPS pseudo-labels) against the ground truth."""
    ids = dataset.ids(split)[:limit] if limit else dataset.ids(split)
    q = LabelQuality(len(dataset.classes))
    for image_id in ids:
        gt = dataset.ground_truth(image_id)
        q.update(gt, dataset.labels(labels_dir, image_id, gt.shape))
    return _clean(q.summary())
