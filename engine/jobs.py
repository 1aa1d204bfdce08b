"""The work the trainer thread does for one project: train on cached features, store the head and the
run, evaluate against ground truth, refresh per-image uncertainty. Functions over a `TrainingHost` (what
they need of the engine, and no more; ProjectEngine is the implementation), not methods, to keep
`engine.py` a readable facade."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from core import active
from core.features import FeatureConfig, PatchFeatures
from core.head import head_to_bytes
from core.head_meta import HeadMeta
from core.labels import IGNORE
from core.metrics import ConfusionMatrix
from core.predict import Prediction
from core.train import PixelSetBuilder, TrainingCache, TrainingCancelled, TrainingError, train_head
from engine.analysis import HeadState
from engine.needs import LabelNeeds, NeedsStopped
from engine.results import EvalResult, TrainOutcome
from engine.settings import EngineSettings
from engine.training import Superseded, Trainer
from storage import HeadInfo, ImageInfo, Repository

Stop = Callable[[], bool]


class TrainingHost(Protocol):
    """What training, evaluation and the statistics after a fit need from the engine: the repository and
    settings, cached features, the project's training cache, the live head and where new heads, interim
    heads and results go."""

    repo: Repository
    settings: EngineSettings
    needs: LabelNeeds
    trainer: Trainer

    @property
    def backbone_name(self) -> str: ...
    @property
    def weights_id(self) -> str: ...
    def project_config(self, project_id: int) -> FeatureConfig: ...
    def features(self, image_id: int, wait: float | None = 0.0) -> PatchFeatures | None: ...
    def has_features(self, image_id: int) -> bool: ...
    def feature_failure(self, image_id: int) -> str | None: ...
    def training_cache(self, project_id: int) -> TrainingCache: ...
    def live_head(self, project_id: int) -> HeadState | None: ...
    def set_head(self, project_id: int, state: HeadState) -> None: ...
    def publish_interim(self, project_id: int, state: HeadState) -> None: ...
    def evaluate(self, project_id: int, stop: Stop = ...) -> EvalResult | None: ...
    def predict_at(
        self, state: HeadState, image_id: int, feats: PatchFeatures, lut: np.ndarray, size: tuple[int, int]
    ) -> Prediction: ...


INTERIM_FIRST_ITER, INTERIM_FIRST_S = 2, 0.02  # the first interim head: after this many iterations or seconds
INTERIM_EVERY_S = 0.25  # then at most this often


def _check(stop: Stop) -> None:
    if stop():
        raise Superseded()


def train_project(engine: TrainingHost, project_id: int, generation: int, stop: Stop):
    """Train the project's head from its stored labels; returns (outcome, post-processing)."""
    repo, config = engine.repo, engine.settings.train
    resolution = engine.project_config(project_id)  # (what the features gathered below are at)
    classes = repo.list_classes(project_id)
    if len(classes) < 2:
        raise TrainingError(
            "the project has only one class; add at least one more class (Classes tab) and "
            "label it before training"
        )
    images = repo.list_images(project_id)
    labelled = trained_on(images)
    if not labelled:
        if any(i.labelled_pixels for i in images):
            raise TrainingError(
                "only images in the val split have labels, and val images are kept for scoring the head, "
                "never trained on: label a train or unassigned image (or move an image out of val)"
            )
        raise TrainingError(
            "no labelled pixels yet: draw scribbles or click points of at least two classes, then train"
        )
    class_ids = tuple(c.id for c in classes)
    record = HeadMeta(  # the head's record (its training results are added once it is trained)
        backbone=engine.backbone_name,
        weights_id=engine.weights_id,
        classes=[c.name for c in classes],
        class_ids=list(class_ids),
        long_side=0 if resolution.scale is not None else resolution.long_side,
        resolution=resolution.resolution,
    )
    cache = engine.training_cache(project_id)
    # Only what changed is read: an image's labelled pixels are kept between fits under its label version
    # (and the class order, which maps class ids to indices), its gathered pixels under those and the
    # sampling rate; an edit reads and gathers the one image it touched.
    builder = PixelSetBuilder(len(classes), config, sum(i.labelled_pixels for i in labelled), cache)
    for image in labelled:
        _check(stop)
        feats = engine.features(image.id, wait=None)
        if feats is None:
            reason = engine.feature_failure(image.id) or f"image {image.id}: features could not be computed"
            raise TrainingError(reason)
        load: Callable[[], np.ndarray] = functools.partial(repo.label_map, image.id)
        pixels = cache.pixels(str(image.id), (image.label_version, class_ids), load)
        builder.add_pixels(feats, pixels, name=image.name, key=str(image.id))
    _check(stop)
    px = builder.build()
    if len(px.pixel_counts) < 2:
        present = next(iter(px.pixel_counts))
        name = classes[present].name if present < len(classes) else "?"
        raise TrainingError(
            f"only the class '{name}' is labelled; label at least one more class (for example "
            "the background) so the head has something to separate"
        )
    prev = engine.live_head(project_id)  # warm start from the newest head, interim ones included
    init = prev.head if prev is not None and prev.class_ids == class_ids else None
    started, shown = time.perf_counter(), [0.0]

    def progress(iteration: int, snapshot) -> None:
        # Show an early iterate at once, then a better one now and then, until the final head is stored.
        now = time.perf_counter()
        due = (
            (iteration >= INTERIM_FIRST_ITER or now - started >= INTERIM_FIRST_S)
            if not shown[0]
            else (now - shown[0] >= INTERIM_EVERY_S)
        )
        if due and not stop():
            shown[0] = now
            engine.publish_interim(
                project_id,
                HeadState(
                    prev.head_id if prev is not None else 0, snapshot(), record, generation, interim=True
                ),
            )

    try:
        result = train_head(px, len(classes), config, init=init, should_stop=stop, progress=progress)
    except TrainingCancelled:
        raise Superseded() from None
    _check(stop)  # never store a head that a newer edit already made stale

    pixel_counts = {record.classes[i]: int(n) for i, n in sorted(result.pixel_counts.items())}
    train_info = {
        "loss": result.loss,
        "iterations": result.iterations,
        "seconds": result.seconds,
        "trained_pixels": result.trained_pixels,
        "images": len(labelled),
        "pixel_counts": pixel_counts,
        "config": config.to_dict(),
        "generation": generation,
    }
    info = repo.save_head(
        project_id, head_to_bytes(result.head), record.but(train=train_info, created=time.time())
    )
    state = HeadState(info.id, result.head, info.meta, generation)
    engine.set_head(project_id, state)
    outcome = TrainOutcome(
        generation=generation,
        head_id=info.id,
        seconds=result.seconds,
        loss=result.loss,
        iterations=result.iterations,
        pixel_counts=pixel_counts,
        trained_pixels=result.trained_pixels,
        images=len(labelled),
        finished_at=time.time(),
    )

    def post(stop_post: Stop) -> None:
        metrics: dict = {}
        try:
            ev = (
                engine.evaluate(project_id, stop_post)
                if any(i.has_ground_truth for i in repo.list_images(project_id))
                else None
            )
        except Superseded:
            ev = None
        if ev is not None:
            metrics = ev.scores.to_dict(list(ev.class_names)) | {"images": ev.images, "split": ev.split}
            repo.set_head_metrics(info.id, metrics)
            engine.trainer.annotate(project_id, generation, miou=metrics.get("miou"))
        repo.record_training_run(
            project_id,
            {
                "config": config.to_dict(),
                "backbone": engine.backbone_name,
                "resolution": resolution.resolution,
                "images": len(labelled),
            },
            result.seconds,
            result.loss,
            metrics,
            pixel_counts,
            head_id=info.id,
        )
        update_stats(engine, project_id, state, stop_post)

    return outcome, post


