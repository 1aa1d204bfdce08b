"""Shared test set-up: offline always, small synthetic datasets in the VOC layout."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch the network
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from core.labels import IGNORE, write_label_png  # noqa: E402


def make_two_colour_image(
    h: int, w: int, split: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Left of column `split` is red-ish (class 1), right is blue-ish (class 2), with texture noise."""
    img = np.zeros((h, w, 3), np.float32)
    img[:, :split] = (200, 40, 40)
    img[:, split:] = (40, 60, 210)
    img += rng.normal(0, 12, img.shape)
    gt = np.full((h, w), 2, np.uint8)
    gt[:, :split] = 1
    return np.clip(img, 0, 255).astype(np.uint8), gt


def write_tiny_voc(
    root: Path, n_train: int = 3, n_val: int = 2, seed: int = 0, classes=("background", "red", "blue")
):
    """A VOC-layout dataset of non-square two-colour images with scribble labels (one stroke per class)."""
    rng = np.random.default_rng(seed)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    labels_dir = root / "scribbles"
    labels_dir.mkdir()
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    ids = {"train": [], "val": []}
    for i in range(n_train + n_val):
        h, w = 60 + 7 * i, 90 - 5 * i
        split = w // 3 + int(rng.integers(0, w // 3))
        img, gt = make_two_colour_image(h, w, split, rng)
        image_id = f"img_{i:03d}"
        Image.fromarray(img).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        gt_border = gt.copy()
        gt_border[:, split - 1 : split + 1] = IGNORE  # VOC-style ignore band at the boundary
        write_label_png(root / "SegmentationClass" / f"{image_id}.png", gt_border)
        scrib = np.full_like(gt, IGNORE)
        scrib[h // 2 - 2 : h // 2 + 2, 2 : split - 4] = 1
        scrib[h // 3 : h // 3 + 3, split + 4 : w - 2] = 2
        write_label_png(labels_dir / f"{image_id}.png", scrib)
        ids["train" if i < n_train else "val"].append(image_id)
    for split_name, names in ids.items():
        (root / "ImageSets" / "Segmentation" / f"{split_name}.txt").write_text("\n".join(names) + "\n")
    return root, labels_dir


@pytest.fixture
def tiny_voc(tmp_path: Path):
    return write_tiny_voc(tmp_path / "voc")


@pytest.fixture(scope="session")
def random_backbone():
    """One random-weight ViT-S/14 shared by the session (architecture-true, seeded)."""
    from core.backbone import load_backbone

    return load_backbone("dinov2_vits14", weights="random", device="cpu")
