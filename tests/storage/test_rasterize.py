"""Rasterising: annotations -> label map, checked pixel by pixel on tiny images."""

from __future__ import annotations

import numpy as np
import pytest

from storage.rasterize import (
    Event,
    Labels,
    disk,
    fold,
    paint_on_top,
    render_layers,
    render_scribble,
    stroke_mask,
)

N = 255  # unlabelled


def _disk_mask(shape, x, y, r):  # type: ignore[no-untyped-def]
    out = np.zeros(shape, dtype=int)
    rows, cols, m = disk(shape, x, y, r)
    out[rows, cols][m] = 1
    return out


def test_disk_radius_one_is_a_plus() -> None:
    assert _disk_mask((5, 5), 2, 2, 1).tolist() == [
        [0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0],
    ]


def test_disk_radius_zero_and_fractional_centre_cover_the_nearest_pixel() -> None:
    assert _disk_mask((3, 3), 0, 0, 0).tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert _disk_mask((3, 3), 1.4, 1.6, 0.2).tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0]]


def test_disk_is_clipped_at_the_border() -> None:
    assert _disk_mask((3, 4), 3, 0, 1.5).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]]


def test_disk_radius_sqrt2_includes_diagonals() -> None:
    assert _disk_mask((3, 3), 1, 1, 2**0.5).sum() == 9


def test_fold_undo_redo_and_new_edit_clears_redo() -> None:
    a, b, c = Event(1, 1, "point"), Event(2, 2, "point"), Event(4, 4, "point")
    me = ("", None)
    f = fold([a, b, Event(3, 3, "undo")])
    assert [e.id for e in f.applied] == [1] and [e.id for e in f.redo[me]] == [2]
    f = fold([a, b, Event(3, 3, "undo"), Event(5, 5, "redo")])
    assert [e.id for e in f.applied] == [1, 2] and not f.redo
    f = fold([a, b, Event(3, 3, "undo"), c, Event(5, 5, "redo")])  # redo after a new edit: nothing to redo
    assert [e.id for e in f.applied] == [1, 4] and not f.redo
    f = fold([Event(1, 1, "undo"), Event(2, 2, "redo")])  # undo/redo with empty stacks are no-ops
    assert f.applied == () and f.redo == {}


def test_fold_point_remove_and_its_undo() -> None:
    p = Event(1, 1, "point", class_id=7, x=0, y=0, radius=0)
    rm = Event(2, 2, "point_remove", target_id=1)
    assert fold([p, rm]).points == []
    assert [e.id for e in fold([p, rm, Event(3, 3, "undo")]).points] == [1]


def _render(shape, events, rasters):  # type: ignore[no-untyped-def]
    """(label map, scribble layer) as class ids, -1 = unlabelled."""
    labels, scribbles = render_layers(shape, fold(events), lambda ev: rasters[ev.id])
    assert labels.codes.dtype == np.uint8 and labels.table == scribbles.table
    return labels.ids().tolist(), scribbles.ids().tolist()


def test_layer_order_masks_then_scribbles_then_points() -> None:
    mask = np.array([[0, 0, 0]], np.uint8)  # class id 10 everywhere
    scr = np.array([[N, 1, 1]], np.uint8)  # class id 20 on the right two pixels
    events = [
        Event(1, 1, "point", class_id=30, x=2, y=0, radius=0),  # earliest, but points are on top
        Event(2, 2, "scribble", class_map={"1": 20}),
        Event(3, 3, "mask", class_map={"0": 10}),  # latest, but masks are at the bottom
    ]
    ids, _ = _render((1, 3), events, {2: scr, 3: mask})
    assert ids == [[10, 20, 30]]


def test_later_masks_over_earlier_and_unmapped_values_are_transparent() -> None:
    m1 = np.array([[0, 0, 0, N]], np.uint8)
    m2 = np.array([[N, 1, 2, N]], np.uint8)  # value 2 not in its class map -> draws nothing
    events = [Event(1, 1, "mask", class_map={"0": 10}), Event(2, 2, "mask", class_map={"1": 11})]
    ids, _ = _render((1, 4), events, {1: m1, 2: m2})
    assert ids == [[10, 11, 10, -1]]


def test_only_the_latest_scribble_layer_counts() -> None:
    s1 = np.array([[0, 0]], np.uint8)
    s2 = np.array([[N, 0]], np.uint8)
    events = [Event(1, 1, "scribble", class_map={"0": 5}), Event(2, 2, "scribble", class_map={"0": 6})]
    ids, scr = _render((1, 2), events, {1: s1, 2: s2})
    assert ids == [[-1, 6]] and scr == [[-1, 6]]
    ids, scr = _render((1, 2), events + [Event(3, 3, "undo")], {1: s1, 2: s2})
    assert ids == [[5, 5]] and scr == [[5, 5]]


