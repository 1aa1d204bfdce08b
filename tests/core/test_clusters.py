import numpy as np
import pytest

from core.clusters import (
    CLUSTER_PALETTE,
    kmeans_image,
    kmeans_images,
    overlay,
    pca_rgb,
    pca_rgb_images,
)

C = 16
RNG = np.random.default_rng(42)
GROUP_A, GROUP_B = RNG.normal(size=C), RNG.normal(size=C)


def two_groups(h: int, w: int, a_mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """[C, h, w] tokens: GROUP_A where a_mask, GROUP_B elsewhere, plus small noise."""
    rng = np.random.default_rng(seed)
    tokens = np.where(a_mask[None], GROUP_A[:, None, None], GROUP_B[:, None, None])
    return (tokens + 0.1 * rng.normal(size=(C, h, w))).astype(np.float32)


def left_right(h: int = 6, w: int = 8, split: int = 4, seed: int = 0) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[:, :split] = True
    return two_groups(h, w, mask, seed)


def test_kmeans_recovers_halves_at_patch_and_pixel_level():
    res = kmeans_image(left_right(), 2, (50, 70))
    left, right = res.patch_labels[0, 0], res.patch_labels[0, -1]
    assert left != right
    assert (res.patch_labels[:, :4] == left).all() and (res.patch_labels[:, 4:] == right).all()
    assert res.labels.shape == (50, 70) and res.labels.dtype == np.uint8
    # Cells 0..3 of 8 cover pixel columns c with floor(c * 8 / 70) < 4, i.e. c < 35.
    assert (res.labels[:, :35] == left).all() and (res.labels[:, 35:] == right).all()


def test_canonical_order_is_by_size():
    res = kmeans_image(left_right(split=6), 2, (12, 16))
    assert (res.patch_labels[:, :6] == 0).all() and (res.patch_labels[:, 6:] == 1).all()


def test_kmeans_is_deterministic():
    tokens = np.random.default_rng(1).normal(size=(C, 6, 8)).astype(np.float32)
    a, b = kmeans_image(tokens, 5, (30, 40), seed=3), kmeans_image(tokens, 5, (30, 40), seed=3)
    np.testing.assert_array_equal(a.patch_labels, b.patch_labels)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_cross_image_ids_are_shared():
    top = np.zeros((5, 7), bool)
    top[:2] = True
    first, second = kmeans_images([left_right(), two_groups(5, 7, top, seed=1)], 2, [(60, 80), (20, 28)])
    a_id, b_id = first.patch_labels[0, 0], first.patch_labels[0, -1]
    assert a_id != b_id
    assert (second.patch_labels[:2] == a_id).all() and (second.patch_labels[2:] == b_id).all()
    assert second.labels.shape == (20, 28)


def test_k_out_of_range():
    tokens = left_right()
    for k in (1, 13):
        with pytest.raises(ValueError, match="2..12"):
            kmeans_image(tokens, k, (6, 8))
    with pytest.raises(ValueError, match="more than the 4 patch tokens"):
        kmeans_image(tokens[:, :2, :2], 5, (6, 8))
    with pytest.raises(ValueError, match=r"\[C, h, w\]"):
        kmeans_image(tokens[0], 2, (6, 8))


def test_colour_map_and_overlay():
    assert len({tuple(c) for c in CLUSTER_PALETTE}) == 12
    tokens = np.random.default_rng(2).normal(size=(C, 6, 8)).astype(np.float32)
    res = kmeans_image(tokens, 12, (30, 40))
    cmap = res.colour_map()
    assert cmap.shape == (30, 40, 3) and cmap.dtype == np.uint8
    assert len(np.unique(cmap.reshape(-1, 3), axis=0)) == 12
    image = np.full((30, 40, 3), 100, np.uint8)
    np.testing.assert_array_equal(overlay(image, cmap, alpha=0.0), image)
    np.testing.assert_array_equal(overlay(image, cmap, alpha=1.0), cmap)
    half = overlay(image, cmap)
    assert half.dtype == np.uint8
    assert np.abs(half.astype(int) - (image.astype(int) + cmap) / 2).max() <= 0.5
    with pytest.raises(ValueError, match="must both be"):
        overlay(image[:10], cmap)


def test_pca_rgb_separates_groups():
    rgb = pca_rgb(left_right(), (50, 70))
    assert rgb.shape == (50, 70, 3) and rgb.dtype == np.uint8
    left = rgb[:, :30].reshape(-1, 3).mean(axis=0)
    right = rgb[:, 40:].reshape(-1, 3).mean(axis=0)
    assert np.abs(left - right).max() > 150


def test_pca_rgb_images_shares_colours():
    top = np.zeros((5, 7), bool)
    top[:2] = True
    first, second = pca_rgb_images([left_right(), two_groups(5, 7, top, seed=1)], [(50, 70), (40, 56)])
    assert second.shape == (40, 56, 3)
    # The same group gets about the same colour in both images, along the first principal axis.
    channel = np.argmax(np.abs(first[0, 0].astype(int) - first[0, -1]))
    assert abs(int(first[0, 0, channel]) - int(second[0, 0, channel])) < 40
    assert abs(int(first[0, -1, channel]) - int(second[-1, 0, channel])) < 40
