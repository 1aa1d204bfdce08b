"""Where a project needs labels: core.active's rule over the project's images, with the per-project state
the rule needs kept between calls (the patch clusters, refitted when the set of images grows by a fifth,
and the clusters' need totals of the last full pass), and the per-image pieces that do not depend on the
head kept between heads: each image's patch cluster assignment (its features never change) and unlabelled
share of each patch (changes only with its labels, keyed by label version). So scoring the project under a
new head reads no label map that did not change and costs one head application per image."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from core import active
from core.features import PatchFeatures
from core.lru import LRU
from engine.analysis import HeadState
from storage import ImageInfo, Repository

REFIT_GROWTH = 1.2  # refit the clusters once a project has this many times the images they were fitted on
GRIDS_KEPT = (
    10_000  # images whose grids are kept (two small [h, w] arrays each: a few KB at the default scale)
)


class NeedsStopped(Exception):
    """`stop()` turned true during a pass over the project (a newer edit wants the trainer thread)."""


class LabelNeeds:
    def __init__(
        self, repo: Repository, features: Callable[[ImageInfo], PatchFeatures | None], seed: int = 0
    ):
        self.repo, self._cached, self.seed = repo, features, seed
        self._lock = threading.Lock()
        self._clusters: dict[
            int, tuple[int, active.PatchClusters]
        ] = {}  # project -> (images fitted on, clusters)
        self._totals: dict[int, np.ndarray] = {}  # project -> cluster totals of the last full pass
        self._shares: LRU[tuple[int, np.ndarray]] = LRU(GRIDS_KEPT)  # image -> (label version, share)
        # image -> (the clusters it was assigned to, assignment); the clusters object itself, not its id(),
        # so a refit's new clusters never match an assignment made with the old ones
        self._assigned: LRU[tuple[active.PatchClusters, np.ndarray]] = LRU(GRIDS_KEPT)

    def _features(self, info: ImageInfo) -> PatchFeatures | None:
        return self._cached(info)

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

    def _share(self, info: ImageInfo, feats: PatchFeatures) -> np.ndarray:
        """The image's unlabelled share per patch; its label map is read only when its labels changed."""
        if info.labelled_pixels == 0:
            return active.unlabelled_share(None, feats.grid)
        hit = self._shares.get(info.id)
        if hit is not None and hit[0] == info.label_version and hit[1].shape == feats.grid:
            return hit[1]
        share = active.unlabelled_share(self.repo.label_map(info.id), feats.grid)
        return self._shares.put(info.id, (info.label_version, share))[1]

    def _assignment(self, image_id: int, clusters: active.PatchClusters, feats: PatchFeatures) -> np.ndarray:
        hit = self._assigned.get(image_id)
        if hit is not None and hit[0] is clusters and hit[1].shape == feats.grid:
            return hit[1]
        return self._assigned.put(image_id, (clusters, clusters.assign(feats)))[1]

    def forget(self, image_id: int) -> None:
        self._shares.pop(image_id)
        self._assigned.pop(image_id)

    def forget_project(self, project_id: int, image_ids: list[int]) -> None:
        """A new resolution: the project's clusters and its images' grids are of the old tokens."""
        with self._lock:
            self._clusters.pop(project_id, None)
            self._totals.pop(project_id, None)
        for image_id in image_ids:
            self.forget(image_id)

    def all(
        self, project_id: int, state: HeadState, stop: Callable[[], bool] = lambda: False
    ) -> dict[int, tuple[np.ndarray, tuple[int, int]]]:
        """image id -> (weighted need grid, image size) for every image with cached features; refreshes the
        project's cluster totals that `one` uses. Raises NeedsStopped as soon as `stop()` is true."""
        infos = [(i, f) for i in self.repo.list_images(project_id) if (f := self._features(i)) is not None]
        clusters = self._clusters_for(project_id, [f for _, f in infos])
        if clusters is None:
            return {}
        raw, assigned = [], []
        for info, feats in infos:
            if stop():
                raise NeedsStopped()
            raw.append(active.need_from_share(state.head, feats, self._share(info, feats)))
            assigned.append(self._assignment(info.id, clusters, feats))
        needs, totals = active.project_needs(raw, assigned, len(clusters.centroids))
        with self._lock:
            self._totals[project_id] = totals
        return {i.id: (need, (i.height, i.width)) for (i, _), need in zip(infos, needs, strict=True)}

    def one(self, project_id: int, state: HeadState, image_id: int, feats: PatchFeatures) -> np.ndarray:
        """The weighted need grid of one image, with the totals of the last full pass (plain need before one)."""
        raw = active.need_from_share(state.head, feats, self._share(self.repo.get_image(image_id), feats))
        with self._lock:
            fitted, totals = self._clusters.get(project_id), self._totals.get(project_id)
        if fitted is None or totals is None:
            return raw
        return active.weighted(raw, self._assignment(image_id, fitted[1], feats), totals)