def test_erase_clears_earlier_labels_of_every_layer_and_later_edits_draw_again() -> None:
    mask = np.zeros((2, 3), np.uint8)
    scr = np.array([[1, 1, 1], [N, N, N]], np.uint8)
    erase = np.array([[1, 1, 0], [1, 0, 0]], np.uint8)
    events = [
        Event(1, 1, "mask", class_map={"0": 10}),
        Event(2, 2, "scribble", class_map={"1": 20}),
        Event(3, 3, "point", class_id=30, x=0, y=1, radius=0),
        Event(4, 4, "erase"),
        Event(5, 5, "point", class_id=31, x=0, y=0, radius=0),
    ]
    ids, scribbles = _render((2, 3), events, {1: mask, 2: scr, 4: erase})
    assert ids == [[31, -1, 20], [-1, 10, 10]]
    assert scribbles == [[-1, -1, 20], [-1, -1, -1]]


def test_scribble_saved_after_an_erase_is_not_erased() -> None:
    scr = np.array([[1, 1]], np.uint8)
    erase = np.array([[1, 1]], np.uint8)
    events = [Event(1, 1, "erase"), Event(2, 2, "scribble", class_map={"1": 20})]
    ids, _ = _render((1, 2), events, {1: erase, 2: scr})
    assert ids == [[20, 20]]


def test_later_point_over_earlier_point() -> None:
    events = [
        Event(1, 1, "point", class_id=1, x=1, y=0, radius=1),
        Event(2, 2, "point", class_id=2, x=2, y=0, radius=0),
    ]
    ids, _ = _render((1, 4), events, {})
    assert ids == [[1, 1, 2, -1]]


# ------------------------------------------------------------------ through the repository
def test_repository_label_map_pixel_by_pixel(repo, project, image) -> None:  # type: ignore[no-untyped-def]
    ids = {c.name: c for c in repo.list_classes(project.id)}
    h, w = image.height, image.width
    mask = np.full((h, w), N, np.uint8)
    mask[:, :2] = 0  # background on the two left columns
    repo.add_mask(image.id, mask, source="test")
    scr = np.full((h, w), N, np.uint8)
    scr[0, :] = 1  # cat on the top row
    repo.save_scribbles(image.id, scr)
    repo.add_point(image.id, ids["dog"].id, x=4, y=3, radius=1)
    expected = np.full((h, w), N, np.uint8)
    expected[:, :2] = 0
    expected[0, :] = 1
    expected[3, 3:6] = 2
    expected[2, 4] = expected[4, 4] = 2
    np.testing.assert_array_equal(repo.label_map(image.id), expected)

    region = np.zeros((h, w), bool)
    region[0, 0:3] = True
    region[3, 4] = True
    repo.erase(image.id, region)
    expected[0, 0:3] = N  # mask (cols 0-1) and scribble (col 2) pixels cleared
    expected[3, 4] = N
    np.testing.assert_array_equal(repo.label_map(image.id), expected)
    lm = repo.label_map(image.id)
    assert lm.dtype == np.uint8 and lm.shape == (h, w)
    counts = repo.labelled_pixel_counts(image_id=image.id)
    assert counts == {k: int((expected == k).sum()) for k in (0, 1, 2)}


@pytest.mark.parametrize("radius", [0, 1, 2.5])
def test_repository_point_matches_disk(repo, project, image, radius) -> None:  # type: ignore[no-untyped-def]
    dog = {c.name: c for c in repo.list_classes(project.id)}["dog"]
    repo.add_point(image.id, dog.id, x=2, y=2, radius=radius)
    expected = np.where(_disk_mask((image.height, image.width), 2, 2, radius) == 1, 2, N)
    np.testing.assert_array_equal(repo.label_map(image.id), expected)


def test_render_scribble_matches_the_full_render_and_counts() -> None:
    scr = np.array([[1, 1, N], [N, 0, 0]], np.uint8)
    erase = np.array([[1, 0, 0], [0, 0, 0]], np.uint8)
    events = [
        Event(1, 1, "scribble", class_map={"0": 7, "1": 8}),
        Event(2, 2, "erase"),
        Event(3, 3, "point", class_id=9, x=2, y=0, radius=0),
    ]
    folded = fold(events)
    load = {1: scr, 2: erase}.__getitem__
    layer = render_scribble((2, 3), folded, lambda ev: load(ev.id))
    labels, full_layer = render_layers((2, 3), folded, lambda ev: load(ev.id))
    assert layer.ids().tolist() == full_layer.ids().tolist() == [[-1, 8, -1], [-1, 7, 7]]
    assert labels.ids().tolist() == [[-1, 8, 9], [-1, 7, 7]]
    assert labels.counts() == {7: 2, 8: 1, 9: 1}
    assert labels.to_indices({7: 0, 9: 4}).tolist() == [[N, N, 4], [N, 0, 0]]  # class 8 deleted -> 255


