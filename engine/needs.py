"""Where a project needs labels: core.active's rule over the project's images, with the per-project state
the rule needs kept between calls (the patch clusters, refitted when the set of images grows by a fifth,
and the clusters' need totals of the last full pass)."""

from __future__ import annotations

import threading

import numpy as np

from core import active
from core.cache import FeatureStore
from core.features import PatchFeatures
from engine.analysis import HeadState
from storage import ImageInfo, Repository

REFIT_GROWTH = 1.2  # refit the clusters once a project has this many times the images they were fitted on


class LabelNeeds:
    def __init__(self, repo: Repository, store: FeatureStore, seed: int = 0):
        self.repo, self.store, self.seed = repo, store, seed
        self._lock = threading.Lock()
        self._clusters: dict[
            int, tuple[int, active.PatchClusters]
        ] = {}  # project -> (images fitted on, clusters)
        self._totals: dict[int, np.ndarray] = {}  # project -> cluster totals of the last full pass

    def _features(self, info: ImageInfo) -> PatchFeatures | None:
        return self.store.cached(info.pixel_hash or info.content_hash)

    def _clusters_for(self, project_id: int, feats: list[PatchFeatures]) -> active.PatchClusters | None:
        with self._lock:
            fitted = self._clusters.get(project_id)
        if fitted is not None and len(feats) <= fitted[0] * REFIT_GROWTH:
            return fitted[1]
        if not feats:
            return None
        clusters = active.fit_clusters(feats, seed=self.seed)
        with self._lock:
            self._clusters[project_id] = (len(feats), clusters)
        return clusters

    def _raw(self, state: HeadState, image_id: int, feats: PatchFeatures) -> np.ndarray:
        return active.label_need(state.head, feats, self.repo.label_map(image_id))

    def all(self, project_id: int, state: HeadState) -> dict[int, tuple[np.ndarray, tuple[int, int]]]:
        """image id -> (weighted need grid, image size) for every image with cached features; refreshes the
        project's cluster totals that `one` uses."""
        infos = [(i, f) for i in self.repo.list_images(project_id) if (f := self._features(i)) is not None]
        clusters = self._clusters_for(project_id, [f for _, f in infos])
        raw = [self._raw(state, i.id, f) for i, f in infos]
        if clusters is None:
            return {}
        needs, totals = active.project_needs(
            raw, [clusters.assign(f) for _, f in infos], len(clusters.centroids)
        )
        with self._lock:
            self._totals[project_id] = totals
        return {i.id: (need, (i.height, i.width)) for (i, _), need in zip(infos, needs, strict=True)}

    def one(self, project_id: int, state: HeadState, image_id: int, feats: PatchFeatures) -> np.ndarray:
        """The weighted need grid of one image, with the totals of the last full pass (plain need before one)."""
        raw = self._raw(state, image_id, feats)
        with self._lock:
            fitted, totals = self._clusters.get(project_id), self._totals.get(project_id)
        if fitted is None or totals is None:
            return raw
        return active.weighted(raw, fitted[1].assign(feats), totals)
