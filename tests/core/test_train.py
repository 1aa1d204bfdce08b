from __future__ import annotations

import numpy as np
import pytest
import torch

from core.features import PatchFeatures
from core.head import LinearHead
from core.labels import IGNORE
from core.train import (
    LabelledImage,
    Objective,
    PixelSetBuilder,
    TrainConfig,
    TrainingCache,
    TrainingCancelled,
    TrainingError,
    _stratified_sample,
    _transfer,
    gather,
    literal_loss,
    pixel_loss,
    sampling_rate,
    train_head,
)


def _problem(seed=0, num_classes=4, dim=16, density=0.3):
    """Random tokens and labels on non-square images, with labels on every border row and column."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    images = []
    for h, w, H, W in [(3, 5, 37, 61), (4, 2, 50, 23), (1, 3, 9, 40)]:
        labels = np.full((H, W), IGNORE, np.uint8)
        mask = rng.random((H, W)) < density
        labels[mask] = rng.integers(0, num_classes, mask.sum())
        labels[0, :], labels[-1, :], labels[:, 0], labels[:, -1] = 1, 2, 3 % num_classes, 0
        feats = PatchFeatures(torch.randn(dim, h, w, generator=g), (h * 14, w * 14), (H, W))
        images.append(LabelledImage(feats, labels))
    head = LinearHead(dim, num_classes)
    with torch.no_grad():
        head.conv.weight.normal_(generator=g)
        head.conv.bias.normal_(generator=g)
    head.set_statistics(torch.randn(dim, generator=g) * 0.1, torch.rand(dim, generator=g) + 0.5)
    return images, head


def _loss_and_grads(fn):
    def run(head, *a):
        for p in (head.conv.weight, head.conv.bias):
            p.requires_grad_(True)
            p.grad = None
        loss = fn(head, *a)
        loss.backward()
        return float(loss.detach()), head.conv.weight.grad.clone(), head.conv.bias.grad.clone()

    return run


def _sparse(images, per_image=3, seed=0):
    """Only a few labelled pixels per image (fewer pixels than touched tokens: the pixel form)."""
    rng = np.random.default_rng(seed)
    out = []
    for im in images:
        labels = np.full_like(im.labels, IGNORE)
        flat = rng.choice(labels.size, per_image, replace=False)
        labels.flat[flat] = np.arange(per_image) % 4
        labels[-1, -1], labels[0, 0] = 2, 3  # corners: merged bilinear weights at the border
        out.append(LabelledImage(im.features, labels))
    return out


@pytest.mark.parametrize("form", ["tokens", "pixels", "mixed"])
@pytest.mark.parametrize("balance", [False, True])
def test_gathered_loss_and_gradients_equal_the_literal_eq1(balance, form):
    """Per image the rows are touched tokens or the pixels' own features, whichever are fewer: all images
    one way, all the other, or some of each (the 1x3-token image has fewer tokens than its 5 pixels)."""
    images, head = _problem()
    if form == "pixels":
        images = _sparse(images[:2])
    elif form == "mixed":
        images = _sparse(images)
    px = gather(images, 4, TrainConfig(class_balance=balance))
    objective = Objective(px, head.mean, head.std)
    touched = sum(int(np.count_nonzero(np.asarray(im.labels) != IGNORE)) for im in images[:2]) + 3
    assert px.rows_t.shape[1] == {"tokens": 15 + 8 + 3, "pixels": touched - 3, "mixed": touched}[form]
    assert (objective.mix is None) == (form == "pixels")
    class_weight = None
    if balance:
        counts = np.bincount(np.concatenate([im.labels[im.labels != IGNORE] for im in images]), minlength=4)
        class_weight = torch.tensor(counts.sum() / (4 * np.maximum(counts, 1)), dtype=torch.float32)
    loss, dw, db = objective(head.conv.weight.detach().view(4, -1), head.conv.bias.detach())
    slow = _loss_and_grads(literal_loss)(head, images, class_weight)
    assert abs(float(loss) - slow[0]) < 1e-5
    assert abs(float(pixel_loss(head, px)) - slow[0]) < 1e-5
    assert torch.allclose(dw, slow[1].view(4, -1), atol=1e-5) and torch.allclose(db, slow[2], atol=1e-5)


def test_a_cache_reuses_unchanged_images_and_gives_the_same_problem():
    images, _ = _problem(seed=5, density=0.1)
    keyed = [LabelledImage(im.features, im.labels, key=f"img{i}") for i, im in enumerate(images)]
    cache = TrainingCache()
    first = train_head(keyed, 4, cache=cache)
    assert torch.equal(
        first.head.conv.weight, train_head(keyed, 4).head.conv.weight
    )  # same result without it
    calls = []
    original = PixelSetBuilder._gather
    PixelSetBuilder._gather = lambda self, *a, **k: calls.append(a[-1]) or original(self, *a, **k)
    try:
        more = keyed[1].labels.copy()
        more[5:8, 5:20] = 2  # one more stroke on one image
        keyed[1] = LabelledImage(keyed[1].features, more, key="img1")
        again = train_head(keyed, 4, cache=cache, init=first.head)
    finally:
        PixelSetBuilder._gather = original
    assert calls == ["img1"]  # only the changed image was gathered again
    fresh = train_head(keyed, 4)
    assert abs(again.loss - fresh.loss) < 1e-5 * max(1.0, fresh.loss)
    assert again.pixel_counts == fresh.pixel_counts


@pytest.mark.parametrize("density", [0.05, 1.0])  # strokes (digest of positions and classes), dense masks
def test_a_cache_sees_a_relabelled_pixel(density):
    """Same labelled positions, one pixel's class changed: the cached chunk must not be reused."""
    images, _ = _problem(seed=8, density=density)
    keyed = [LabelledImage(im.features, im.labels, key=f"img{i}") for i, im in enumerate(images)]
    cache = TrainingCache()
    train_head(keyed, 4, cache=cache)
    relabelled = keyed[0].labels.copy()
    y, x = np.argwhere(relabelled != IGNORE)[0]
    relabelled[y, x] = (relabelled[y, x] + 1) % 4
    keyed[0] = LabelledImage(keyed[0].features, relabelled, key="img0")
    cached, fresh = gather(keyed, 4, cache=cache), gather(keyed, 4)
    assert torch.equal(cached.y, fresh.y) and torch.equal(cached.rows_t, fresh.rows_t)


