"""The simulated annotator: strokes stay inside one ground-truth region, sessions are reproducible, and each
strategy's first choices follow its rule on hand-made examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from core import active
from core.features import PatchFeatures
from core.head import LinearHead
from core.labels import IGNORE
from core.train import TrainingCache
from experiments.simulate import (
    Annotator,
    Point,
    Sample,
    SimConfig,
    SimulationError,
    _deepest,
    _Image,
    _segment_in,
    score,
    scribble,
    simulate,
    strokes_to,
)


def _features(grid_classes: np.ndarray, size: int, ambiguous: np.ndarray | None = None) -> PatchFeatures:
    """Tokens that are one-hot class codes on the patch grid (a perfectly separable toy); `ambiguous`
    patches get the mean of all codes, so a head is unsure there."""
    k = 3
    h, w = grid_classes.shape
    tokens = torch.zeros(k, h, w)
    tokens[
        torch.from_numpy(grid_classes.astype(np.int64)), torch.arange(h)[:, None], torch.arange(w)[None, :]
    ] = 1
    if ambiguous is not None:
        tokens[:, torch.from_numpy(ambiguous)] = 1.0 / k
    return PatchFeatures(tokens=tokens, resized_size=(h * 14, w * 14), original_size=(size, size))


def _scene(split_at: int, size: int = 56, grid: int = 4) -> Sample:
    """Left: class 0, right of `split_at` columns of patches: class 1; a class-2 block bottom right."""
    cells = np.zeros((grid, grid), np.uint8)
    cells[:, split_at:] = 1
    cells[grid - 1, grid - 1] = 2
    gt = np.kron(cells, np.ones((size // grid, size // grid), np.uint8))
    return Sample(_features(cells, size), gt)


def test_a_scribble_never_crosses_a_ground_truth_boundary():
    rng = np.random.default_rng(0)
    gt = np.zeros((60, 80), np.uint8)
    gt[10:50, 20:40] = 1
    gt[:, 60:] = 1  # a second class-1 region: a stroke in one must not jump to the other
    gt[30:35, 0:80] = 2
    comps = {c: ndimage.label(gt == c, structure=np.ones((3, 3)))[0] for c in range(3)}
    for _ in range(200):
        start = (int(rng.integers(60)), int(rng.integers(80)))
        mask = scribble(gt, start, int(rng.integers(1, 80)), int(rng.integers(1, 6)), rng)
        assert mask.any()
        c = gt[start]
        region = comps[c] == comps[c][start]
        assert not (mask & ~region).any()


def test_sessions_are_reproducible_and_labels_are_the_truth():
    train = [_scene(1), _scene(2), _scene(3)]
    val = [_scene(2)]
    config = SimConfig(budget=8, stroke_px=10, seed=3)
    a = Annotator(train, val, 3, config)
    for strategy in ("random", "uncertainty", "error"):
        first, second = a.run(strategy), Annotator(train, val, 3, config).run(strategy)
        assert first == second and len(first) == 8
        assert [p.strokes for p in first] == list(range(1, 9))
        assert all(
            later.labelled_px >= earlier.labelled_px for earlier, later in zip(first, first[1:], strict=False)
        )
    assert a.run("random") != Annotator(train, val, 3, SimConfig(budget=8, stroke_px=10, seed=4)).run(
        "random"
    )
    with pytest.raises(SimulationError, match="unknown strategy"):
        a.run("magic")


def test_random_is_stratified_by_class():
    train = [_scene(1), _scene(2), _scene(3)]
    a = Annotator(train, [_scene(2)], 3, SimConfig(budget=3, seed=0))
    images = [_Image(s, np.full(s.gt.shape, IGNORE, np.uint8)) for s in train]
    order: list[int] = []
    picked = []
    rng = np.random.default_rng(0)
    for _ in range(3):
        i, (y, x) = a._random_start(images, rng, order)
        picked.append(int(train[i].gt[y, x]))
    assert sorted(picked) == [0, 1, 2]  # one stroke per class before any class gets a second


def test_uncertainty_and_error_pick_what_their_rules_say():
    confident = _scene(2)
    unsure_cells = np.zeros((4, 4), bool)
    unsure_cells[0:2, 0:2] = True  # a block of ambiguous tokens, top left of image 1
    cells = np.zeros((4, 4), np.uint8)
    cells[:, 2:] = 1
    cells[3, 3] = 2
    unsure = Sample(_features(cells, 56, unsure_cells), confident.gt)
    head = LinearHead(3, 3)
    with torch.no_grad():
        head.conv.weight.copy_(10 * torch.eye(3).view(3, 3, 1, 1))  # predicts the token's code
    a = Annotator([confident, unsure], [confident], 3)
    images = [_Image(s, np.full(s.gt.shape, IGNORE, np.uint8)) for s in (confident, unsure)]
    i, (y, x) = a._uncertain_start(images, head)
    assert i == 1 and y < 28 and x < 28  # inside the ambiguous block
    images[1].labels[:28, :28] = 0  # once labelled there, that block needs nothing: the rule moves on
    assert active.label_need(head, unsure.features, images[1].labels)[:2, :2].max() == 0

    # error: the head calls everything class 0; image 1's class-1 region is the largest error.
    zero = LinearHead(3, 3)
    with torch.no_grad():
        zero.conv.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    wide = _scene(1)  # class 1 covers 3 of 4 patch columns here
    a = Annotator([_scene(3), wide], [wide], 3)
    images = [_Image(s, np.full(s.gt.shape, IGNORE, np.uint8)) for s in a.train]
    i, (y, x) = a._largest_error(images, zero)
    assert i == 1 and wide.gt[y, x] == 1 and 14 <= x < 56


def test_strokes_start_in_the_middle_of_what_they_label():
    """random: the deepest unlabelled point of the segment under its random pixel; uncertainty: of the
    unlabelled segment in the suggested box that holds most of the need."""
    gt = np.zeros((40, 60), np.uint8)
    gt[:, 30:] = 1
    im = _Image(Sample(_features(np.zeros((2, 3), np.uint8), 40), gt), np.full(gt.shape, IGNORE, np.uint8))
    y, x = _deepest(im, 0, 0)
    assert min(y + 1, 40 - y, x + 1, 30 - x) == 15  # as far from the left half's edges as can be
    im.labels[:, :20] = 0  # its left part labelled: the middle of what is still unlabelled
    y, x = _deepest(im, 0, 25)
    assert x in (24, 25) and gt[y, x] == 0  # mid-way across the unlabelled 10-px strip
    assert _deepest(im, 5, 5) == (5, 5)  # a labelled pixel: where it is

    need = np.zeros((2, 3), np.float32)
    need[:, 2] = 1.0  # the right third of the image (class 1) is where the need is
    im.labels[:] = IGNORE
    y, x = _segment_in(im, (10, 0, 60, 40), need)  # a box over both classes
    assert gt[y, x] == 1 and min(y + 1, 40 - y, x - 29, 60 - x) == 15  # the middle of the class-1 part
    im.labels[:, 30:] = 1
    y, x = _segment_in(im, (10, 0, 60, 40), need)  # class 1 labelled: the unlabelled class-0 part
    assert gt[y, x] == 0 and x in (19, 20)  # mid-way across the box's class-0 part (columns 10 to 29)
    im.labels[:] = 0
    assert _segment_in(im, (10, 0, 60, 40), need) is None  # nothing left to label in the box


def test_sessions_can_stop_at_a_target_with_the_same_counts():
    train = [_scene(1), _scene(2), _scene(3)]
    config = SimConfig(budget=10, stroke_px=10, seed=1)
    whole = simulate(train, [_scene(2)], 3, ["random", "uncertainty"], config)
    short = simulate(train, [_scene(2)], 3, ["random", "uncertainty"], config, whole_curves=False)
    target = 0.95 * whole["full_label_miou"]
    for name, run in whole["strategies"].items():
        cut = short["strategies"][name]
        assert cut["strokes_to_95"] == run["strokes_to_95"] and cut["strokes_to_90"] == run["strokes_to_90"]
        assert cut["curve"] == run["curve"][: len(cut["curve"])]  # the same session, cut short
        reached = run["strokes_to_95"]
        assert len(cut["curve"]) == (reached if reached is not None else 10)
        assert all(p["miou"] < target for p in cut["curve"][:-1])
    assert min(len(r["curve"]) for r in short["strategies"].values()) < 10  # some session did stop early


def test_simulate_reports_strokes_to_targets():
    train = [_scene(1), _scene(2), _scene(3)]
    result = simulate(train, [_scene(2)], 3, ["random", "error"], SimConfig(budget=6, stroke_px=10))
    assert 0 < result["full_label_miou"] <= 1
    for run in result["strategies"].values():
        assert len(run["curve"]) == 6 and set(run["curve"][0]) == {
            "strokes",
            "labelled_px",
            "seconds",
            "miou",
        }
        full = result["full_label_miou"]
        assert run["strokes_to_95"] == strokes_to([Point(**p) for p in run["curve"]], 0.95 * full)


def test_refine_accepts_confident_predictions_once_every_class_is_labelled():
    from experiments.simulate import ACCEPT_S

    zero = LinearHead(3, 3)
    with torch.no_grad():
        zero.conv.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))  # class 0 everywhere, 99 % sure
    a = Annotator([_scene(3), _scene(1)], [_scene(2)], 3, SimConfig(stroke_px=5))
    images = [_Image(s, np.full(s.gt.shape, IGNORE, np.uint8)) for s in a.train]
    rng, cache = np.random.default_rng(0), TrainingCache()
    assert (
        a._step("refine", images, zero, rng, [], cache) != ACCEPT_S
    )  # class 2 has no label yet: a correction
    for c, (y, x) in enumerate([(0, 0), (0, 55), (55, 55)]):
        images[0].labels[y, x] = c
    before = int((images[1].labels != IGNORE).sum())
    assert a._step("refine", images, zero, rng, [], cache) == ACCEPT_S and images[1].visited
    assert int((images[1].labels != IGNORE).sum()) > before + 1000
    assert (
        a._step("refine", images, zero, rng, [], cache) == ACCEPT_S and images[0].visited
    )  # the next largest error
    assert a._step("refine", images, zero, rng, [], cache) != ACCEPT_S  # each image is accepted once


def test_lookahead_keeps_the_stroke_that_scores_best_on_the_held_out_images():
    """Given a head that knows classes 0 and 1 only, the stroke that helps the held-out image most is the one
    on the class-2 block: lookahead must pick it, and the stroke it draws is the one it tried."""
    train = [_scene(1), _scene(2)]
    val = [_scene(3)]
    a = Annotator(train, val, 3, SimConfig(stroke_px=5, seed=1))
    images = [_Image(s, np.full(s.gt.shape, IGNORE, np.uint8)) for s in train]
    images[0].labels[:, :14] = 0  # classes 0 and 1 labelled, class 2 not yet
    images[0].labels[:, 20:40] = 1
    cache = TrainingCache()
    head = a._fit(images, None, cache)
    assert head is not None
    target, hand = a._lookahead(images, head, np.random.default_rng(0), cache)
    assert target is not None
    i, (y, x) = target
    assert train[i].gt[y, x] == 2
    again = a._lookahead(images, head, np.random.default_rng(0), cache)
    assert again[0] == target  # seeded
    before = score(head, val, 3)
    a._stroke(images, target, hand)
    assert score(a._fit(images, head, cache), val, 3) > before


def test_the_simulated_annotator_sees_the_apps_prediction_following_the_image():
    # tokens say class 0 left of x = 28, class 1 right; the image's edge is at x = 24, inside a token
    cells = np.zeros((4, 4), np.uint8)
    cells[:, 2:] = 1
    head = LinearHead(3, 3)
    with torch.no_grad():
        head.conv.weight.copy_(torch.eye(3)[:, :, None, None] * 8)
        head.conv.bias.zero_()
    rgb = np.full((56, 56, 3), 30, np.uint8)
    rgb[:, 24:] = (220, 200, 40)
    gt = np.zeros((56, 56), np.uint8)
    gt[:, 24:] = 1
    plain, guided = Sample(_features(cells, 56), gt), Sample(_features(cells, 56), gt, rgb)
    assert (plain.predict(head).labels[0] == 0).sum() == 28  # bilinear: the token boundary
    assert (guided.predict(head).labels[0] == 0).sum() == 24  # the app's rule: the image's edge
    assert score(head, [guided], 2) > score(head, [plain], 2)
