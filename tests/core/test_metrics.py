import json
import math

import numpy as np
import pytest

from core.metrics import ConfusionMatrix, SegmentationScores, confusion_matrix

# 3x4 example, 3 classes, two unlabelled (255) pixels.
GT = np.array([[0, 0, 1, 1], [0, 2, 1, 255], [2, 2, 255, 1]], dtype=np.uint8)
PRED = np.array([[0, 1, 1, 1], [0, 2, 2, 0], [2, 0, 1, 1]], dtype=np.uint8)
# Counted by hand over the 10 labelled pixels (rows = gt, cols = pred).
EXPECTED_CM = np.array([[2, 1, 0], [0, 3, 1], [1, 0, 2]])


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(GT, PRED, 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, EXPECTED_CM)


def test_scores_by_hand():
    s = SegmentationScores.from_confusion(EXPECTED_CM)
    # IoU = tp / (gt + pred - tp): class 0: 2/(3+3-2), class 1: 3/(4+4-3), class 2: 2/(3+3-2)
    assert s.per_class_iou == pytest.approx((0.5, 0.6, 0.5))
    assert s.miou == pytest.approx(1.6 / 3)
    assert s.pixel_accuracy == pytest.approx(7 / 10)
    assert s.mean_class_accuracy == pytest.approx((2 / 3 + 3 / 4 + 2 / 3) / 3)


def test_class_absent_from_both_is_excluded():
    s = ConfusionMatrix(4).update(GT, PRED).scores()
    assert math.isnan(s.per_class_iou[3])
    assert s.miou == pytest.approx(1.6 / 3)
    assert s.mean_class_accuracy == pytest.approx((2 / 3 + 3 / 4 + 2 / 3) / 3)
    d = s.to_dict(["a", "b", "c", "d"])
    assert d["per_class_iou"]["d"] is None
    json.dumps(d, allow_nan=False)
    table = s.format_table(["a", "b", "c", "d"])
    assert "53.33" in table and "70.00" in table and "60.00" in table


def test_a_class_without_ground_truth_is_left_out_of_the_mean_and_named():
    """VOC's rule: a class the ground truth never shows has no IoU; predicting it still costs the true class."""
    pred = PRED.copy()
    pred[0, 0] = 3  # a false positive of class 3, which the ground truth never has
    s = ConfusionMatrix(4).update(GT, pred).scores()
    assert math.isnan(s.per_class_iou[3])
    assert s.per_class_iou[0] == pytest.approx(1 / 4)  # the pixel it took from class 0 is a miss of class 0
    assert s.miou == pytest.approx((1 / 4 + 0.6 + 0.5) / 3)
    assert s.to_dict(["a", "b", "c", "d"])["no_ground_truth"] == ["d"]


def test_accumulation_equals_concatenation():
    rng = np.random.default_rng(0)
    a_gt, a_pred = rng.integers(0, 5, (7, 9), dtype=np.uint8), rng.integers(0, 5, (7, 9), dtype=np.uint8)
    b_gt, b_pred = rng.integers(0, 5, (7, 4), dtype=np.uint8), rng.integers(0, 5, (7, 4), dtype=np.uint8)
    a_gt[a_gt == 4] = 255
    acc = ConfusionMatrix(5).update(a_gt, a_pred).update(b_gt, b_pred)
    whole = confusion_matrix(np.hstack([a_gt, b_gt]), np.hstack([a_pred, b_pred]), 5)
    np.testing.assert_array_equal(acc.matrix, whole)
    merged = ConfusionMatrix(5).update(a_gt, a_pred).merge(ConfusionMatrix(5).update(b_gt, b_pred))
    np.testing.assert_array_equal(merged.matrix, whole)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        confusion_matrix(GT, PRED.T, 3)


def test_out_of_range_values_raise():
    with pytest.raises(ValueError, match="prediction value 3"):
        confusion_matrix(GT, np.full_like(PRED, 3), 3)
    with pytest.raises(ValueError, match="prediction value 255"):
        confusion_matrix(GT, np.full_like(PRED, 255), 3)
    bad_gt = GT.copy()
    bad_gt[0, 0] = 7
    with pytest.raises(ValueError, match="ground truth value 7"):
        confusion_matrix(bad_gt, PRED, 3)
    with pytest.raises(ValueError, match="merge"):
        ConfusionMatrix(3).merge(ConfusionMatrix(4))


def test_perfect_prediction():
    pred = np.where(GT == 255, 0, GT).astype(np.uint8)
    s = ConfusionMatrix(3).update(GT, pred).scores()
    assert s.miou == 1.0 and s.pixel_accuracy == 1.0 and s.mean_class_accuracy == 1.0
    assert s.per_class_iou == (1.0, 1.0, 1.0)


def test_all_ignored_gives_nan_without_warnings():
    with np.errstate(all="raise"):
        s = ConfusionMatrix(3).update(np.full((2, 2), 255, np.uint8), np.zeros((2, 2), np.uint8)).scores()
    assert math.isnan(s.miou) and math.isnan(s.pixel_accuracy)
    assert s.to_dict()["miou"] is None
