"""core.active: the one rule for where labels are needed (suggestions, gallery order, the simulator)."""

from __future__ import annotations

import numpy as np
import pytest

from core.active import Region, image_score, regions, suggest, unlabelled_share
from core.features import pixel_cells
from core.labels import IGNORE


def test_unlabelled_share_counts_pixels_per_patch_by_the_one_mapping():
    labels = np.full((30, 40), IGNORE, np.uint8)
    labels[:10, :10] = 1  # exactly patch (0, 0) of a 3 x 4 grid
    share = unlabelled_share(labels, (3, 4))
    assert share[0, 0] == 0 and (np.delete(share.reshape(-1), 0) == 1).all()
    labels[:5, 10:20] = 2  # half of patch (0, 1)
    assert unlabelled_share(labels, (3, 4))[0, 1] == pytest.approx(0.5)
    assert (unlabelled_share(None, (3, 4)) == 1).all()
    odd = unlabelled_share(np.zeros((7, 11), np.uint8), (3, 5))  # sizes that do not divide: all labelled
    assert (odd == 0).all()
    assert sorted(set(pixel_cells(7, 3).tolist())) == [0, 1, 2]


def test_regions_rank_by_summed_need_and_suggestions_spread_over_images():
    small = np.zeros((6, 8), np.float32)
    small[0, 0] = 0.95
    big = np.zeros((6, 8), np.float32)
    big[2:5, 2:6] = 0.6
    assert image_score(big, (60, 80)) > image_score(small, (60, 80)) > 0
    two = np.maximum(small, big)
    found = regions(two, (60, 80), n=5, quantile=0.5)
    assert [r.score for r in found] == sorted((r.score for r in found), reverse=True)
    assert found[0].box == (20, 20, 60, 50)
    picks = suggest([("a", two, (60, 80)), ("b", big * 0.9, (60, 80)), ("c", small, (60, 80))], n=2)
    assert [p.key for p in picks] == ["a", "b"]  # one per image: b's region beats a's second one
    assert all(isinstance(p, Region) for p in picks)
    assert suggest([("z", np.zeros((6, 8), np.float32), (60, 80))]) == []


def test_a_kind_of_patch_unsure_all_over_the_project_outranks_a_rare_one():
    import torch

    from core.active import fit_clusters, project_needs
    from core.features import PatchFeatures

    def feats(kinds: np.ndarray) -> PatchFeatures:  # token = one-hot of the patch's kind
        t = torch.zeros(3, *kinds.shape)
        t[
            torch.from_numpy(kinds), torch.arange(kinds.shape[0])[:, None], torch.arange(kinds.shape[1])[None]
        ] = 1
        return PatchFeatures(t, (kinds.shape[0] * 14, kinds.shape[1] * 14), (60, 60))

    kinds = [np.zeros((6, 6), np.int64) for _ in range(3)]
    for k in kinds:
        k[0:3, 0:3] = 1  # kind 1: in every image
    kinds[0][3:6, 3:6] = 2  # kind 2: in one image only
    fs = [feats(k) for k in kinds]
    clusters = fit_clusters(fs, m=3)
    raw = [np.where(k > 0, 0.9, 0.0).astype(np.float32) for k in kinds]  # the head is equally unsure of both
    needs, totals = project_needs(raw, [clusters.assign(f) for f in fs], 3)
    assert totals.max() == 1.0
    best = regions(needs[0], (60, 60), n=2)
    assert len(best) == 2 and best[0].box == (0, 0, 30, 30)  # the common kind first
    assert best[0].score > best[1].score


def test_need_falls_with_the_labels_an_image_already_holds():
    """Step 4: the same unsure patch needs less in an image that already holds labels elsewhere."""
    import torch

    from core.active import DIVERSITY, label_need
    from core.features import PatchFeatures
    from core.head import LinearHead

    feats = PatchFeatures(torch.zeros(3, 6, 6), (84, 84), (60, 60))
    head = LinearHead(3, 2)  # zero weights: equally unsure of both classes everywhere (entropy 1)
    fresh = label_need(head, feats, None)
    assert np.allclose(fresh, 1.0)
    labels = np.full((60, 60), IGNORE, np.uint8)
    labels[:10, :50] = 0  # 5 patches of the top row labelled
    need = label_need(head, feats, labels)
    assert (need[0, :5] == 0).all()
    assert np.allclose(need[3:, :], 1.0 / (1.0 + 5 / DIVERSITY))
