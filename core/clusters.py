"""Unsupervised views of patch features: K-means clusters (the paper's Figure 2) and PCA-RGB.

Tokens are numpy float arrays shaped [C, h, w] (one image's patch grid); outputs are at image size (H, W).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from core.errors import InputError
from core.features import pixel_cells, upsample_rows

K_MIN, K_MAX = 2, 12

# 12 qualitative colours (from Sasha Trubetskoy's distinct-colour list): one per cluster id, so a cluster
# keeps its colour across images, runs and values of k.
CLUSTER_PALETTE = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (0, 128, 128),
        (170, 110, 40),
        (0, 0, 128),
    ],
    dtype=np.uint8,
)


@dataclass(frozen=True)
class ClusterResult:
    patch_labels: np.ndarray  # [h, w] int64 cluster ids, 0 = largest cluster
    labels: np.ndarray  # [H, W] uint8, the patch grid upsampled by nearest neighbour

    def colour_map(self) -> np.ndarray:
        """[H, W, 3] uint8 with CLUSTER_PALETTE[id] per pixel."""
        return CLUSTER_PALETTE[self.labels]


def overlay(image_rgb: np.ndarray, colour_map: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour map over an image: (1 - alpha) * image + alpha * colours, as uint8."""
    image_rgb, colour_map = np.asarray(image_rgb), np.asarray(colour_map)
    if image_rgb.shape != colour_map.shape or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"image {image_rgb.shape} and colour map {colour_map.shape} must both be [H, W, 3]")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within 0..1, got {alpha}")
    out = (1.0 - alpha) * image_rgb.astype(np.float32) + alpha * colour_map.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _check_tokens(
    tokens_list: Sequence[np.ndarray], out_sizes: Sequence[tuple[int, int]]
) -> list[np.ndarray]:
    if len(tokens_list) == 0:
        raise ValueError("no token grids given")
    if len(out_sizes) != len(tokens_list):
        raise ValueError(f"{len(tokens_list)} token grids but {len(out_sizes)} output sizes")
    arrays = [np.asarray(t, dtype=np.float32) for t in tokens_list]
    for i, (t, size) in enumerate(zip(arrays, out_sizes, strict=True)):
        if t.ndim != 3 or t.shape[1] == 0 or t.shape[2] == 0:
            raise ValueError(f"tokens of image {i} must be shaped [C, h, w], got {t.shape}")
        if t.shape[0] != arrays[0].shape[0]:
            raise ValueError(
                f"tokens of image {i} have {t.shape[0]} channels, image 0 has {arrays[0].shape[0]}"
            )
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"output size of image {i} must be (H, W) with H, W >= 1, got {size}")
        if not np.isfinite(t).all():
            raise ValueError(f"tokens of image {i} contain NaN or infinity")
    return arrays


def _flat(tokens: np.ndarray) -> np.ndarray:
    return tokens.reshape(tokens.shape[0], -1).T  # [h*w, C], row-major over the grid


def _upsample_nearest(grid: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Each pixel shows the cluster of its patch (core.features.pixel_cells, the one mapping)."""
    (h, w), (H, W) = grid.shape, out_size
    return grid[pixel_cells(H, h)[:, None], pixel_cells(W, w)[None, :]]


def kmeans_images(
    tokens_list: Sequence[np.ndarray], k: int, out_sizes: Sequence[tuple[int, int]], seed: int = 0
) -> list[ClusterResult]:
    """One K-means over all images' tokens, so a cluster id means the same thing in every image."""
    if not isinstance(k, int | np.integer) or not K_MIN <= k <= K_MAX:
        raise InputError(f"k must be an integer within {K_MIN}..{K_MAX}, got {k}")
    arrays = _check_tokens(tokens_list, out_sizes)
    x = np.concatenate([_flat(t) for t in arrays])
    if k > len(x):
        raise InputError(f"k = {k} is more than the {len(x)} patch tokens to cluster")
    # L2-normalise: DINO features are compared by cosine similarity, and on the unit sphere Euclidean
    # K-means ranks distances exactly as cosine does.
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    raw = KMeans(n_clusters=int(k), random_state=seed, n_init=4).fit_predict(x)
    # Canonical ids: by descending cluster size (ties by sklearn's id), so colours do not depend on the
    # arbitrary order in which K-means happened to find the clusters.
    order = np.argsort(-np.bincount(raw, minlength=k), kind="stable")
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    ids = rank[raw]
    results, start = [], 0
    for t, size in zip(arrays, out_sizes, strict=True):
        h, w = t.shape[1:]
        grid = ids[start : start + h * w].reshape(h, w)
        start += h * w
        results.append(
            ClusterResult(grid, _upsample_nearest(grid, (int(size[0]), int(size[1]))).astype(np.uint8))
        )
    return results


def kmeans_image(tokens: np.ndarray, k: int, out_size: tuple[int, int], seed: int = 0) -> ClusterResult:
    """K-means of one image's patch tokens [C, h, w], labels at out_size (H, W)."""
    return kmeans_images([tokens], k, [out_size], seed)[0]


def pca_rgb_images(
    tokens_list: Sequence[np.ndarray], out_sizes: Sequence[tuple[int, int]]
) -> list[np.ndarray]:
    """First 3 principal components as RGB, with one PCA and one colour scaling shared by all images."""
    arrays = _check_tokens(tokens_list, out_sizes)
    x = np.concatenate([_flat(t) for t in arrays])
    n = min(3, x.shape[0], x.shape[1])
    proj = np.zeros((x.shape[0], 3), dtype=np.float32)
    if n > 0 and x.shape[0] > 1:
        # svd_solver="full" is deterministic, and sklearn fixes the component signs.
        proj[:, :n] = PCA(n_components=n, svd_solver="full").fit_transform(x)
    # Clip at the 1st/99th percentile so a few outlier tokens do not wash out the rest of the image.
    lo, hi = np.percentile(proj, [1, 99], axis=0)
    scaled = np.clip((proj - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0).astype(np.float32)
    out, start = [], 0
    for t, (H, W) in zip(arrays, out_sizes, strict=True):
        h, w = t.shape[1:]
        grid = torch.from_numpy(scaled[start : start + h * w].T.reshape(3, h, w).copy())
        start += h * w
        up = upsample_rows(grid, (int(H), int(W)), slice(0, int(H)))  # bilinear, the one mapping
        out.append(np.rint(up.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    return out


def pca_rgb(tokens: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """[H, W, 3] uint8 PCA-RGB of one image's tokens [C, h, w], PCA fitted on this image alone."""
    return pca_rgb_images([tokens], [out_size])[0]
