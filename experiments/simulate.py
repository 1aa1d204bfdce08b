"""A simulated annotator: measure how many strokes a labelling strategy needs to reach a held-out mIoU.

The annotator adds one label at a time the way a person does in the app: a short scribble (`stroke_px`
centre-line pixels with a round brush of `width`) that stays inside one ground-truth region (it never crosses
a boundary: the centre line walks inside the region eroded by the brush radius; `stroke_px=1, width=1` makes
every label a click), and after each label the
head is retrained as the app does (the same trainer, warm-started from the previous head, per-image work
cached). Held-out mIoU is recorded after every action.

Strategies (where the next stroke goes):
- `random`: a uniformly random pixel of a class chosen in turn (classes stratified: a seeded shuffle of all
  classes, repeated), in a random image that has it.
- `uncertainty`: the best region by the app's rule (core.active) across all images, labelled as a person
  shown its box would: on the unlabelled ground-truth segment in the box that holds most of the need.
- `error`: an oracle: the deepest point of the largest wrongly predicted unlabelled region.
- `refine`: like `error`, but the first time an image is visited once every class has a label, its
  confident predictions are accepted first (one action, like the app's Refine).
- `lookahead`: an oracle that peeks at the held-out set: it tries a stroke from the middle of every
  unlabelled ground-truth segment (a seeded sample of `LOOKAHEAD_CANDIDATES` when there are more), refits
  for each, and keeps the one that raises held-out mIoU most. Greedy, so not the optimum, but no rule that
  sees only the training images does better in practice: it is the floor the other strategies are read
  against (bench/NOTES.md). Not run by default (a refit and a scoring per candidate per stroke).
`random` and `uncertainty` choose a segment and, as a person does, draw from its middle (the deepest point
of its unlabelled part; of its part inside the box for `uncertainty`), not from the pixel or patch that
chose it, which is often on an edge: the same hand for both, so the comparison measures where, not how.
(Measured, bench/NOTES.md: starting at the neediest patch cost `uncertainty` 50-60 % more strokes; starting
at the random pixel cost `random` 40 % more on the synthetic scenes and ~4x more on the VOC-like ones.)
Until two classes are labelled there is no head; every strategy starts with `random` strokes then.

Cost model (simulated seconds, documented so that curves can be read against time): a scribble costs
`STROKE_S` plus `PIXEL_S` per centre-line pixel; accepting predictions costs `ACCEPT_S`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import cast

import numpy as np
from scipy import ndimage

from core import active
from core.config import TrainConfig
from core.errors import UserError
from core.features import PatchFeatures, pixel_cells
from core.head import LinearHead
from core.labels import IGNORE
from core.metrics import ConfusionMatrix
from core.predict import Prediction, predict
from core.train import LabelledImage, TrainingCache, TrainingError, train_head

STRATEGIES = ("random", "uncertainty", "error", "refine", "lookahead")
DEFAULT_STRATEGIES = STRATEGIES[:4]  # lookahead is an expensive oracle: asked for by name
LOOKAHEAD_CANDIDATES = 48  # strokes a lookahead step tries
_EIGHT = np.ones((3, 3), bool)  # 8-connectivity for segments
STROKE_S = 1.5  # reaching for the spot and pressing the pen
PIXEL_S = 0.02  # drawing, per centre-line pixel (a 40-pixel stroke: 0.8 s)
ACCEPT_S = 2.0  # looking over a prediction and accepting its confident part


class SimulationError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class SimConfig:
    budget: int = 100  # actions (strokes, accepts) per strategy
    stroke_px: int = 40  # centre-line length of a scribble
    width: int = 3  # brush diameter in pixels
    accept_confidence: float = 0.9  # `refine`: predictions at least this confident are accepted
    seed: int = 0
    train: TrainConfig = TrainConfig()

    def __post_init__(self):
        if self.budget < 1 or self.stroke_px < 1 or self.width < 1:
            raise SimulationError("budget, stroke length and brush width must be >= 1")


@dataclass(frozen=True)
class Sample:
    features: PatchFeatures
    gt: np.ndarray  # [H, W] uint8 class indices (255: void, never labelled or scored)
    # [H, W, 3] uint8: the predictions follow its edges (core.edges); None: the bilinear rule
    image: np.ndarray | None = None

    def predict(self, head: LinearHead) -> Prediction:
        """The head's prediction as the app makes it (the boundary rule when the image is known)."""
        return predict(head, self.features, guide=self.image)


