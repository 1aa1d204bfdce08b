import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.morphology import skeletonize

from core.labels import IGNORE, read_label_png, write_label_png
from core.metrics import ConfusionMatrix
from core.voc import VocDataset
from experiments.labelgen import (
    LabelGenError,
    LabelQuality,
    NoisyConfig,
    PointConfig,
    ScribbleConfig,
    components,
    generate_labels,
    image_rng,
    point_labels,
    scribble_labels,
)

COLOURS = [(40, 90, 40), (220, 40, 40), (40, 60, 220), (230, 200, 30)]


def make_tiny_voc(root, n_train=8, n_val=4, size=(70, 84), seed=0) -> Path:
    """A VOC-layout dataset of coloured ellipses on grass: classes background, red, blue, yellow; objects
    are outlined with a void (255) border as in PASCAL VOC. Shared by the experiment tests."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("background\nred\nblue\nyellow\n")
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    ids = []
    for i in range(n_train + n_val):
        gt = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            c = int(rng.integers(1, 4))
            cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
            ry, rx = rng.uniform(0.1, 0.3) * h, rng.uniform(0.1, 0.3) * w
            gt[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = c
        img = np.zeros((h, w, 3), np.float32)
        for c, col in enumerate(COLOURS):
            img[gt == c] = col
        img += rng.normal(0, 12, img.shape)
        edge = ndimage.morphological_gradient(gt, size=2) > 0
        gt[edge & (gt > 0)] = IGNORE
        image_id = f"img{i:03d}"
        ids.append(image_id)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            root / "JPEGImages" / f"{image_id}.jpg", quality=95
        )
        write_label_png(root / "SegmentationClass" / f"{image_id}.png", gt)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:n_train]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[n_train:]) + "\n")
    return root


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> VocDataset:
    return VocDataset.open(make_tiny_voc(tmp_path_factory.mktemp("voc"), n_train=16, n_val=2))


def _gts(voc: VocDataset) -> list[np.ndarray]:
    return [voc.ground_truth(i) for i in voc.ids("train")]


def _assert_sparse_labels_are_true(gt: np.ndarray, labels: np.ndarray) -> None:
    labelled = labels != IGNORE
    assert labelled.any()
    np.testing.assert_array_equal(labels[labelled], gt[labelled])  # never a class the GT does not have there
    assert not (labelled & (gt == IGNORE)).any()


def test_scribbles_follow_the_documented_coverage(voc):
    cfg = ScribbleConfig(width=1, coverage=0.5, background_strokes=2, min_area=16)
    for k, gt in enumerate(_gts(voc)):
        labels, stats = scribble_labels(gt, image_rng(0, f"i{k}"), cfg, background=0)
        _assert_sparse_labels_are_true(gt, labels)
        # width 1: exactly round(coverage x skeleton length) centre-line pixels per component
        expected = 0
        for comp in components(gt):
            if comp.area >= cfg.min_area:
                n = int(skeletonize(np.pad(comp.mask, 1)).sum())
                expected += max(1, round(cfg.coverage * n))
                assert (labels[comp.slc][comp.mask] != IGNORE).any(), "every object gets a stroke"
        assert int((labels != IGNORE).sum()) == expected == stats["centreline_pixels"]
        assert stats["centreline_pixels"] / stats["skeleton_pixels"] == pytest.approx(0.5, abs=0.05)


def test_scribble_density_grows_with_coverage_and_width(voc):
    gts = _gts(voc)

    def density(cfg):
        n = sum(
            int((scribble_labels(g, image_rng(1, str(i)), cfg)[0] != IGNORE).sum()) for i, g in enumerate(gts)
        )
        return n / sum(int((g != IGNORE).sum()) for g in gts)

    d = [density(ScribbleConfig(width=w, coverage=c)) for w, c in ((1, 0.25), (1, 0.5), (3, 0.5), (5, 1.0))]
    assert d == sorted(d) and len(set(d)) == 4
    assert 0.001 < d[0] and d[-1] < 0.5  # sparse, as scribbles are
    with pytest.raises(LabelGenError, match="coverage"):
        ScribbleConfig(coverage=0)


def test_points_count_and_class(voc):
    for k, gt in enumerate(_gts(voc)):
        labels, stats = point_labels(
            gt, image_rng(0, f"i{k}"), PointConfig(points=2, background_points=3), background=0
        )
        _assert_sparse_labels_are_true(gt, labels)
        objects = [c for c in components(gt) if c.cls != 0]
        expected_obj = sum(min(2, c.area) for c in objects)
        assert stats["object_points"] == expected_obj and stats["background_points"] == 3
        assert int((labels != IGNORE).sum()) == expected_obj + 3  # radius 0: one pixel per point
        for c in objects:
            assert int((labels[c.slc][c.mask] != IGNORE).sum()) == min(2, c.area)
        disks, _ = point_labels(gt, image_rng(0, f"i{k}"), PointConfig(points=1, radius=2), background=0)
        _assert_sparse_labels_are_true(gt, disks)
        assert (disks != IGNORE).sum() > len(objects) + 1


def test_generators_are_seeded_per_image(voc, tmp_path):
    a = generate_labels(voc, "train", "scribble", tmp_path / "a", ScribbleConfig(), seed=3, progress=False)
    generate_labels(
        voc, "train", "scribble", tmp_path / "b", ScribbleConfig(), seed=3, limit=4, progress=False
    )
    generate_labels(voc, "train", "scribble", tmp_path / "c", ScribbleConfig(), seed=4, progress=False)
    ids = voc.ids("train")
    for i in ids[:4]:  # an image's labels do not depend on which other images were generated
        np.testing.assert_array_equal(
            read_label_png(tmp_path / "a" / f"{i}.png"), read_label_png(tmp_path / "b" / f"{i}.png")
        )
    assert any(
        not np.array_equal(
            read_label_png(tmp_path / "a" / f"{i}.png"), read_label_png(tmp_path / "c" / f"{i}.png")
        )
        for i in ids
    )
    manifest = json.loads((tmp_path / "a" / "labels.json").read_text())
    assert manifest == a and manifest["kind"] == "scribble" and manifest["images"] == len(ids)
    assert manifest["quality"]["precision"] == 1.0
    assert 0 < manifest["quality"]["coverage"] < 0.3
    assert manifest["skeleton_coverage"] == pytest.approx(0.5, abs=0.02)


def test_worker_processes_give_the_same_labels(voc, tmp_path):
    one = generate_labels(
        voc, "train", "point", tmp_path / "1", PointConfig(radius=1), limit=6, progress=False
    )
    two = generate_labels(
        voc, "train", "point", tmp_path / "2", PointConfig(radius=1), limit=6, progress=False, workers=2
    )
    assert one["quality"] == two["quality"] and one["totals"] == two["totals"]
    for i in voc.ids("train")[:6]:
        np.testing.assert_array_equal(
            read_label_png(tmp_path / "1" / f"{i}.png"), read_label_png(tmp_path / "2" / f"{i}.png")
        )


@pytest.mark.parametrize("target", [0.636, 0.694])
def test_noisy_labels_hit_the_target_miou(voc, tmp_path, target):
    cfg = NoisyConfig(target_miou=target, tolerance=0.01)
    manifest = generate_labels(voc, "train", "noisy", tmp_path, cfg, seed=0, progress=False)
    cm = ConfusionMatrix(len(voc.classes))
    wrong_class_pixels = 0
    for i in voc.ids("train"):
        gt, labels = voc.ground_truth(i), read_label_png(tmp_path / f"{i}.png")
        assert not (labels == IGNORE).any()  # dense, like pseudo-labels
        cm.update(gt, labels)
        valid = gt != IGNORE
        wrong_class_pixels += int((~np.isin(labels, np.unique(gt[valid])) & valid).sum())
    miou = cm.scores().miou
    assert abs(miou - target) <= 0.01  # the requested error rate, measured independently
    assert manifest["achieved_miou"] == pytest.approx(miou, abs=1e-9) and manifest["within_tolerance"]
    assert wrong_class_pixels > 0  # by design: whole objects relabelled with classes absent from the image


def test_noisy_without_a_background_class(voc):
    from experiments.labelgen import corrupt, plan_noise

    gts = _gts(voc)[:6]
    plans = [
        plan_noise(g, image_rng(0, str(i)), 4, NoisyConfig(), background=None) for i, g in enumerate(gts)
    ]
    scores = []
    for s in (0.0, 0.5, 2.0):
        q = LabelQuality(4)
        for g, p in zip(gts, plans, strict=True):
            labels = corrupt(p, s, s, NoisyConfig())
            assert labels.max() < 4
            q.update(g, labels)
        scores.append(q.miou())
    assert scores[0] == 1.0 and scores[0] > scores[1] > scores[2]


def test_noisy_target_out_of_range():
    with pytest.raises(LabelGenError, match="target mIoU"):
        NoisyConfig(target_miou=63.6)


def test_label_quality_by_hand():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, IGNORE]], np.uint8)
    labels = np.array([[0, IGNORE, 1, 0], [IGNORE, 0, IGNORE, 1]], np.uint8)
    s = LabelQuality(2).update(gt, labels).summary()
    # class 0: tp 2, gt 4, pred 3 -> 2/5; class 1: tp 1, gt 3, pred 1 -> 1/3 (the GT-void pixel is ignored)
    assert s["miou"] == pytest.approx((2 / 5 + 1 / 3) / 2)
    assert s["coverage"] == pytest.approx(4 / 7)
    assert s["precision"] == pytest.approx(3 / 4)


def test_make_labels_command(voc, tmp_path, capsys):
    from cli.main import main

    out = tmp_path / "pts"
    rc = main(["make-labels", "--data", str(voc.root), "--kind", "point", "--points", "2", "--out", str(out)])
    assert rc == 0
    assert "wrote 16 point label maps" in capsys.readouterr().out
    assert len(list(out.glob("*.png"))) == 16 and (out / "labels.json").is_file()
    rc = main(
        [
            "make-labels",
            "--data",
            str(voc.root),
            "--kind",
            "noisy",
            "--target-miou",
            "69.4",
            "--out",
            str(tmp_path / "n"),
            "--limit",
            "6",
            "--tolerance",
            "0.02",
        ]
    )
    assert rc == 0
    assert "target 69.4%" in capsys.readouterr().out
    assert main(["make-labels", "--data", str(tmp_path / "nope"), "--kind", "point", "--out", str(out)]) == 1
    assert "dataset folder not found" in capsys.readouterr().err