def test_paint_point_extends_the_code_table() -> None:
    base = Labels(np.full((2, 2), N, np.uint8), (5,))
    out = paint_on_top(base, Event(1, 1, "point", class_id=6, x=1, y=1, radius=0), fold([]))
    assert out.table == (5, 6) and out.ids().tolist() == [[-1, -1], [-1, 6]]
    assert base.ids().tolist() == [[-1, -1], [-1, -1]]  # the cached map is not modified


def test_stroke_mask_is_the_pixels_within_radius_of_the_polyline() -> None:
    rows, cols, m = stroke_mask((20, 30), [(2.0, 5.0), (12.0, 5.0), (12.0, 15.0)], 1.5)
    full = np.zeros((20, 30), bool)
    full[rows, cols] = m
    ii, jj = np.mgrid[0:20, 0:30]

    def seg(ax, ay, bx, by):
        t = np.clip(((jj - ax) * (bx - ax) + (ii - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2), 0, 1)
        return np.hypot(jj - ax - t * (bx - ax), ii - ay - t * (by - ay))

    expected = np.minimum(seg(2, 5, 12, 5), seg(12, 5, 12, 15)) <= 1.5
    assert np.array_equal(full, expected)
    # radius 0 still marks the pixel under each vertex; off-image parts are clipped
    rows, cols, m = stroke_mask((4, 4), [(0.2, 0.2), (-3.0, 9.0)], 0.0)
    full = np.zeros((4, 4), bool)
    full[rows, cols] = m
    assert full[0, 0] and full.sum() >= 1
    rows, cols, m = stroke_mask((4, 4), [(40.0, 40.0)], 2.0)
    assert m.size == 0


def _ev(i, kind, **kw):
    if "path" in kw:
        kw["path"] = tuple(tuple(p) for p in kw["path"])
    return Event(i, i, kind, **kw)


def test_strokes_draw_in_order_over_the_whole_layer_and_under_points() -> None:
    layer = np.full((10, 10), N, np.uint8)
    layer[:, :5] = 0
    events = [
        _ev(1, "stroke", class_id=7, radius=1.0, path=[(1, 1), (8, 1)]),  # replaced by the layer after it
        _ev(2, "scribble", class_map={"0": 8}),
        _ev(3, "point", class_id=9, x=5, y=5, radius=1.0),
        _ev(4, "stroke", class_id=7, radius=1.0, path=[(0, 5), (9, 5)]),
        _ev(5, "erase", radius=0.0, path=[(2, 5)]),
    ]
    rasters = {2: layer}
    labels, scr = render_layers((10, 10), fold(events), lambda e: rasters[e.id])
    ids = labels.ids()
    assert ids[1, 8] == -1  # the first stroke lies under the whole-layer raster, which replaced it
    assert ids[5, 5] == 9  # points stay on top of strokes
    assert ids[5, 8] == 7 and ids[0, 0] == 8
    assert ids[5, 2] == -1  # the erase stroke clears what was drawn before it
    assert np.array_equal(render_scribble((10, 10), fold(events), lambda e: rasters[e.id]).ids(), scr.ids())


def test_incremental_update_equals_a_full_render() -> None:
    rng = np.random.default_rng(0)
    shape = (40, 50)
    for trial in range(30):
        events = []
        labels = render_layers(shape, fold([]), lambda e: None)[0]
        for i in range(1, 25):
            kind = rng.choice(["stroke", "stroke", "point", "erase"])
            path = [
                (float(rng.uniform(-2, 52)), float(rng.uniform(-2, 42))) for _ in range(rng.integers(1, 5))
            ]
            if kind == "point":
                ev = _ev(
                    i,
                    "point",
                    class_id=int(rng.integers(1, 4)),
                    x=path[0][0] % 49,
                    y=path[0][1] % 39,
                    radius=float(rng.uniform(0, 6)),
                )
            else:
                ev = _ev(
                    i,
                    kind,
                    class_id=int(rng.integers(1, 4)) if kind == "stroke" else None,
                    radius=float(rng.uniform(0, 5)),
                    path=path,
                )
            quick = paint_on_top(labels, ev, fold(events))
            events.append(ev)
            full = render_layers(shape, fold(events), lambda e: None)[0]
            if quick is not None:
                assert np.array_equal(quick.ids(), full.ids()), (trial, i, kind)
            labels = full


def test_noop_rows_do_not_touch_the_history() -> None:
    events = [
        _ev(1, "point", class_id=1, x=1, y=1, radius=0),
        _ev(2, "undo", target_id=1),
        _ev(3, "noop"),
        _ev(4, "redo", target_id=1),
    ]
    assert [e.id for e in fold(events).applied] == [1]