@dataclass(frozen=True)
class Point:
    strokes: int  # actions so far
    labelled_px: int
    seconds: float
    miou: float  # fraction


@dataclass
class _Image:
    sample: Sample
    labels: np.ndarray
    visited: bool = False


def score(head: LinearHead, val: Sequence[Sample], num_classes: int) -> float:
    cm = ConfusionMatrix(num_classes)
    for s in val:
        cm.update(s.gt, s.predict(head).labels)
    return float(cm.scores().miou or 0.0)


def full_label_miou(
    train: Sequence[Sample],
    val: Sequence[Sample],
    num_classes: int,
    config: TrainConfig = TrainConfig(class_balance=False),
) -> float:
    """Held-out mIoU of a head trained on the full ground truth of the training images (dense masks)."""
    head = train_head([LabelledImage(s.features, s.gt) for s in train], num_classes, config).head
    return score(head, val, num_classes)


def scribble(
    gt: np.ndarray, start: tuple[int, int], length: int, width: int, rng: np.random.Generator
) -> np.ndarray:
    """[H, W] bool brush stroke inside the ground-truth region holding `start` (never across its boundary)."""
    cls = gt[start]
    comps, _ = ndimage.label(gt == cls, structure=_EIGHT)
    region = comps == comps[start]
    radius = (width - 1) // 2
    inner = ndimage.binary_erosion(region, iterations=radius, border_value=1) if radius else region
    if not inner.any():
        inner, radius = region, 0
    ys, xs = np.nonzero(inner)
    i = int(np.argmin((ys - start[0]) ** 2 + (xs - start[1]) ** 2))  # the nearest brush centre to `start`
    y, x = int(ys[i]), int(xs[i])
    line = np.zeros_like(region)
    line[y, x] = True
    angle = rng.uniform(0, 2 * np.pi)
    for _ in range(length - 1):
        for _attempt in range(8):  # a smooth walk: keep the direction, turn when the region ends
            ny, nx = int(round(y + np.sin(angle))), int(round(x + np.cos(angle)))
            if 0 <= ny < gt.shape[0] and 0 <= nx < gt.shape[1] and inner[ny, nx]:
                break
            angle = rng.uniform(0, 2 * np.pi)
        else:
            break
        y, x = ny, nx
        line[y, x] = True
        angle += rng.normal(0, 0.3)
    stroke = ndimage.binary_dilation(line, iterations=radius) if radius else line
    return stroke & region


