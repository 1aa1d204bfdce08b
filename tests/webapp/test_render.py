"""Pure pixel helpers: display-size label maps, colours, overlays and panels."""

from __future__ import annotations

import numpy as np
import pytest

from core.labels import IGNORE
from storage import ClassInfo
from webapp import render

CLASSES = [
    ClassInfo(1, "background", "#000000", 0),
    ClassInfo(5, "cat", "#800000", 1),
    ClassInfo(9, "dog", "#008000", 2),
]


def test_downscale_shows_a_full_resolution_row_and_column_per_display_pixel():
    labels = np.arange(100 * 80, dtype=np.int64).reshape(100, 80) % 251
    small = render.downscale_labels(labels.astype(np.uint8), (10, 8))
    assert small.shape == (10, 8) and small[0, 0] == labels[0, 0] and small[1, 1] == labels[10, 10]
    assert np.array_equal(render.downscale_labels(labels.astype(np.uint8), (100, 80)), labels)


def test_colours():
    assert render.normalise_colour("rgba(255, 0, 10, 1)") == "#ff000a"
    assert render.normalise_colour("#ABC") == "#aabbcc"
    with pytest.raises(ValueError):
        render.normalise_colour("blue-ish")


def test_overlays_and_panels():
    rgb = np.full((4, 6, 3), 100, np.uint8)
    labels = np.full((4, 6), IGNORE, np.uint8)
    labels[0, 0], labels[0, 1] = 1, 2
    out = render.tint(rgb, labels, render.palette(CLASSES), 0.5, visible=np.array([True, True, False]))
    assert tuple(out[0, 0]) == (114, 50, 50) and tuple(out[0, 1]) == (100, 100, 100)
    assert render.heat_overlay(rgb, np.zeros((4, 6))).shape == (4, 6, 3)
    assert render.side_by_side([rgb, rgb], gap=2, pane_aspect=4).shape == (4, 14, 3)  # a wide pane: a row
    assert render.side_by_side([rgb, rgb], gap=2, pane_aspect=0.5).shape == (10, 6, 3)  # a tall one: a column
    square = np.zeros((10, 10, 3), np.uint8)
    square[:] = 7
    grid = render.side_by_side([square, square + 1, square + 2, square + 3], gap=2, pane_aspect=1.07)
    assert grid.shape == (22, 22, 3)  # four square panels in a square pane: 2 x 2, row by row
    assert grid[0, 0, 0] == 7 and grid[0, 12, 0] == 8 and grid[12, 0, 0] == 9 and grid[12, 12, 0] == 10
    three = render.side_by_side([square] * 3, gap=2, pane_aspect=1.07)
    assert three.shape == (22, 22, 3) and three[12, 12, 0] == 255  # the free cell stays background
    assert render.fit_rgb(rgb, 60).shape == (40, 60, 3)
    assert render.draw_boxes(np.zeros((40, 40, 3), np.uint8), [(5, 5, 20, 20)]).max() > 0
    assert render.placeholder((50, 80), "computing…").shape == (50, 80, 3)
