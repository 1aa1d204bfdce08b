from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core.backbones import get_spec
from core.errors import InputError
from core.features import (
    FeatureConfig,
    FeatureExtractor,
    PatchFeatures,
    preprocess,
    resized_size_for,
    tile_starts,
    upsample_rows,
)
from core.imageio import ImageReadError, load_rgb

DINOV2 = get_spec("dinov2_vits14").input


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
    out = resized_size_for(size, long_side, 14)
    assert out == expected and out[0] % 14 == 0 and out[1] % 14 == 0


def test_preprocess_normalises_with_imagenet_stats():
    rgb = np.full((30, 40, 3), 255, np.uint8)
    x = preprocess(rgb, 56, DINOV2)
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


# ------------------------------------------------------------------ resolution by scale, tiles
def test_resolution_is_read_in_one_place_and_bad_ones_say_what_to_write():
    assert FeatureConfig.parse("auto").scale == "auto" and FeatureConfig.parse(" 16px ").scale == 16.0
    assert FeatureConfig.parse("448") == FeatureConfig(long_side=448)
    for cfg in (FeatureConfig.parse("auto"), FeatureConfig.parse("12.5px"), FeatureConfig.parse("518")):
        assert FeatureConfig.parse(cfg.resolution) == cfg  # what head.json and the page show reads back
    for bad in ("big", "-3px", "0px", "7", "auto2"):
        with pytest.raises(InputError, match="resolution|scale"):
            FeatureConfig.parse(bad)
    with pytest.raises(InputError, match="max tokens"):
        FeatureConfig(scale="auto", max_tokens=10**9)


def test_auto_scale_keeps_small_images_as_before_and_gives_big_ones_tokens_within_the_budget():
    auto = FeatureConfig(scale="auto", max_tokens=4096)
    assert (
        auto.token_grid((240, 320), 14) == FeatureConfig().token_grid((240, 320), 14) == (24, 32)
    )  # as at 448 px
    assert auto.token_grid((768, 1024), 14) == (55, 73)  # near one token per 14 image pixels, within 4096
    for size in ((3024, 4032), (9000, 12000), (100, 40000)):
        h, w = auto.token_grid(size, 14)
        assert h * w <= 4096 * 1.05 and abs(h / w - size[0] / size[1]) < 0.05 + 1 / min(h, w)
    assert FeatureConfig(scale=20.0).token_grid((400, 600), 14) == (20, 30)
    assert FeatureConfig(scale=20.0, max_tokens=150).token_grid((400, 600), 14) == (10, 15)  # the cap holds
    assert FeatureConfig().token_grid((3024, 4032), 14) == (24, 32)  # a fixed long side: one token per 126 px


def test_tiles_cover_the_grid_and_overlap_by_at_least_the_overlap():
    for n, tile, overlap in ((74, 37, 8), (38, 37, 8), (37, 37, 8), (500, 37, 8), (9, 4, 1)):
        starts = tile_starts(n, tile, overlap)
        assert starts[0] == 0 and starts[-1] + min(tile, n) == n
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))


def test_a_big_grid_is_extracted_in_blended_tiles_exactly_where_one_tile_covers(random_backbone):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (7 * 14, 10 * 14, 3), dtype=np.uint8)
    cfg = FeatureConfig(scale=14.0, tile=4, overlap=1, batch_size=3)
    ex = FeatureExtractor(random_backbone, cfg)
    feats = ex.extract(rgb)
    assert feats.grid == (7, 10) and feats.resized_size == (98, 140) and feats.original_size == (98, 140)
    # a token only the top-left tile covers equals that tile's own forward; one under two tiles lies between
    x = preprocess(rgb, cfg, DINOV2)
    first = random_backbone.patch_tokens(x[None, :, :56, :56])[0]
    torch.testing.assert_close(feats.tokens[:, :2, :2], first[:, :2, :2], atol=1e-4, rtol=1e-4)
    # a grid that fits one tile is extracted whole, as before (no tiling, same tokens)
    small = rgb[:42, :56]
    torch.testing.assert_close(
        ex.extract(small).tokens,
        random_backbone.patch_tokens(preprocess(small, cfg, DINOV2)[None])[0],
        atol=1e-5,
        rtol=0,
    )
    assert "scale=14px" in ex.identity and "tile=4/1" in ex.identity
    assert FeatureExtractor(random_backbone, FeatureConfig(448)).identity.count("long_side=448") == 1


def test_a_shape_straddling_a_tile_seam_is_segmented_as_well_as_one_away_from_seams(random_backbone):
    from core.predict import predict
    from core.train import LabelledImage, train_head

    cfg = FeatureConfig(scale=14.0, tile=8, overlap=2)
    assert tile_starts(24, 8, 2) == [0, 5, 11, 16]  # overlaps at tokens 5-7, 11-12 and 16-18
    rng = np.random.default_rng(1)
    rgb = np.clip(rng.normal(120, 12, (12 * 14, 24 * 14, 3)), 0, 255).astype(np.uint8)
    squares = {"train": (2, 20), "away": (7, 1), "seam": (7, 10)}  # token (row, column) of the 3x3 corner
    truth = {}
    for name, (r, c) in squares.items():
        rgb[r * 14 : (r + 3) * 14, c * 14 : (c + 3) * 14] = (200, 40, 40)
        truth[name] = np.zeros(rgb.shape[:2], bool)
        truth[name][r * 14 : (r + 3) * 14, c * 14 : (c + 3) * 14] = True
    labels = np.full(rgb.shape[:2], 255, np.uint8)
    labels[2 * 14 + 10 : 5 * 14 - 10, 20 * 14 + 10 : 23 * 14 - 10] = 1  # inside the training square
    labels[0:6, :] = labels[-6:, :] = 0  # background along the top and bottom edges
    feats = FeatureExtractor(random_backbone, cfg).extract(rgb)
    head = train_head([LabelledImage(feats, labels)], 2).head
    pred = predict(head, feats).labels == 1

    def iou(mask: np.ndarray) -> float:
        window = np.zeros_like(mask)
        ys, xs = np.nonzero(mask)
        window[ys.min() - 14 : ys.max() + 15, xs.min() - 14 : xs.max() + 15] = True  # the square and a margin
        return float((pred & mask).sum() / ((pred | mask) & window).sum())

    away, seam = iou(truth["away"]), iou(truth["seam"])
    assert away > 0.6 and seam > 0.6 and seam >= away - 0.1, (away, seam)