class Annotator:
    """One simulated session: `run(strategy)` -> the mIoU curve. Deterministic given the seed."""

    def __init__(
        self,
        train: Sequence[Sample],
        val: Sequence[Sample],
        num_classes: int,
        config: SimConfig = SimConfig(),
    ):
        if not train or not val:
            raise SimulationError("a simulation needs training images and held-out images")
        self.train, self.val, self.k, self.config = list(train), list(val), num_classes, config
        clusters = active.fit_clusters([s.features for s in self.train])  # as the app does for a project
        self._assignments = [clusters.assign(s.features) for s in self.train]
        self._clusters = len(clusters.centroids)
        self._classes = sorted({int(c) for s in self.train for c in np.unique(s.gt)} - {IGNORE})  # in the GT

    def run(
        self, strategy: str, progress: Callable[[int], None] | None = None, stop_at: float | None = None
    ) -> list[Point]:
        """The session's curve, one point per action, over the whole budget or until the held-out mIoU
        reaches `stop_at` (a fraction)."""
        if strategy not in STRATEGIES:
            raise SimulationError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
        rng = np.random.default_rng([self.config.seed, STRATEGIES.index(strategy)])
        images = [_Image(s, np.full(s.gt.shape, IGNORE, np.uint8)) for s in self.train]
        cache, head, seconds, curve = TrainingCache(), None, 0.0, []
        order: list[int] = []
        for step in range(1, self.config.budget + 1):
            seconds += self._step(strategy, images, head, rng, order, cache)
            head = self._fit(images, head, cache)
            miou = score(head, self.val, self.k) if head is not None else 0.0
            curve.append(
                Point(
                    step, int(sum(int((im.labels != IGNORE).sum()) for im in images)), round(seconds, 2), miou
                )
            )
            if progress is not None:
                progress(step)
            if stop_at is not None and miou >= stop_at:
                break
        return curve

    def _step(
        self,
        strategy: str,
        images: list[_Image],
        head: LinearHead | None,
        rng: np.random.Generator,
        order: list[int],
        cache: TrainingCache,
    ) -> float:
        """One annotator action by `strategy`; returns its simulated seconds."""
        if head is None or strategy == "random":
            return self._stroke(images, self._random_start(images, rng, order), rng)
        if strategy == "lookahead":
            target, hand = self._lookahead(images, head, rng, cache)
            if target is None:
                return self._stroke(images, self._random_start(images, rng, order), rng)
            return self._stroke(images, target, hand)
        if strategy == "uncertainty":
            return self._stroke(
                images, self._uncertain_start(images, head) or self._random_start(images, rng, order), rng
            )
        target = self._largest_error(images, head)
        if target is None:
            return self._stroke(images, self._random_start(images, rng, order), rng)
        im = images[target[0]]
        if strategy == "refine" and not im.visited and self._all_classes(images):
            im.visited = True
            if self._accept(im, head):
                return ACCEPT_S
        return self._stroke(images, target, rng)

    # -- where the next stroke goes ------------------------------------------------------------------
    def _random_start(
        self, images: list[_Image], rng: np.random.Generator, order: list[int]
    ) -> tuple[int, tuple]:
        if not order:
            order.extend(rng.permutation(self._classes).tolist())
        cls = order.pop(0)
        having = [i for i, im in enumerate(images) if (im.sample.gt == cls).any()]
        i = having[int(rng.integers(len(having)))]
        ys, xs = np.nonzero((images[i].sample.gt == cls) & (images[i].labels == IGNORE))
        if ys.size == 0:
            ys, xs = np.nonzero(images[i].sample.gt == cls)
        j = int(rng.integers(ys.size))
        return i, _deepest(images[i], int(ys[j]), int(xs[j]))

    def _uncertain_start(self, images: list[_Image], head: LinearHead) -> tuple[int, tuple] | None:
        raw = [active.label_need(head, im.sample.features, im.labels) for im in images]
        needs, _ = active.project_needs(raw, self._assignments, self._clusters)
        found = active.suggest(
            ((i, need, im.labels.shape) for i, (need, im) in enumerate(zip(needs, images, strict=True))), n=1
        )
        if not found:
            return None
        i = cast(int, found[0].key)  # the keys given to suggest: image positions
        start = _segment_in(images[i], found[0].box, needs[i])
        if start is not None:
            return i, start
        y, x = found[0].peak  # nothing unlabelled to draw on in the box: its neediest patch
        if images[i].sample.gt[y, x] == IGNORE:  # void in the ground truth: the nearest real pixel
            ys, xs = np.nonzero(images[i].sample.gt != IGNORE)
            j = int(np.argmin((ys - y) ** 2 + (xs - x) ** 2))
            y, x = int(ys[j]), int(xs[j])
        return i, (y, x)

    def _largest_error(self, images: list[_Image], head: LinearHead) -> tuple[int, tuple] | None:
        best, where = 0, None
        for i, im in enumerate(images):
            gt = im.sample.gt
            wrong = (im.sample.predict(head).labels != gt) & (gt != IGNORE) & (im.labels == IGNORE)
            comps, count = ndimage.label(wrong, structure=_EIGHT)
            if not count:
                continue
            sizes = np.bincount(comps.reshape(-1))[1:]
            label = int(sizes.argmax()) + 1
            if sizes[label - 1] > best:
                depth = ndimage.distance_transform_edt(comps == label)
                best, where = int(sizes[label - 1]), (i, np.unravel_index(int(depth.argmax()), depth.shape))
        if where is None:
            return None
        return where[0], (int(where[1][0]), int(where[1][1]))

    def _lookahead(
        self, images: list[_Image], head: LinearHead, rng: np.random.Generator, cache: TrainingCache
    ) -> tuple[tuple[int, tuple] | None, np.random.Generator]:
        """The candidate stroke whose refit scores best on the held-out images, and the generator that draws
        that very stroke again."""
        candidates = []
        for i, im in enumerate(images):
            gt, free = im.sample.gt, im.labels == IGNORE
            for c in np.unique(gt[free]):
                if c == IGNORE:
                    continue
                comps, count = ndimage.label((gt == c) & free, structure=_EIGHT)
                sizes = np.bincount(comps.reshape(-1))
                candidates += [(i, comps, j, sizes[j]) for j in range(1, count + 1)]
        # segments a stroke fits in (all of them when none is that large)
        big = [cand for cand in candidates if cand[3] >= self.config.stroke_px] or candidates
        if len(big) > LOOKAHEAD_CANDIDATES:
            big = [big[j] for j in sorted(rng.choice(len(big), LOOKAHEAD_CANDIDATES, replace=False))]
        seeds = rng.integers(2**63, size=len(big))
        best = -1.0
        found: tuple[tuple[int, tuple] | None, np.random.Generator] = (None, rng)
        for (i, comps, j, _), seed in zip(big, seeds, strict=True):
            target = (i, _deepest_point(comps == j))  # a segment's mask made only when it is tried
            saved = images[i].labels.copy()
            self._stroke(images, target, np.random.default_rng(seed))
            miou = score(self._fit(images, head, cache) or head, self.val, self.k)
            images[i].labels[:] = saved
            if miou > best:
                best, found = miou, (target, np.random.default_rng(seed))
        return found

    # -- what a label does ---------------------------------------------------------------------------
    def _stroke(self, images: list[_Image], target: tuple[int, tuple], rng: np.random.Generator) -> float:
        i, start = target
        im = images[i]
        mask = scribble(im.sample.gt, start, self.config.stroke_px, self.config.width, rng)
        im.labels[mask] = im.sample.gt[mask]
        return STROKE_S + PIXEL_S * self.config.stroke_px

    def _all_classes(self, images: list[_Image]) -> bool:
        """Whether every class of the ground truth has a label: before that, accepting a prediction would
        stamp the missing classes out (the head cannot predict what it has never seen)."""
        labelled = {int(c) for im in images for c in np.unique(im.labels)}
        return labelled.issuperset(self._classes)

    def _accept(self, im: _Image, head: LinearHead) -> bool:
        pred = im.sample.predict(head)
        take = (im.labels == IGNORE) & (pred.confidence >= self.config.accept_confidence)
        im.labels[take] = pred.labels[take]
        return bool(take.any())

    def _fit(self, images: list[_Image], head: LinearHead | None, cache: TrainingCache) -> LinearHead | None:
        data = [
            LabelledImage(im.sample.features, im.labels, key=str(i))
            for i, im in enumerate(images)
            if (im.labels != IGNORE).any()
        ]
        if len({int(c) for d in data for c in np.unique(d.labels) if c != IGNORE}) < 2:
            return None
        try:
            return train_head(data, self.k, self.config.train, init=head, cache=cache).head
        except TrainingError:
            return head


