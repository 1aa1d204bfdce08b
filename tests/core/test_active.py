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
