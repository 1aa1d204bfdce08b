"""Pure pixel helpers: display/full-resolution label mapping, editor layer codec, overlays."""

from __future__ import annotations

import numpy as np
import pytest

from core.labels import IGNORE
from storage import ClassInfo
from webapp import render

CLASSES = [ClassInfo(1, "background", "#000000", 0), ClassInfo(5, "cat", "#800000", 1),
           ClassInfo(9, "dog", "#008000", 2)]


@pytest.mark.parametrize("full,disp", [((240, 320), (96, 128)), ((101, 77), (37, 29)), ((50, 50), (50, 50))])
def test_downscale_is_the_exact_inverse_of_upscale(full, disp):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 4, disp).astype(np.uint8)
    assert np.array_equal(render.downscale_labels(render.upscale_labels(small, full), disp), small)


def test_merge_edit_touches_only_changed_pixels():
    stored = np.full((100, 100), IGNORE, np.uint8)
    stored[0, 0] = 7  # a fine detail that the display copy cannot show
    before = render.downscale_labels(stored, (10, 10))
    after = before.copy()
    after[5, 5] = 2
    out = render.merge_edit(stored, before, after)
    assert out[0, 0] == 7 and (out[50:60, 50:60] == 2).all() and (out == 2).sum() == 100


def test_layer_codec_round_trip_and_nearest_colour():
    labels = np.full((6, 8), IGNORE, np.uint8)
    labels[1:3, 1:4] = 1
    labels[4, :] = 2
    rgba = render.labels_to_rgba(labels, render.palette(CLASSES))
    assert (rgba[..., 3][labels != IGNORE] == 153).all() and (rgba[..., 3][labels == IGNORE] == 0).all()
    assert np.array_equal(render.rgba_to_labels(rgba, CLASSES), labels)
    rgba[1, 1, :3] = (126, 2, 1)  # off by a rounding error: still the nearest class colour
    assert render.rgba_to_labels(rgba, CLASSES)[1, 1] == 1


def test_colours():
    assert render.normalise_colour("rgba(255, 0, 10, 1)") == "#ff000a"
    assert render.normalise_colour("#ABC") == "#aabbcc"
    with pytest.raises(ValueError):
        render.normalise_colour("blue-ish")
    assert render.text_colour("#000000") == "#ffffff" and render.text_colour("#ffff00") == "#000000"


def test_overlays_and_panels():
    rgb = np.full((4, 6, 3), 100, np.uint8)
    labels = np.full((4, 6), IGNORE, np.uint8)
    labels[0, 0], labels[0, 1] = 1, 2
    out = render.tint(rgb, labels, render.palette(CLASSES), 0.5, visible=np.array([True, True, False]))
    assert tuple(out[0, 0]) == (114, 50, 50) and tuple(out[0, 1]) == (100, 100, 100)
    assert render.heat_overlay(rgb, np.zeros((4, 6))).shape == (4, 6, 3)
    assert render.side_by_side([rgb, rgb], gap=2).shape == (4, 14, 3)
    assert render.fit_rgb(rgb, 60).shape == (40, 60, 3)
    assert render.draw_boxes(np.zeros((40, 40, 3), np.uint8), [(5, 5, 20, 20)]).max() > 0
    assert render.placeholder((50, 80), "computing…").shape == (50, 80, 3)