def _segment_in(im: _Image, box: tuple[int, int, int, int], need: np.ndarray) -> tuple[int, int] | None:
    """Where a person shown a suggested box starts the stroke: on the thing the box is about, the unlabelled
    ground-truth segment inside it that holds most of the need, at its deepest point (the middle of the
    object, not its edge). None when the box holds nothing unlabelled."""
    x0, y0, x1, y1 = box
    gt = im.sample.gt[y0:y1, x0:x1]
    free = im.labels[y0:y1, x0:x1] == IGNORE
    H, W = im.labels.shape
    rows, cols = pixel_cells(H, need.shape[0])[y0:y1], pixel_cells(W, need.shape[1])[x0:x1]
    pixel_need = need[rows[:, None], cols[None, :]]
    best, segment = -1.0, None
    for c in np.unique(gt[free]):
        if c == IGNORE:
            continue
        comps, count = ndimage.label((gt == c) & free, structure=_EIGHT)
        sums = ndimage.sum(pixel_need, comps, index=np.arange(1, count + 1))
        j = int(np.argmax(sums))
        if sums[j] > best:
            best, segment = float(sums[j]), comps == j + 1
    if segment is None:
        return None
    y, x = _deepest_point(segment)  # the middle of the segment's part inside the box
    return y + y0, x + x0


