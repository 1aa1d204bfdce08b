from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core.features import (
    FeatureConfig,
    FeatureExtractor,
    PatchFeatures,
    preprocess,
    resized_size_for,
    upsample_rows,
)
from core.imageio import ImageReadError, load_rgb


@pytest.mark.parametrize(
    ("size", "long_side", "expected"),
    [
        ((375, 500), 448, (336, 448)),
        ((500, 375), 448, (448, 336)),
        ((1, 1), 448, (448, 448)),
        ((10, 1000), 448, (14, 448)),
    ],
)
def test_resize_keeps_aspect_with_multiples_of_14(size, long_side, expected):
    out = resized_size_for(size, long_side)
    assert out == expected and out[0] % 14 == 0 and out[1] % 14 == 0


def test_preprocess_normalises_with_imagenet_stats():
    rgb = np.full((30, 40, 3), 255, np.uint8)
    x = preprocess(rgb, 56)
    assert x.shape == (3, 42, 56)
    assert torch.allclose(
        x[:, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    )


def test_extractor_returns_named_result_with_sizes(random_backbone):
    ex = FeatureExtractor(random_backbone, FeatureConfig(long_side=70, batch_size=2))
    imgs = [
        np.zeros((50, 100, 3), np.uint8),
        np.ones((100, 50, 3), np.uint8) * 128,
        np.zeros((50, 100, 3), np.uint8),
    ]
    done = []
    feats = ex.extract_many(imgs, progress=done.append)
    assert sum(done) == 3
    assert (
        feats[0].grid == (2, 5) and feats[0].resized_size == (28, 70) and feats[0].original_size == (50, 100)
    )
    assert feats[1].grid == (5, 2) and feats[1].dim == 384
    # Batched extraction equals one-at-a-time extraction.
    assert torch.allclose(feats[1].tokens, ex.extract(imgs[1]).tokens, atol=1e-5)


def _random_feats(c=5, h=3, w=4, H=23, W=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    return PatchFeatures(torch.randn(c, h, w, generator=g), (h * 14, w * 14), (H, W))


@pytest.mark.parametrize(
    ("h", "w", "H", "W"), [(3, 4, 23, 37), (4, 2, 50, 9), (1, 1, 5, 7), (5, 5, 5, 5), (6, 3, 4, 2)]
)
def test_sample_equals_torch_bilinear_upsampling(h, w, H, W):
    feats = _random_feats(h=h, w=w, H=H, W=W)
    full = F.interpolate(feats.tokens[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    ys, xs = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    got = feats.sample(ys.ravel(), xs.ravel())
    assert torch.allclose(got, full.reshape(feats.dim, -1).T, atol=1e-5)
    bands = torch.cat(
        [upsample_rows(feats.tokens, (H, W), slice(r, min(H, r + 3))) for r in range(0, H, 3)], dim=1
    )
    assert torch.allclose(bands, full, atol=1e-5)


def test_sample_out_of_range_raises():
    with pytest.raises(IndexError):
        _random_feats().sample(np.array([23]), np.array([0]))


def _jpeg_with_orientation(arr: np.ndarray, orientation: int) -> bytes:
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def test_load_rgb_applies_exif_orientation_and_modes():
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    rotated = load_rgb(_jpeg_with_orientation(arr, 6))  # 6 = rotate 90 degrees clockwise to display
    assert rotated.shape == (40, 20, 3)
    assert rotated[:20].mean() > 200 and rotated[20:].mean() < 50  # left half ends up on top
    buf = io.BytesIO()
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(buf, format="PNG")
    sixteen = load_rgb(buf.getvalue())
    assert sixteen.dtype == np.uint8 and sixteen.shape == (64, 64, 3) and sixteen.max() > 200
    buf = io.BytesIO()
    Image.new("RGBA", (5, 5), (0, 0, 0, 0)).save(buf, format="PNG")
    assert (load_rgb(buf.getvalue()) == 255).all()  # transparent composites on white


def test_load_rgb_rejects_garbage_with_the_name():
    with pytest.raises(ImageReadError, match="holiday.jpg"):
        load_rgb(b"this is text", name="holiday.jpg")
