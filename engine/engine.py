"""`ProjectEngine`: the headless facade the UI (and any API) calls. Shared by every session; thread-safe."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core import active
from core.backbone import Backbone
from core.cache import FeatureStore
from core.clusters import ClusterResult, kmeans_image, kmeans_images, pca_rgb
from core.errors import InputError
from core.features import FeatureConfig, FeatureExtractor, PatchFeatures
from core.head import check_feature_version, head_from_bytes
from core.labels import IGNORE
from core.lru import LRU
from core.predict import Prediction, Predictor
from core.tiff import TiffOptions
from core.train import TrainingCache, TrainingError
from engine import analysis, jobs
from engine.analysis import HeadState
from engine.events import EventBus
from engine.needs import LabelNeeds
from engine.records import Records
from engine.results import EdgeLayer, EvalResult, FeatureProgress, GridScores, TrainOutcome, TrainStatus
from engine.settings import EngineSettings
from engine.training import Trainer
from engine.worker import HIGH, NORMAL, FeatureWorker, ImageSource
from storage import (
    ClassInfo,
    ImageInfo,
    ImportReport,
    NotFoundError,
    OpResult,
    ProjectInfo,
    Repository,
    resolve_import_path,
)
from storage.thumbnails import SCREEN

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("archive", "voc", "coco")


def need_key(image: ImageInfo) -> tuple[bool, float, int, int]:
    """Sort key of "most uncertain first" (ProjectEngine.by_need)."""
    return (image.uncertainty is None, -(image.uncertainty or 0.0), image.labelled_pixels, image.id)


class ProjectEngine:
    """Features in the background, (auto-)training, predictions, uncertainty, refinement, evaluation and
    unsupervised views for the projects of one repository, with one backbone."""

    def __init__(self, repo: Repository, store: FeatureStore, settings: EngineSettings = EngineSettings()):
        self.repo = repo
        self.store = store
        self.settings = settings
        self.worker = FeatureWorker(settings.feature_batch, on_done=self._features_done)
        self.trainer = Trainer(
            lambda pid, gen, stop: jobs.train_project(self, pid, gen, stop), settings.debounce_s
        )
        self._lock = threading.RLock()
        self._sources: dict[int, ImageSource] = {}
        self._heads: dict[int, HeadState | None] = {}  # project id -> head in use (None = none usable)
        self._head_ids: dict[int, int | None] = {}  # project id -> latest stored head id seen
        # An interim head of the running fit (shown while it converges, never stored), and a counter per
        # project that every new head (interim or stored) bumps: what a waiting client compares.
        self._interim: dict[int, HeadState] = {}
        self._head_counter: dict[int, int] = {}
        # Per project, the per-image training work kept between fits; used by the one trainer thread only.
        self._train_caches: dict[int, TrainingCache] = {}
        self._predictions: LRU[Prediction] = LRU(
            settings.prediction_cache,
            settings.prediction_cache_bytes,
            lambda p: p.labels.nbytes + p.confidence.nbytes + p.entropy.nbytes,
        )
        self._display: LRU[np.ndarray] = LRU(settings.display_cache)
        self._views: LRU[Any] = LRU(16)
        self._eval: LRU[EvalResult] = LRU(8)
        self.needs = LabelNeeds(repo, self.cached_features, settings.seed)
        self._configs: dict[int, FeatureConfig] = {}  # project id -> its resolution (read once)
        self.events = EventBus()  # what changed, per project (engine/events.py; the API streams it)

    @classmethod
    def create(
        cls,
        repo: Repository,
        backbone: Backbone,
        cache_dir: str | os.PathLike | None,
        features: FeatureConfig = FeatureConfig(scale="auto"),
        settings: EngineSettings = EngineSettings(),
        max_memory_bytes: int = 512 * 2**20,
    ) -> ProjectEngine:
        extractor = FeatureExtractor(backbone, features)
        store = FeatureStore(extractor, Path(cache_dir) if cache_dir is not None else None, max_memory_bytes)
        return cls(repo, store, settings)

    def close(self) -> None:
        self.trainer.close()
        self.worker.close()

    # ------------------------------------------------------------------ identity
    @property
    def records(self) -> Records:
        """The stored project, read only (engine/records.py): what the web app reads."""
        return self.repo

    @property
    def backbone(self) -> Backbone:
        return self.store.extractor.backbone

    @property
    def backbone_name(self) -> str:
        return self.backbone.spec.name

    @property
    def weights_id(self) -> str:
        return self.backbone.weights_id

    @property
    def is_random(self) -> bool:
        return self.backbone.is_random

    @property
    def feature_config(self) -> FeatureConfig:
        """The server's default resolution (--resolution): a project without its own uses it."""
        return self.store.extractor.config

    def project_config(self, project_id: int) -> FeatureConfig:
        """How the project's images become tokens: its own resolution (project settings) or the server's."""
        with self._lock:
            cfg = self._configs.get(project_id)
        if cfg is None:
            own = self.repo.get_project(project_id).settings.get("resolution")
            cfg = self._parse(own) if own else self.feature_config
            with self._lock:
                self._configs[project_id] = cfg
        return cfg

    def _parse(self, resolution: str) -> FeatureConfig:
        """A resolution as the page writes it, with the server's batch, budget and tiling."""
        b = self.feature_config
        return FeatureConfig.parse(
            resolution, batch_size=b.batch_size, max_tokens=b.max_tokens, tile=b.tile, overlap=b.overlap
        )

    def set_resolution(self, project_id: int, resolution: str | None) -> FeatureConfig:
        """Choose the project's resolution ('auto', '16px', '448'; None or '' = the server's default). Its
        images' features are then computed at it in the background (progress in `feature_progress`), the
        head is retrained at it once they are, and the labels stay as they are. A head made at the old
        resolution keeps predicting meanwhile (a linear head applies to tokens at any scale)."""
        text = (resolution or "").strip()
        cfg = self._parse(text) if text else None
        if (cfg or self.feature_config) == self.project_config(project_id):
            return self.project_config(project_id)
        self.repo.update_project_settings(project_id, {"resolution": cfg.resolution if cfg else None})
        ids = [i.id for i in self.repo.list_images(project_id)]
        with self._lock:
            self._configs.pop(project_id, None)
            for image_id in ids:
                self._sources.pop(image_id, None)
            self._train_caches.pop(project_id, None)  # (its gathered tokens are at the old scale)
        gone = set(ids)
        self._predictions.discard(lambda k: k[1] in gone)
        self.needs.forget_project(project_id, ids)
        self._views.discard(lambda k: True)
        self.ensure_features(project_id=project_id)
        self.request_train(project_id)
        return self.project_config(project_id)

    # ------------------------------------------------------------------ features
    def _source(self, image_id: int, info: ImageInfo | None = None) -> ImageSource:
        with self._lock:
            src = self._sources.get(image_id)
        if src is None:
            info = info or self.repo.get_image(image_id)
            cfg = self.project_config(info.project_id)
            src = ImageSource(
                image_id,
                info.name,
                info.pixel_hash or info.content_hash,
                lambda: self.repo.image_rgb(image_id),
                self.store.at(cfg),
            )
            with self._lock:
                if self._configs.get(info.project_id) is cfg:  # (kept unless the resolution just changed)
                    self._sources[image_id] = src
        return src

    def ensure_features(
        self, image_ids: Iterable[int] | None = None, project_id: int | None = None, priority: bool = False
    ) -> int:
        """Queue feature computation for images (or all images of a project); returns how many were queued."""
        infos = self.repo.list_images(project_id) if project_id is not None else None
        sources = (
            [self._source(i.id, i) for i in infos]
            if infos is not None
            else [self._source(i) for i in image_ids or ()]
        )
        return self.worker.submit(sources, HIGH if priority else NORMAL)

    def features(self, image_id: int, wait: float | None = 0.0) -> PatchFeatures | None:
        """Features of an image. wait=0: only if cached (never blocks on the backbone); a number: wait
        at most that long for them to be computed ahead of background work; None: wait until done."""
        src = self._source(image_id)
        feats = src.store.cached(src.image_hash)
        if feats is not None or wait == 0.0:
            if feats is None:
                self.worker.submit([src], HIGH)
            return feats
        return self.worker.get(src, wait)

    def _features_done(self, image_ids: list[int]) -> None:
        """New features: score the images under their project's current head (gallery, "most uncertain"), and
        make their gallery thumbnails (and a big image's screen-sized copy) now rather than when a page first
        shows them."""
        for image_id in image_ids:
            try:
                info = self.repo.get_image(image_id)
                self.thumbnail_path(image_id)
                if max(info.width, info.height) > SCREEN:
                    self.thumbnail_path(image_id, SCREEN)  # what the canvas shows first (see GET .../file)
            except NotFoundError:
                continue
            state = self.head(info.project_id)
            feats = self.cached_features(info)
            if state is not None and feats is not None:
                need = self.needs.one(info.project_id, state, image_id, feats)
                self.repo.set_image_stats(image_id, active.image_score(need, feats.original_size), True)
            progress = self.worker.progress()
            self.events.publish(
                info.project_id, "features", image_id=image_id, done=progress.done, total=progress.total
            )

    def cached_features(self, info: ImageInfo) -> PatchFeatures | None:
        """The image's features at its project's resolution if computed (never queues them)."""
        src = self._source(info.id, info)
        return src.store.cached(src.image_hash)

    def feature_key(self, image_id: int) -> str:
        """The cache identity of the image's features (its pixels at its project's resolution)."""
        src = self._source(image_id)
        return src.store.key(src.image_hash)

    def has_features(self, image_id: int) -> bool:
        src = self._source(image_id)
        return src.store.contains(src.image_hash)

    def feature_failure(self, image_id: int) -> str | None:
        return self.worker.failure(image_id)

    def feature_progress(self) -> FeatureProgress:
        return self.worker.progress()

    def forget_image(self, image_id: int) -> None:
        with self._lock:
            self._sources.pop(image_id, None)
        self._predictions.discard(lambda k: k[1] == image_id)
        self._display.discard(lambda k: k[0] == image_id)
        for cache in list(self._train_caches.values()):
            cache.forget(str(image_id))
        self.needs.forget(image_id)

    # ------------------------------------------------------------------ training
    def training_cache(self, project_id: int) -> TrainingCache:
        with self._lock:
            return self._train_caches.setdefault(project_id, TrainingCache())

    def request_train(self, project_id: int, immediate: bool = False) -> int:
        """Auto-retrain: a newer request supersedes a pending or running one (which stops at its next
        step; the next fit warm-starts from the last head). immediate=False waits `debounce_s` for more
        edits first; an edit operation asks for immediate=True, so a fit starts as soon as it is committed."""
        return self.trainer.request(project_id, immediate=immediate)

    def train_now(self, project_id: int, timeout: float | None = None) -> TrainOutcome:
        """Train at once (superseding auto-retrains) and wait for the result; raises TrainingError."""
        gen = self.trainer.request(project_id, immediate=True)
        return self.trainer.wait(project_id, gen, timeout)

    def wait_settled(
        self, project_id: int, generation: int | None = None, timeout: float | None = 60.0
    ) -> None:
        """Block until the training of `generation` (default: the newest request) and the work after it
        (evaluation, the run record, per-image statistics) are stored: what a script or a test awaits
        instead of polling. Raises TrainingTimeout."""
        gen = self.trainer.latest_request(project_id) if generation is None else generation
        self.trainer.wait_settled(project_id, gen, timeout)

    def training_status(self, project_id: int) -> TrainStatus:
        status = self.trainer.status(project_id)
        if status.last is None and status.state == "idle":
            head = self.head(project_id)
            if head is not None:
                self.trainer.seed_last(project_id, jobs.outcome_from_info(self.repo.get_head(head.head_id)))
                status = self.trainer.status(project_id)
        return status

    # ------------------------------------------------------------------ heads
    def head(self, project_id: int) -> HeadState | None:
        """The project's latest stored head if it fits this backbone, else None."""
        info = self.repo.latest_head(project_id)
        latest = info.id if info is not None else None
        with self._lock:
            if project_id in self._heads and self._head_ids.get(project_id) == latest:
                return self._heads[project_id]
        state = None
        if (
            info is not None
            and info.meta.backbone == self.backbone_name
            and info.meta.weights_id == self.weights_id
        ):
            try:
                check_feature_version(info.meta.feature_version, f"head {info.id}")
                head = head_from_bytes(self.repo.head_weights(info.id))
                meta = info.meta
                if not meta.class_ids:  # (a row from before class ids were recorded: its class snapshot)
                    meta = meta.but(class_ids=[c.id for c in info.classes])
                if len(meta.class_ids) == head.num_classes and head.dim == self.backbone.spec.embed_dim:
                    state = HeadState(info.id, head, meta)
            except Exception as exc:
                log.warning("head %s of project %s is unusable: %s", info.id, project_id, exc)
        with self._lock:
            self._heads[project_id], self._head_ids[project_id] = state, latest
        return state

    def set_head(self, project_id: int, state: HeadState) -> None:
        with self._lock:
            self._heads[project_id], self._head_ids[project_id] = state, state.head_id
            self._interim.pop(project_id, None)
            counter = self._head_counter[project_id] = self._head_counter.get(project_id, 0) + 1
        self.events.publish(project_id, "head", version=counter, head_id=state.head_id, interim=False)

    def publish_interim(self, project_id: int, state: HeadState) -> None:
        """Show a head of a fit still running (until the fit stores its final head)."""
        with self._lock:
            self._interim[project_id] = state
            counter = self._head_counter[project_id] = self._head_counter.get(project_id, 0) + 1
        self.events.publish(project_id, "head", version=counter, head_id=state.head_id, interim=True)

    def live_head(self, project_id: int) -> HeadState | None:
        """The head to display and to warm-start from: the running fit's latest interim head, else the
        stored one."""
        with self._lock:
            interim = self._interim.get(project_id)
        return interim if interim is not None else self.head(project_id)

    def head_counter(self, project_id: int) -> int:
        """Bumped by every new head of the project (interim or stored), in memory: cheap to poll while a
        client waits for the next retrain."""
        with self._lock:
            return self._head_counter.get(project_id, 0)

    def head_version(self, project_id: int) -> int | None:
        state = self.head(project_id)
        return None if state is None else state.head_id

    def grid_scores(self, project_id: int, image_id: int) -> GridScores | None:
        """The live head's patch-grid class scores of an image (None: no head yet or features not
        ready, which are then queued first): what a canvas upsamples itself, at once, for every head."""
        live = self._live(project_id, image_id)
        if live is None:
            return None
        counter, state, feats = live
        lut = state.lut(self.repo.list_classes(project_id))
        index = tuple(None if lut[ch] == IGNORE else int(lut[ch]) for ch in range(len(state.class_ids)))
        predictor = Predictor(edges=self.settings.edges)
        predictor.set_features(feats)
        logits = predictor.patch_logits(state.head).numpy().astype(np.float32, copy=False)
        return GridScores(
            state.head_id, logits, index, feats.original_size, state.generation, counter, state.interim
        )

    def _live(self, project_id: int, image_id: int) -> tuple[int, HeadState, PatchFeatures] | None:
        """(head counter, live head, the image's features), the counter read first (a head arriving
        meanwhile is announced again); None: no head yet or features not ready (then queued)."""
        counter = self.head_counter(project_id)
        state = self.live_head(project_id)
        feats = self.features(image_id) if state is not None else None
        return None if state is None or feats is None else (counter, state, feats)

    def edge_layer(self, project_id: int, image_id: int, size: tuple[int, int]) -> EdgeLayer | None:
        """Each pixel's class channel at `size` (H', W') by the live head and the boundary rule (core.edges:
        what `prediction` gives at that size), for a canvas that shows the image there. Asked for after the
        grid scores, which are drawn first: the filter never delays a repaint. None: no head, features not
        ready, or an interim head (its fit's final head follows within the fit)."""
        live = self._live(project_id, image_id)
        if live is None or live[1].interim:
            return None
        counter, state, feats = live
        predictor = Predictor(edges=self.settings.edges)
        predictor.set_features(feats, self.display_rgb(image_id, max(size)) if self.settings.edges else None)
        return EdgeLayer(state.head_id, counter, predictor.predict(state.head, size).labels)

    # ------------------------------------------------------------------ predictions and views
    def prediction(
        self, project_id: int, image_id: int, size: tuple[int, int] | None = None, wait: float | None = 0.0
    ) -> Prediction | None:
        """Prediction of the current head (labels in current class indices) at `size` (default: the image's
        own size), or None when there is no head yet or the features are not ready."""
        state = self.head(project_id)
        if state is None:
            return None
        feats = self.features(image_id, wait)
        if feats is None:
            return None
        lut = state.lut(self.repo.list_classes(project_id))
        key = (state.head_id, image_id, tuple(size) if size else None, lut.tobytes())
        return self._predictions.get_or_compute(
            key, lambda: self.predict_at(state, image_id, feats, lut, size or feats.original_size)
        )

    def predict_at(
        self, state: HeadState, image_id: int, feats: PatchFeatures, lut: np.ndarray, size: tuple[int, int]
    ) -> Prediction:
        """The one prediction of the app at `size`: boundaries follow the image (core.edges) unless the
        settings turn that off; the image is read at the size needed (a display size: from its cache)."""
        image = None
        if self.settings.edges is not None:
            full = tuple(size) == tuple(feats.original_size)
            image = self.repo.image_rgb(image_id) if full else self.display_rgb(image_id, max(size))
        return analysis.predict_mapped(state, feats, lut, size, image, self.settings.edges)

    def hotspots(
        self, project_id: int, image_id: int, size: tuple[int, int], n: int = 3
    ) -> list[active.Region]:
        """The image's regions that need labels most (boxes at `size`), best first."""
        state, feats = self.head(project_id), self.features(image_id)
        if state is None or feats is None:
            return []
        return active.regions(self.needs.one(project_id, state, image_id, feats), size, n)

    def suggest(self, project_id: int, n: int = 5) -> list[active.Region]:
        """The `n` regions across the project (one per image, images with features) that need labels most;
        `key` is the image id, boxes are in image pixels. The same rule as the gallery's order."""
        state = self.head(project_id)
        if state is None:
            return []
        # The scores stored after the last fit are each image's best region (the same rule): rescoring the
        # top few under the current head is enough, instead of every image (the full pass only when none
        # has a score yet, e.g. right after a restart).
        infos = [i for i in self.repo.list_images(project_id) if i.uncertainty is not None]
        if not infos:
            needs = self.needs.all(project_id, state)
            return active.suggest(((i, need, size) for i, (need, size) in needs.items()), n)
        top = sorted(infos, key=lambda i: (-(i.uncertainty or 0.0), -i.labelled_pixels, i.id))[: 2 * n + 4]
        scored = []
        for info in top:
            feats = self.features(info.id)
            if feats is not None:
                scored.append(
                    (info.id, self.needs.one(project_id, state, info.id, feats), (info.height, info.width))
                )
        return active.suggest(scored, n)

    # ------------------------------------------------------------------ label edits
    # Every change to a project's labels goes through one of these: each commits it through the repository
    # and then schedules the retrain, so "edit, then retrain" has one owner (the UI and the API call these,
    # never the repository's label writes followed by a training request of their own).

    def apply_op(
        self, project_id: int, image_id: int, op: dict, author: str, train: bool = True
    ) -> tuple[OpResult, int]:
        """Commit one canvas operation (storage.ops) and start a fit at once (no debounce) when it changed
        labels; returns the committed result and the training generation (0 = none requested)."""
        res = self.repo.apply_op(image_id, op, author=author)
        changed = res.applied and not res.duplicate
        if changed:
            self._labels_changed(project_id, image_id, res.label_version, op.get("client"), op.get("kind"))
        gen = self.request_train(project_id, immediate=True) if train and changed else 0
        return res, gen

    def _labels_changed(
        self, project_id: int, image_id: int, version: int, client: object, kind: object
    ) -> None:
        """Tell the project's followers (another tab on this image reloads its labels)."""
        self.events.publish(
            project_id,
            "labels",
            image_id=image_id,
            label_version=version,
            client=client if isinstance(client, str) else None,
            op=kind if isinstance(kind, str) else None,
        )

    def refine(
        self,
        project_id: int,
        image_id: int,
        threshold: float,
        classes: Iterable[int] | None = None,
        author: str = "refine",
        client: str | None = None,
    ) -> int:
        """Store confident predictions (>= threshold) of the classes with these ids (None: all) as scribbles
        where the image has none, and retrain; returns the number of pixels added (0 stores nothing). The
        same author and client's undo removes them again (the canvas's Ctrl+Z: it sends its client id)."""
        allowed = None
        if classes is not None:
            keep = {int(c) for c in classes}
            allowed = np.array([c.id in keep for c in self.repo.list_classes(project_id)], bool)
        pred = self.prediction(project_id, image_id, wait=30.0)
        if pred is None:
            raise TrainingError("no prediction to refine yet: label two classes and train first")
        layer, added = analysis.refine_layer(self.repo.scribble_layer(image_id), pred, threshold, allowed)
        if added:
            self.repo.save_scribbles(image_id, layer, author=author, client=client)
            version = self.repo.get_image(image_id).label_version
            self._labels_changed(project_id, image_id, version, client, "refine")
            self.request_train(project_id)
        return added

    def add_class(self, project_id: int, name: str, colour: str | None = None) -> ClassInfo:
        """Append a class (storage chooses a free colour when none is given); followers are told."""
        info = self.repo.add_class(project_id, name, colour)
        self.events.publish(project_id, "classes")
        return info

    def rename_class(self, project_id: int, class_id: int, name: str) -> None:
        self.repo.rename_class(class_id, name)
        self.events.publish(project_id, "classes")

    def recolour_class(self, project_id: int, class_id: int, colour: str) -> None:
        self.repo.recolour_class(class_id, colour)
        self.events.publish(project_id, "classes")

    def move_class(self, project_id: int, class_id: int, index: int) -> None:
        """Move a class to another index; the head's outputs follow the new order after the retrain."""
        self.repo.move_class(class_id, index)
        self.events.publish(project_id, "classes")
        self.request_train(project_id)

    def delete_class(self, project_id: int, class_id: int, mode: str | None, reassign_to: int | None) -> None:
        """Delete a class (`mode`: see Repository.delete_class); retrain when labels changed class or went."""
        self.repo.delete_class(class_id, mode, reassign_to)
        self.events.publish(project_id, "classes")
        if mode is not None:
            self.request_train(project_id)

    # ------------------------------------------------------------------ imports and splits
    # Each import stores the images and queues what follows (features, a fit for labels that came with them)
    # in one call: no caller can store without the second half.
    def import_uploads(
        self, project_id: int, files: Iterable[str | tuple[str, bytes]], tiff: TiffOptions | None = None
    ) -> ImportReport:
        """Uploaded files (paths or (name, bytes); zips expanded, TIFF planes split by `tiff`)."""
        return self._imported(project_id, self.repo.import_uploads(project_id, files, tiff))

    def import_folder(
        self, project_id: int, folder: Path, roots: Sequence[str], tiff: TiffOptions | None = None
    ) -> ImportReport:
        """Every image of a server folder and its sub-folders (within `roots`)."""
        return self._imported(
            project_id, self.repo.import_folder(project_id, folder, recursive=True, roots=roots, tiff=tiff)
        )

    def import_voc(
        self, project_id: int, root: Path, labels: Path | None, roots: Sequence[str], zero_is_unlabelled: bool
    ) -> ImportReport:
        """A VOC-layout folder on the server (storage.Repository.import_voc)."""
        report = self.repo.import_voc(
            project_id, root, labels, roots=roots, zero_is_unlabelled=zero_is_unlabelled
        )
        return self._imported(project_id, report)

    def import_coco(
        self, project_id: int, coco_file: Path, images: Path, as_ground_truth: bool, roots: Sequence[str]
    ) -> ImportReport:
        """A COCO JSON file's images and masks on the server (storage.Repository.import_coco)."""
        report = self.repo.import_coco(
            project_id, coco_file, images, as_ground_truth=as_ground_truth, roots=roots
        )
        return self._imported(project_id, report)

    def server_path(self, text: str, roots: Sequence[str]) -> Path:
        """A path typed by a user, if it lies inside one of `roots` and outside the data folder (no project's
        stored files are imported into another); ValidationError otherwise, naming nothing outside."""
        return resolve_import_path(text, roots, forbidden=[self.repo.data_dir])

    def _imported(self, project_id: int, report: ImportReport) -> ImportReport:
        if report.image_ids:
            self.events.publish(project_id, "images", added=list(report.image_ids))
            self.ensure_features(report.image_ids)
        if report.annotations:
            self.request_train(project_id)
        return report

    def set_split(self, image_id: int, split: str) -> ImageInfo:
        """Move an image to 'train', 'val' or 'unassigned'; a labelled image's move retrains (val labels
        score the head and never train it)."""
        before = self.repo.get_image(image_id)
        info = self.repo.set_split(image_id, split)
        if info.labelled_pixels and (before.split == "val") != (split == "val"):
            self.request_train(info.project_id)
        return info

    # ------------------------------------------------------------------ exports
    def export(
        self, project_id: int, fmt: str, dest: str | os.PathLike, predictions: bool = False
    ) -> tuple[Path, int]:
        """Write the project as `fmt` (`archive`: everything, for import elsewhere; `voc`: a PASCAL VOC zip;
        `coco`: COCO JSON) to `dest`; with `predictions`, VOC and COCO carry the current head's predictions
        instead of the labels, computed one image at a time (never all held in memory, nor kept in the
        prediction cache). Returns the file and how many images were left out for want of features."""
        if fmt not in EXPORT_FORMATS:
            raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
        if fmt == "archive":
            if predictions:
                raise InputError(
                    "a project archive holds the labels themselves; export predictions as voc or coco"
                )
            return self.repo.export_project(project_id, dest), 0
        missing: list[int] = []
        source = None
        if predictions:
            state = self.head(project_id)
            if state is None:
                raise TrainingError(
                    "no trained head yet: label two classes and train before exporting predictions"
                )
            lut = state.lut(self.repo.list_classes(project_id))

            def source(image_id: int) -> np.ndarray | None:
                feats = self.features(image_id, wait=120.0)
                if feats is None:
                    missing.append(image_id)
                    return None
                return self.predict_at(state, image_id, feats, lut, feats.original_size).labels

        if fmt == "voc":
            return self.repo.export_voc(project_id, dest, source), len(missing)
        return self.repo.export_coco(project_id, dest, source), len(missing)

    def import_bundle(
        self,
        source: str | os.PathLike,
        name: str | None = None,
        into: int | None = None,
        zero_is_unlabelled: bool = False,
    ) -> tuple[ProjectInfo, ImportReport | None]:
        """A project archive or VOC zip as a new project `name` (or a VOC zip merged `into` a project), with its
        features queued and, for imported labels, a fit asked for: what is exported comes back
        (storage.bundles)."""
        project, report = self.repo.import_bundle(source, name, into, zero_is_unlabelled)
        self.ensure_features(project_id=project.id)
        if report is not None and report.annotations:  # (an archive brings its heads: nothing to retrain)
            self.request_train(project.id)
        return project, report

    def export_head(self, head_id: int, dest_dir: Path) -> tuple[Path, Path]:
        """head-<id>.safetensors and head-<id>.json (backbone, classes, metrics, sha256) in `dest_dir`."""
        return self.repo.export_head(head_id, dest_dir)

    def display_rgb(self, image_id: int, max_side: int) -> np.ndarray:
        """The image downscaled so its longer side is at most max_side (cached)."""
        return self._display.get_or_compute(
            (image_id, max_side), lambda: self.repo.image_rgb(image_id, max_side)
        )

    def kmeans(self, image_id: int, k: int, size: tuple[int, int]) -> ClusterResult | None:
        feats = self.features(image_id)
        if feats is None:
            return None
        return self._views.get_or_compute(
            ("km", image_id, k, tuple(size), self.feature_key(image_id)),
            lambda: kmeans_image(
                analysis.tokens_numpy(feats), k, (int(size[0]), int(size[1])), seed=self.settings.seed
            ),
        )

    def kmeans_project(
        self, project_id: int, image_id: int, k: int, size: tuple[int, int]
    ) -> ClusterResult | None:
        """One K-means over the patch tokens of (up to `project_kmeans_images`) images of the project with
        features, so a colour means the same cluster in every image; returns the result for `image_id`."""
        feats = self.features(image_id)
        if feats is None:
            return None
        others = [
            i.id for i in self.repo.list_images(project_id) if i.id != image_id and self.has_features(i.id)
        ]
        rng = np.random.default_rng(self.settings.seed)
        limit = max(0, self.settings.project_kmeans_images - 1)
        if len(others) > limit:
            others = sorted(rng.choice(others, size=limit, replace=False).tolist())
        key = ("kmp", project_id, image_id, k, tuple(size), tuple(others), self.feature_key(image_id))

        def compute() -> ClusterResult:
            tokens = [analysis.tokens_numpy(feats)]
            sizes: list[tuple[int, int]] = [(int(size[0]), int(size[1]))]
            for oid in others:
                f = self.features(oid)
                if f is not None:
                    tokens.append(analysis.tokens_numpy(f))
                    sizes.append(f.grid)  # other images' maps are not shown: keep them tiny
            return kmeans_images(tokens, k, sizes, seed=self.settings.seed)[0]

        return self._views.get_or_compute(key, compute)

    def pca(self, image_id: int, size: tuple[int, int]) -> np.ndarray | None:
        feats = self.features(image_id)
        if feats is None:
            return None
        return self._views.get_or_compute(
            ("pca", image_id, tuple(size), self.feature_key(image_id)),
            lambda: pca_rgb(analysis.tokens_numpy(feats), (int(size[0]), int(size[1]))),
        )

    # ------------------------------------------------------------------ evaluation and statistics
    def evaluate(self, project_id: int, stop: Callable[[], bool] = lambda: False) -> EvalResult | None:
        """Scores of the current head on the project's ground-truth masks (None: no head or no ground truth)."""
        state = self.head(project_id)
        if state is None:
            return None
        key = (project_id, state.head_id, tuple(c.id for c in self.repo.list_classes(project_id)))
        cached = self._eval.get(key)
        if cached is not None and cached.skipped == 0:
            return cached
        result = jobs.evaluate(self, project_id, state, stop)
        return self._eval.put(key, result) if result is not None else None

    def training_images(self, project_id: int) -> list[ImageInfo]:
        """The images whose labels train the head (labelled, outside the val split: `jobs.trained_on`)."""
        return jobs.trained_on(self.repo.list_images(project_id))

    def by_need(self, project_id: int) -> list[ImageInfo]:
        """The project's images by their stored need score (core.active), neediest first; ties: fewest
        labelled pixels, then upload order; images without a score last. The one order of "most uncertain
        first" in the gallery, of "u" on the page and of `most_uncertain`."""
        return sorted(self.repo.list_images(project_id), key=need_key)

    def most_uncertain(self, project_id: int, exclude: Iterable[int] = ()) -> int | None:
        """The neediest scored image not in `exclude` (None: no image has a score, or all are excluded)."""
        skip = set(exclude)
        return next(
            (i.id for i in self.by_need(project_id) if i.uncertainty is not None and i.id not in skip), None
        )

    def thumbnail_path(self, image_id: int, side: int = 160) -> Path:
        """The image's thumbnail as a small JPEG on disk (made once per image content and side), for
        galleries of hundreds of images: never the original decoded again."""
        return self.repo.thumbnail_path(image_id, side)

    def thumbnail(self, image_id: int, side: int = 160) -> np.ndarray:
        with Image.open(self.thumbnail_path(image_id, side)) as img:
            return np.asarray(img.convert("RGB"))

    def delete_image(self, image_id: int) -> None:
        """Delete an image with its labels; retrain when it had any (the head must not keep them)."""
        info = self.repo.get_image(image_id)
        try:
            self.repo.delete_image(image_id)
        finally:
            self.forget_image(image_id)
        if info.labelled_pixels:
            self.request_train(info.project_id)

    def image_exists(self, image_id: int) -> bool:
        try:
            self.repo.get_image(image_id)
            return True
        except NotFoundError:
            return False