def _deepest(im: _Image, y: int, x: int) -> tuple[int, int]:
    """Where a person labelling the ground-truth segment under (y, x) starts the stroke: its unlabelled part's
    deepest point (every strategy but the oracle, which aims at an error, draws from the middle of what it
    labels, as people do). (y, x) itself when it is labelled already."""
    gt = im.sample.gt
    comps, _ = ndimage.label((gt == gt[y, x]) & (im.labels == IGNORE), structure=_EIGHT)
    if not comps[y, x]:
        return y, x
    return _deepest_point(comps == comps[y, x])


def _deepest_point(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of `mask` farthest from its outside (the array's edge counts as outside)."""
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(depth.argmax()), depth.shape)
    return int(y), int(x)


def strokes_to(curve: Sequence[Point], target: float) -> int | None:
    """The first action count whose mIoU reaches `target` (None: the budget ran out first)."""
    return next((p.strokes for p in curve if p.miou >= target), None)


def simulate(
    train: Sequence[Sample],
    val: Sequence[Sample],
    num_classes: int,
    strategies: Sequence[str],
    config: SimConfig = SimConfig(),
    progress: Callable[[str, int], None] | None = None,
    whole_curves: bool = True,
) -> dict:
    """Every strategy on the same images: {"full_label_miou", "strategies": {name: {"strokes_to_90",
    "strokes_to_95", "curve": [...]}}, "config", "cost_model"} (mIoU as a fraction). Without
    `whole_curves` a session stops once it reaches 95 % of the full-label mIoU (the stroke counts are the
    same; the benchmark runs many sessions)."""
    started = time.perf_counter()
    full = full_label_miou(train, val, num_classes)
    annotator = Annotator(train, val, num_classes, config)
    out: dict = {"full_label_miou": full, "strategies": {}}
    for name in strategies:
        step_progress: Callable[[int], None] | None = None
        if progress is not None:
            step_progress = functools.partial(progress, name)
        curve = annotator.run(name, step_progress, stop_at=None if whole_curves else 0.95 * full)
        out["strategies"][name] = {
            "strokes_to_90": strokes_to(curve, 0.9 * full),
            "strokes_to_95": strokes_to(curve, 0.95 * full),
            "curve": [asdict(p) for p in curve],
        }
    out["config"] = {**asdict(config), "train": config.train.to_dict()}
    out["cost_model"] = {"stroke_s": STROKE_S, "pixel_s": PIXEL_S, "accept_s": ACCEPT_S}
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out


def plot_simulation(result: dict, path) -> None:
    """mIoU against actions, labelled pixels and simulated seconds, one line per strategy (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=110, sharey=True)
    full = result["full_label_miou"]
    for name, run in result["strategies"].items():
        curve = run["curve"]
        for ax, key in zip(axes, ("strokes", "labelled_px", "seconds"), strict=True):
            ax.plot([p[key] for p in curve], [100 * p["miou"] for p in curve], lw=1.4, label=name)
    axes[1].set_xscale("symlog", linthresh=1000)  # accepting predictions adds 100x the pixels of a stroke
    for ax, label in zip(
        axes, ("strokes (annotator actions)", "labelled pixels", "simulated seconds"), strict=True
    ):
        ax.axhline(100 * full, color="k", lw=0.8, ls="--")
        ax.axhline(95 * full, color="grey", lw=0.8, ls=":")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out mIoU (%)")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(
        f"simulated annotation: full ground truth {100 * full:.1f}% (dashed), 95% of it (dotted)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(result: dict) -> str:
    """Markdown: strokes to 90 % and 95 % of the full-label mIoU, per strategy."""
    rows = ["| strategy | strokes to 90 % | strokes to 95 % | final mIoU |", "| --- | --- | --- | --- |"]
    for name, run in result["strategies"].items():
        final = run["curve"][-1]["miou"] if run["curve"] else float("nan")
        rows.append(
            f"| {name} | {run['strokes_to_90'] or '> budget'} | {run['strokes_to_95'] or '> budget'} | "
            f"{100 * final:.1f} % |"
        )
    return "\n".join(rows)
