"""The boundary rule: box filters, the guided filter band by band, and boundaries that move to the image's
edges where the grid cannot."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.edges import EdgeConfig, Guided, box, follow, guided
from core.features import FeatureConfig, FeatureExtractor
from core.predict import Predictor
from core.train import LabelledImage, train_head


def test_box_is_the_mean_over_the_window_clipped_to_the_image():
    x = torch.rand(2, 9, 13)
    r = 2
    got = box(x, r)
    for i in range(9):
        for j in range(13):
            win = x[:, max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1]
            torch.testing.assert_close(got[:, i, j], win.mean((1, 2)), atol=1e-6, rtol=0)


def test_bands_equal_the_whole_image_and_the_result_is_a_distribution():
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    probs = torch.rand(3, 40, 23, generator=g).softmax(0)
    guide = rng.integers(0, 256, (40, 23, 3), dtype=np.uint8)
    whole = guided(probs, guide, 3, 1e-3)
    assert (whole >= 0).all() and torch.allclose(whole.sum(0), torch.ones(40, 23), atol=1e-5)
    g3 = Guided(lambda rs: probs[:, rs], guide, 3, 1e-3, band_rows=5)
    bands = torch.cat([g3.rows(slice(r, min(40, r + 7))) for r in range(0, 40, 7)], 1)
    torch.testing.assert_close(bands, whole, atol=1e-5, rtol=0)
    # a radius large enough for the coarse grid (the fast form): bands still equal the whole image
    probs = torch.rand(3, 203, 57, generator=g).softmax(0)
    guide = rng.integers(0, 256, (203, 57, 3), dtype=np.uint8)
    whole = guided(probs, guide, 13, 1e-3)
    g13 = Guided(lambda rs: probs[:, rs], guide, 13, 1e-3, band_rows=20)  # (coarse cells of 3 rows)
    parts = [g13.rows(slice(r, min(203, r + 50))) for r in range(0, 203, 50)]
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-4, rtol=0)


def test_the_rule_is_a_wide_pass_then_a_fine_one_and_bands_equal_the_whole_image():
    g = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(1)
    probs = torch.rand(4, 150, 90, generator=g).softmax(0)
    rgb = rng.integers(0, 256, (150, 90, 3), dtype=np.uint8)
    grid = (5, 3)  # 30 px a token: a first radius of 60 px, a fine one of 8 px on a grid of 8 px
    cfg = EdgeConfig()
    r = cfg.radius((150, 90), grid)
    assert r == 60
    first = guided(probs, rgb, r, cfg.eps)
    rule = follow(lambda rs: probs[:, rs], rgb, grid, cfg, band_rows=16)
    whole = rule.rows(slice(0, 150))
    torch.testing.assert_close(whole, guided(first, rgb, 8, cfg.eps, sub=8), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        torch.cat([rule.rows(slice(y, min(150, y + 40))) for y in range(0, 150, 40)], 1),
        whole,
        atol=1e-5,
        rtol=0,
    )
    one = follow(lambda rs: probs[:, rs], rgb, grid, EdgeConfig(fine=0))
    torch.testing.assert_close(one.rows(slice(0, 150)), first, atol=1e-5, rtol=0)
    # small tokens (10 px: a first radius of 20 px, a fine one of 2 px, under fine_min_radius): one pass
    small = follow(lambda rs: probs[:, rs], rgb, (15, 9), cfg).rows(slice(0, 150))
    torch.testing.assert_close(small, guided(probs, rgb, 20, cfg.eps), atol=1e-5, rtol=0)
    assert not torch.allclose(whole, first, atol=1e-3)


def test_a_boundary_inside_a_token_moves_to_the_image_edge():
    # a 4 x 8 grid over 64 x 128 pixels (16 px a token); the scores change class between tokens 3 and 4
    # (bilinear boundary at x = 64) while the image's edge is inside token 3 or 4
    logits = torch.zeros(2, 4, 8)
    logits[0, :, :4], logits[1, :, 4:] = 3.0, 3.0
    probs = F.interpolate(logits[None], size=(64, 128), mode="bilinear", align_corners=False)[0].softmax(0)
    assert int((probs.argmax(0)[0] == 0).sum()) == 64
    cfg = EdgeConfig()
    for edge in (57, 70):
        rgb = np.full((64, 128, 3), 40, np.uint8)
        rgb[:, edge:] = 200
        refined = guided(probs, rgb, cfg.radius((64, 128), (4, 8)), cfg.eps)
        assert int((refined.argmax(0)[0] == 0).sum()) == edge
    # an edge between two colours of the same brightness (luminance alone cannot see it)
    rgb = np.zeros((64, 128, 3), np.uint8)
    rgb[:, :70] = (200, 60, 60)
    rgb[:, 70:] = (60, 120, 118)
    assert abs(float(rgb[0, 0] @ [0.299, 0.587, 0.114]) - float(rgb[0, 127] @ [0.299, 0.587, 0.114])) < 1
    refined = guided(probs, rgb, cfg.radius((64, 128), (4, 8)), cfg.eps)
    assert int((refined.argmax(0)[0] == 0).sum()) == 70


def test_predictions_follow_the_image_given_and_not_without_it(random_backbone):
    # red left of x = 75, blue right: not on a token boundary (the 14-px tokens split at 70 and 84)
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal(0, 4, (112, 168, 3)) + 0, 0, 255)
    rgb[:, :75] += (200, 40, 40)
    rgb[:, 75:] += (40, 70, 200)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    feats = FeatureExtractor(random_backbone, FeatureConfig(scale=28.0)).extract(rgb)  # 28 px a token
    labels = np.full(rgb.shape[:2], 255, np.uint8)
    labels[:, 10:40], labels[:, 120:160] = 0, 1
    head = train_head([LabelledImage(feats, labels)], 2).head
    truth = np.zeros(rgb.shape[:2], np.uint8)
    truth[:, 75:] = 1

    def boundary_error(p: Predictor) -> float:
        return float((p.predict(head).labels != truth).mean())

    edges, plain = Predictor(), Predictor(edges=None)
    edges.set_features(feats, rgb)
    plain.set_features(feats, rgb)
    assert boundary_error(edges) < boundary_error(plain) / 2, (boundary_error(edges), boundary_error(plain))
    bare = Predictor()
    bare.set_features(feats)  # no image: the bilinear rule
    assert (bare.predict(head).labels == plain.predict(head).labels).all()
    small = edges.predict(head, (56, 84))  # a display size: the same rule on fewer pixels
    assert (
        small.labels.shape == (56, 84)
        and (small.labels[:, :36] == 0).all()
        and (small.labels[:, 40:] == 1).all()
    )