def trained_on(images: list[ImageInfo]) -> list[ImageInfo]:
    """The images whose labels train the head: every labelled image outside the val split. Val images keep
    their labels (shown, exported) but are held out, so that evaluation never scores what the head saw."""
    return [i for i in images if i.labelled_pixels > 0 and i.split != "val"]


def held_out(images: list[ImageInfo]) -> list[ImageInfo]:
    """The ground-truth images evaluation scores: those whose labels the head was not trained on (the val
    split, and images without labels)."""
    trained = {i.id for i in trained_on(images)}
    return [i for i in images if i.has_ground_truth and i.id not in trained]


def evaluate(
    engine: TrainingHost,
    project_id: int,
    state: HeadState,
    stop: Stop = lambda: False,
) -> EvalResult | None:
    """Confusion over the held-out ground-truth images that have features (`held_out`); None when there is
    none."""
    repo = engine.repo
    chosen = held_out(repo.list_images(project_id))
    if not chosen:
        return None
    split = "val" if all(i.split == "val" for i in chosen) else "held out"
    chosen = chosen[: engine.settings.eval_max_images]
    classes = repo.list_classes(project_id)
    lut = state.lut(classes)
    cm = ConfusionMatrix(len(classes))
    used = skipped = 0
    for info in chosen:
        _check(stop)
        if not engine.has_features(info.id):
            skipped += 1
            continue
        feats = engine.features(info.id)
        gt = repo.ground_truth(info.id)
        if feats is None or gt is None:
            skipped += 1
            continue
        labels = engine.predict_at(state, info.id, feats, lut, feats.original_size).labels
        gt = gt.copy()
        gt[(gt >= len(classes)) | (labels == IGNORE)] = IGNORE  # pixels of a class deleted since training
        cm.update(gt, np.where(labels == IGNORE, 0, labels))
        used += 1
    if used == 0:
        return None
    return EvalResult(state.head_id, used, tuple(c.name for c in classes), cm.scores(), split, skipped)


def update_stats(engine: TrainingHost, project_id: int, state: HeadState, stop: Stop) -> int:
    """Store each image's need for labels under the current head (core.active; images without features
    are skipped), in one transaction, only where the score changed. Yields to a newer edit: stops (raising
    Superseded) between images as soon as `stop()` is true, before anything is written."""
    _check(stop)
    try:
        needs = engine.needs.all(project_id, state, stop)
    except NeedsStopped:
        raise Superseded() from None
    stored = {i.id: i.uncertainty for i in engine.repo.list_images(project_id)}
    scores = {}
    for image_id, (need, size) in needs.items():
        _check(stop)
        score = active.image_score(need, size)
        if image_id in stored and stored[image_id] != score:
            scores[image_id] = score
    _check(stop)
    engine.repo.set_image_scores(scores)
    return len(needs)


def outcome_from_info(info: HeadInfo) -> TrainOutcome:
    """What the status line shows for a head stored before this process started."""
    train = info.meta.train
    miou = info.metrics.get("miou") if info.metrics else None
    return TrainOutcome(
        generation=0,
        head_id=info.id,
        seconds=float(train.get("seconds", 0.0)),
        loss=float(train.get("loss", float("nan"))),
        iterations=int(train.get("iterations", 0)),
        pixel_counts=dict(train.get("pixel_counts") or {}),
        trained_pixels=int(train.get("trained_pixels", 0)),
        images=int(train.get("images", 0)),
        miou=miou,
        finished_at=info.created_at.timestamp(),
    )