def test_should_stop_cancels_a_fit():
    images, _ = _problem(seed=6)
    with pytest.raises(TrainingCancelled):
        train_head(images, 4, should_stop=lambda: True)
    assert train_head(images, 4, should_stop=lambda: False).iterations > 0


def test_training_decreases_loss_and_is_deterministic():
    images, _ = _problem(seed=1, density=0.05)
    zero = LinearHead(16, 4)
    px = gather(images, 4)
    zero.set_statistics(px.mean, px.std)
    before = float(pixel_loss(zero, px))
    a = train_head(images, 4, TrainConfig(max_iter=30))
    b = train_head(images, 4, TrainConfig(max_iter=30))
    assert a.loss < before - 0.05
    assert torch.equal(a.head.conv.weight, b.head.conv.weight)
    assert a.pixel_counts == {c: int(sum((im.labels == c).sum() for im in images)) for c in range(4)}


def test_separable_classes_are_learned_on_unlabelled_pixels():
    # Class = sign of token channel 0; label only a few pixels, then predict everywhere.
    g = torch.Generator().manual_seed(3)
    tokens = 0.5 * torch.randn(8, 6, 6, generator=g)
    tokens[0] = torch.where(torch.arange(6)[None, :] < 3, -3.0, 3.0).expand(6, 6)
    feats = PatchFeatures(tokens, (84, 84), (60, 60))
    labels = np.full((60, 60), IGNORE, np.uint8)
    rows = np.arange(60)
    labels[rows, 2 + rows * 25 // 60] = 0  # one diagonal stroke per class, across every patch row
    labels[rows, 33 + rows * 25 // 60] = 1
    result = train_head([LabelledImage(feats, labels)], 2)
    from core.predict import predict

    pred = predict(result.head, feats).labels
    assert (pred[:, :20] == 0).mean() > 0.95 and (pred[:, 40:] == 1).mean() > 0.95


def test_stratified_sampling_keeps_class_shares_and_unbiased_weights():
    y = np.repeat([0, 1, 2, 3], [90_000, 9_000, 1_000, 3])
    idx, w = _stratified_sample(y, 0.1, [0])
    counts = np.bincount(y[idx], minlength=4)
    assert abs(counts.sum() - 10_000) <= 3 and counts[2] == 100 and counts[3] == 1  # every class keeps one
    for c, n in enumerate([90_000, 9_000, 1_000, 3]):
        assert np.isclose(w[y[idx] == c].sum(), n)  # each class still weighs what it did
    again, _ = _stratified_sample(y, 0.1, [0])
    assert np.array_equal(idx, again)


def test_the_sampling_rate_is_a_power_of_two_that_moves_only_when_the_total_doubles():
    assert sampling_rate(None, 1000) == sampling_rate(1000, 1000) == 1.0
    assert sampling_rate(1001, 1000) == sampling_rate(2000, 1000) == 0.5
    assert sampling_rate(2001, 1000) == 0.25 and sampling_rate(10**7, 400_000) == 1 / 32
    # the kept share never exceeds the cap, and stays above half of it
    for total in (1500, 4000, 123_457, 10**7):
        assert 500 < sampling_rate(total, 1000) * total <= 1000


def test_a_stroke_on_one_image_regathers_only_that_image_under_the_cap():
    """With more labelled pixels than the cap, a stroke elsewhere leaves every other image's sample as it
    was (the rate moves only when the total doubles): the cache serves them, only the edited one is made."""
    images, _ = _problem(seed=5, density=1.0)
    keyed = [LabelledImage(im.features, im.labels, key=f"img{i}") for i, im in enumerate(images)]
    total = sum(int((im.labels != IGNORE).sum()) for im in images)
    config = TrainConfig(max_pixels=total // 3)
    cache = TrainingCache()
    gather(keyed, 4, config, cache)
    calls = []
    original = PixelSetBuilder._gather
    PixelSetBuilder._gather = lambda self, *a, **k: calls.append(a[-1]) or original(self, *a, **k)
    try:
        more = keyed[1].labels.copy()
        more[0, :3] = IGNORE  # a small erase: the total moves, its power-of-two rate does not
        keyed[1] = LabelledImage(keyed[1].features, more, key="img1")
        px = gather(keyed, 4, config, cache)
    finally:
        PixelSetBuilder._gather = original
    assert calls == ["img1"]
    assert px.num_pixels <= config.max_pixels
    fresh = gather(keyed, 4, config)  # the same problem as a gather without a cache
    assert torch.equal(px.y, fresh.y) and torch.allclose(px.weight, fresh.weight)
    assert torch.allclose(px.rows_t, fresh.rows_t)


def test_sampling_cap_applies_to_dense_masks():
    images, _ = _problem(seed=2, density=1.0)
    full = sum(int((im.labels != IGNORE).sum()) for im in images)
    px = gather(images, 4, TrainConfig(max_pixels=1000))
    assert px.num_pixels <= 1010 and full > 3000
    unbalanced = gather(images, 4, TrainConfig(max_pixels=1000, class_balance=False))
    assert abs(float(unbalanced.weight.sum()) - full) / full < 0.01


def test_warm_start_transfer_preserves_the_function():
    images, head = _problem(seed=4)
    px = gather(images, 4)
    new = LinearHead(16, 4)
    new.set_statistics(px.mean, px.std)
    _transfer(head, new)
    x = torch.randn(10, 16)
    assert torch.allclose(head.logits_flat(x), new.logits_flat(x), atol=1e-4)
    warm = train_head(images, 4, TrainConfig(max_iter=3), init=train_head(images, 4).head)
    cold = train_head(images, 4, TrainConfig(max_iter=3))
    assert warm.loss <= cold.loss


def test_bad_inputs_give_clear_errors():
    images, _ = _problem()
    with pytest.raises(TrainingError, match="no images"):
        train_head([], 4)
    empty = [LabelledImage(im.features, np.full_like(im.labels, IGNORE)) for im in images]
    with pytest.raises(TrainingError, match="no labelled pixels"):
        train_head(empty, 4)
    one = [
        LabelledImage(im.features, np.where(im.labels != IGNORE, 1, IGNORE).astype(np.uint8)) for im in images
    ]
    with pytest.raises(TrainingError, match="only one class"):
        train_head(one, 4)
    with pytest.raises(TrainingError, match="class index 3 but only 3 classes"):
        train_head(images, 3)
    wrong = [LabelledImage(images[0].features, images[0].labels[:-1])]
    with pytest.raises(TrainingError, match="labels must have the image's size"):
        train_head(wrong, 4)


def test_progress_reports_every_iteration_and_snapshots_only_on_request():
    from core.train import TrainConfig, flat_params, train_head

    rng = np.random.default_rng(3)
    feats = PatchFeatures(
        torch.from_numpy(rng.standard_normal((8, 4, 5)).astype(np.float32)), (56, 70), (40, 50)
    )
    labels = np.full((40, 50), IGNORE, np.uint8)
    labels[:, :20], labels[:, 30:] = 0, 1
    seen: list[int] = []
    snaps: dict[int, np.ndarray] = {}

    def progress(n, snapshot):
        seen.append(n)
        snaps[n] = flat_params(snapshot())

    result = train_head([LabelledImage(feats, labels)], 2, TrainConfig(max_iter=12), progress=progress)
    assert seen == list(range(1, result.iterations + 1))
    np.testing.assert_allclose(snaps[result.iterations], flat_params(result.head), rtol=1e-5, atol=1e-6)
    assert not np.allclose(
        snaps[1], snaps[result.iterations]
    )  # early iterates differ from the converged head
