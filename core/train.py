"""Training the linear head on imperfect labels: masked pixel-wise cross-entropy (the paper's Eq. 1), exact
and fast.

The literal implementation upsamples every image's logits to full resolution at every step. Because the
head is linear, the logit at a pixel equals the head applied to the bilinearly interpolated feature there,
and that in turn equals the bilinear mix of the head's outputs on the 4 surrounding tokens. So we gather,
once, for every labelled pixel its 4 token indices and weights, and each step costs
O(tokens x dim x classes + pixels x 4 x classes) instead of O(pixels x dim x classes) or worse (per image,
with fewer labelled pixels than touched tokens, O(pixels x dim x classes) on pre-mixed pixel features: the
gather picks whichever has fewer rows; see PixelSet). The mixing weights are sparse blocks (`core.mixing`).
The gradient is written out, L-BFGS is `core.lbfgs`, and a `TrainingCache` lets refits reuse
the per-image work. `literal_loss` is kept as the reference the tests and benchmarks compare against.
"""

from __future__ import annotations

import hashlib
import math
import time
import zlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core import lbfgs, mixing
from core.config import TrainConfig  # noqa: F401 (re-exported)
from core.errors import UserError
from core.features import PatchFeatures, TokenMoments, upsample_logits
from core.head import LinearHead
from core.labels import IGNORE
from core.lbfgs import Minimum
from core.loss import masked_cross_entropy
from core.lru import LRU


class TrainingError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class LabelledImage:
    features: PatchFeatures
    labels: np.ndarray  # [H, W] uint8 class indices at the image's original size, 255 = unlabelled
    key: str | None = None  # a stable name (e.g. the image id) that lets a TrainingCache reuse work


@dataclass
class PixelSet:
    """The training problem after gathering: each labelled pixel as 4 weighted references to feature rows.
    Per image, the rows are the tokens its labelled pixels touch or, when there are fewer labelled pixels
    than that (clicks, thin scribbles), those pixels' own interpolated features (weight 1 on one row):
    whichever is fewer rows, since a training step costs rows x dim x classes."""

    # [C, R] float32: the R feature rows (not standardised), stored transposed, as the tokens are ([C, h*w]);
    # see Objective for why
    rows_t: torch.Tensor
    y: torch.Tensor  # [N] long targets
    weight: torch.Tensor  # [N] float32 per-pixel weight (sampling correction x class balance)
    mean: torch.Tensor  # [C] feature statistics over all tokens of the training images
    std: torch.Tensor  # [C]
    pixel_counts: dict[int, int]  # labelled pixels per class before sampling
    # The sparse [N, R] mixing matrix S (pixel = S @ rows; rows of S sum to 1) and S^T, CSR (several times
    # faster here than gathering and scattering rows); None when row i is pixel i's own feature.
    mix: tuple[torch.Tensor, torch.Tensor] | None

    @property
    def num_pixels(self) -> int:
        return int(self.y.numel())


@dataclass
class TrainResult:
    head: LinearHead
    loss: float  # final weighted cross-entropy (without the weight-decay term)
    iterations: int
    seconds: float
    pixel_counts: dict[int, int]  # labelled pixels per class
    trained_pixels: int  # pixels used after the sampling cap


def sampling_rate(total_labelled: int | None, cap: int) -> float:
    """The share of labelled pixels a fit keeps: 1 up to `cap`, beyond it the largest power of two 1/2^k
    with total x rate <= cap. Quantised on purpose: a stroke on one image changes the project's total, and
    an exact cap / total would change every image's sample with it (each image regathered per stroke); a
    power of two changes only when the total doubles or halves, so between those steps a stroke regathers
    only the image it touched."""
    if not total_labelled or total_labelled <= cap:
        return 1.0
    return 2.0 ** -math.ceil(math.log2(total_labelled / cap))


def _stratified_sample(y: np.ndarray, rate: float, seed: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a class-stratified sample of about rate x y.size entries of y (each class present keeps
    at least one), and the weight that makes each sampled pixel stand for the pixels of its class it
    replaced: per class the weights sum to its count, so the weighted loss is unbiased (each image and class
    is a stratum; the estimator is the one of a proportional stratified sample)."""
    n = y.size
    if rate >= 1.0:
        return np.arange(n), np.ones(n, dtype=np.float32)
    rng = np.random.default_rng(seed)  # made only when sampling: seeding costs more than a stroke's gather
    keep, weight = [], []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        m = min(members.size, max(1, int(round(rate * members.size))))
        chosen = np.sort(rng.choice(members, size=m, replace=False))
        keep.append(chosen)
        weight.append(np.full(m, members.size / m, dtype=np.float32))
    order = np.argsort(np.concatenate(keep), kind="stable")
    return np.concatenate(keep)[order], np.concatenate(weight)[order]


@dataclass(frozen=True)
class LabelledPixels:
    """An image's labelled pixels, without the unlabelled rest of its label map: flat indices (row-major)
    and classes. What the trainer keeps per image between fits, so that a fit reads again only the label
    maps that changed (a 12-megapixel map is 12 MB to decode and scan; its strokes a few hundred KB here)."""

    flat: np.ndarray  # [n] int32 (int64 for maps of 2^31 pixels or more), ascending
    y: np.ndarray  # [n] uint8 class indices
    shape: tuple[int, int]  # (H, W) of the label map
    version: Hashable  # changes whenever the labels do (a digest, or the caller's label version)

    @classmethod
    def of(cls, labels: np.ndarray, version: Hashable | None = None) -> LabelledPixels:
        labels = np.asarray(labels)
        flat = np.flatnonzero(labels.ravel() != IGNORE)  # flat indices are ~20x faster than 2-D nonzero
        y = np.ascontiguousarray(labels.ravel()[flat])
        if labels.size < 2**31:
            flat = flat.astype(np.int32)
        shape = (int(labels.shape[0]), int(labels.shape[1]))
        return cls(flat, y, shape, version if version is not None else _label_digest(flat, y, shape))

    @property
    def count(self) -> int:
        return int(self.flat.size)

    @property
    def nbytes(self) -> int:
        return int(self.flat.nbytes + self.y.nbytes)


@dataclass(frozen=True)
class _Chunk:
    """One image's labelled pixels: its feature rows (see PixelSet) and each pixel's 4 references into them."""

    rows_t: torch.Tensor  # [C, r] float32
    block: mixing.Block  # this image's block of the mixing matrix
    y: torch.Tensor  # [n]
    w: torch.Tensor  # [n] sampling weights
    counts: np.ndarray  # [K] labelled pixels per class before sampling


class TrainingCache:
    """Per-image pieces of the training problem kept between fits, for the interactive case where one
    stroke changes one image: the token statistics of each image (its features never change), each image's
    labelled pixels (so a refit reads no label map that did not change) and its gathered pixels, reused
    while its labels and sampling rate stay the same. Give every LabelledImage a `key` (e.g. the image id)
    to use it; a key must name the same features for the cache's life (the engine's image ids do: one
    backbone per engine). Gathered pixels and labelled pixels are each bounded by `max_bytes` and evicted
    least recently used first (dense masks on many images would otherwise keep most tokens twice); an
    evicted image is read and gathered again at its next fit, nothing else changes."""

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = max_bytes
        self._stats: dict[str, TokenMoments] = {}
        self._chunks: LRU[tuple[Hashable, _Chunk | None]] = LRU(
            max_bytes=max_bytes, size=lambda vc: _nbytes(vc[1])
        )
        self._pixels: LRU[LabelledPixels] = LRU(max_bytes=max_bytes, size=lambda p: p.nbytes + 64)

    @property
    def nbytes(self) -> int:
        """Bytes held by gathered and labelled pixels (the token statistics add 16 x dim bytes per image)."""
        return self._chunks.nbytes + self._pixels.nbytes

    def stats(self, key: str, features: PatchFeatures, tokens: Callable[[], torch.Tensor]) -> TokenMoments:
        hit = self._stats.get(key)
        h, w = features.grid
        if hit is None or hit.n != h * w or hit.s1.numel() != features.dim:
            hit = self._stats[key] = TokenMoments.of(tokens())
        return hit

    def pixels(self, key: str, version: Hashable, load: Callable[[], np.ndarray]) -> LabelledPixels:
        """The labelled pixels of `key` at label `version`; `load()` (the label map) only when not kept."""
        hit = self._pixels.get(key)
        if hit is not None and hit.version == version:
            return hit
        return self._pixels.put(key, LabelledPixels.of(load(), version))

    def chunk(self, key: str, version: Hashable, make: Callable[[], _Chunk | None]) -> _Chunk | None:
        hit = self._chunks.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        return self._chunks.put(key, (version, make()))[1]

    def clear(self) -> None:
        """Drop everything (the next fit reads and gathers every image again)."""
        self._stats.clear()
        self._chunks.discard(lambda _k: True)
        self._pixels.discard(lambda _k: True)

    def forget(self, key: str) -> None:
        self._stats.pop(key, None)
        self._chunks.pop(key)
        self._pixels.pop(key)


def _nbytes(chunk: _Chunk | None) -> int:
    if chunk is None:
        return 0
    return sum(t.numel() * t.element_size() for t in (chunk.rows_t, chunk.y, chunk.w)) + chunk.block.nbytes


def _label_digest(flat: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> bytes:
    """A digest that changes whenever the label map does: of the labelled pixels' positions and classes."""
    h = hashlib.sha1(usedforsecurity=False)
    h.update(np.asarray(shape, np.int64).tobytes())
    h.update(flat.tobytes())
    h.update(y.tobytes())
    return h.digest()


class PixelSetBuilder:
    """Accumulates labelled pixels image by image, so callers can stream features through it instead of
    holding every image's tokens in memory (only the tokens a labelled pixel touches are kept).
    `total_labelled` (the labelled pixels of all images to come) sets the sampling rate of the pixel cap
    (`sampling_rate`); None keeps every pixel."""

    def __init__(
        self,
        num_classes: int,
        config: TrainConfig = TrainConfig(),
        total_labelled: int | None = None,
        cache: TrainingCache | None = None,
    ):
        self.num_classes = num_classes
        self.config = config
        self.rate = sampling_rate(total_labelled, config.max_pixels)
        self.cache = cache
        self._chunks: list[_Chunk] = []
        self._dim: int | None = None
        self._moments: TokenMoments | None = None
        self._images = 0

    def add(
        self, features: PatchFeatures, labels: np.ndarray, name: str = "", key: str | None = None
    ) -> None:
        """Add one image from its label map. With a `key` and a cache, its statistics and gathered pixels
        are reused from earlier fits while its labels are unchanged."""
        self.add_pixels(features, LabelledPixels.of(labels), name, key)

    def add_pixels(
        self, features: PatchFeatures, pixels: LabelledPixels, name: str = "", key: str | None = None
    ) -> None:
        """Add one image from its labelled pixels (`TrainingCache.pixels` keeps them between fits)."""
        name = name or f"image {self._images}"
        self._images += 1
        if self._dim is None:
            self._dim = features.dim
        elif features.dim != self._dim:
            raise TrainingError(
                f"{name} has {features.dim}-d features, others {self._dim}-d: mixed backbones"
            )
        if pixels.shape != features.original_size:
            raise TrainingError(
                f"{name}: label map is {pixels.shape[1]}x{pixels.shape[0]} (WxH) but the image is "
                f"{features.original_size[1]}x{features.original_size[0]}; labels must have the image's size"
            )
        cache = self.cache if key is not None else None
        converted: list[torch.Tensor] = []

        def tokens() -> torch.Tensor:  # [C, h*w] float32, converted at most once, and only when needed
            if not converted:
                converted.append(features.tokens.float().reshape(features.dim, -1))
            return converted[0]

        stats = (
            cache.stats(key, features, tokens)
            if cache is not None and key is not None
            else TokenMoments.of(tokens())
        )
        self._moments = stats if self._moments is None else self._moments + stats
        if cache is not None and key is not None:
            version = (pixels.version, features.dim, self.rate, self.config.seed, self.num_classes)
            chunk = cache.chunk(key, version, lambda: self._gather(features, tokens(), pixels, name, key))
        else:
            chunk = self._gather(features, tokens(), pixels, name, key)
        if chunk is not None:
            self._chunks.append(chunk)

    def _gather(
        self,
        features: PatchFeatures,
        tokens: torch.Tensor,
        pixels: LabelledPixels,
        name: str,
        key: str | None,
    ) -> _Chunk | None:
        if pixels.count == 0:
            return None
        y = pixels.y.astype(np.int64)
        if y.max() >= self.num_classes:
            raise TrainingError(f"{name}: class index {int(y.max())} but only {self.num_classes} classes")
        # Seeded per image (by key, else by position), so a sample does not depend on the other images.
        tag = zlib.crc32((key if key is not None else f"#{self._images}").encode())
        pick, sw = _stratified_sample(y, self.rate, [self.config.seed, tag])
        ys, xs = np.divmod(pixels.flat[pick].astype(np.int64), pixels.shape[1])
        idx, wts = features.corner_indices(ys, xs)
        corner = idx.numpy()
        touched = np.zeros(tokens.shape[1], dtype=bool)  # the tokens some pixel touches (faster than a sort)
        touched[corner.ravel()] = True
        used = np.flatnonzero(touched)
        if pick.size <= used.size:  # the pixels' own features: sum over the corners k of w_k x token_k
            corners = tokens.index_select(1, idx.view(-1)).view(-1, pick.size, 4)  # [C, n, 4]
            rows_t, block = (corners * wts).sum(2), mixing.Block.identity(pick.size)
        else:
            local = (np.cumsum(touched) - 1)[corner]  # token index -> its row among the used ones
            rows_t = tokens.index_select(1, torch.from_numpy(used))
            block = mixing.Block.bilinear(local, wts.numpy(), used.size)
        return _Chunk(
            rows_t=rows_t,
            block=block,
            y=torch.from_numpy(y[pick]),
            w=torch.from_numpy(sw),
            counts=np.bincount(y, minlength=self.num_classes),
        )

    def build(self) -> PixelSet:
        if not self._chunks:
            raise TrainingError(
                "no labelled pixels: draw scribbles or points (or import masks) before training"
            )
        assert self._moments is not None  # set with the first chunk
        mean, std = self._moments.mean_std()
        y_all = torch.cat([c.y for c in self._chunks])
        weight = torch.cat([c.w for c in self._chunks])
        counts = np.sum([c.counts for c in self._chunks], axis=0)
        if self.config.class_balance:
            weight = weight * torch.from_numpy(class_weights(counts))[y_all]
        return PixelSet(
            rows_t=torch.cat([c.rows_t for c in self._chunks], 1),
            y=y_all,
            weight=weight,
            mean=mean,
            std=std,
            pixel_counts={c: int(n) for c, n in enumerate(counts) if n > 0},
            mix=None
            if all(c.block.identity_like for c in self._chunks)
            else mixing.stack([c.block for c in self._chunks]),
        )


def class_weights(counts: np.ndarray) -> np.ndarray:
    """Per-class weights of the class-balanced loss: total / (classes present x class count), 0 if absent."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    cw = np.zeros(counts.size, dtype=np.float64)
    cw[present] = counts[present].sum() / (present.sum() * counts[present])
    return cw.astype(np.float32)


def gather(
    images: Sequence[LabelledImage],
    num_classes: int,
    config: TrainConfig = TrainConfig(),
    cache: TrainingCache | None = None,
) -> PixelSet:
    """Collect labelled pixels of all images into a PixelSet (validating labels against the classes)."""
    if not images:
        raise TrainingError("no images to train on; add images and label some pixels first")
    pixels = [LabelledPixels.of(im.labels) for im in images]
    builder = PixelSetBuilder(num_classes, config, sum(p.count for p in pixels), cache)
    for im, px in zip(images, pixels, strict=True):
        builder.add_pixels(im.features, px, key=im.key)
    return builder.build()


class Objective:
    """Eq. 1 for a linear head on a PixelSet, with its exact gradient.

    The head is linear and each pixel's bilinear weights sum to 1, so a pixel's logit is the bilinear mix of
    the head's outputs on the rows it references: logits = S (Z W^T + b), with Z the standardised feature
    rows and S the sparse [N, R] mixing matrix. A step costs rows x dim x classes + 4 x pixels x classes
    (the rows being, per image, whichever is fewer of touched tokens and labelled pixels); when every row
    is a pixel's own feature, S is the identity and is skipped.
    The gradient is written out (softmax minus one-hot, then back through S and the head), so a step is a
    handful of tensor operations without autograd's bookkeeping; tests compare it with autograd on the
    literal Eq. 1."""

    def __init__(self, px: PixelSet, mean: torch.Tensor, std: torch.Tensor):
        # Standardised and transposed, [C, R]: W @ Z^T gives the [K, R] logits the softmax below wants (it
        # vectorises over pixels, not over the few classes) without a transpose, and is ~20 % faster than
        # Z @ W^T here; the gradient's g @ Z reads the same array through a transposed view, as fast.
        self.rows_t = torch.sub(px.rows_t, mean[:, None]).div_(std[:, None])
        self.mix: torch.Tensor | None = None
        self.mix_t: torch.Tensor | None = None
        if px.mix is not None:
            self.mix, self.mix_t = px.mix
        self.y = px.y
        self.w = px.weight / px.weight.sum()
        self._neg_w = -self.w[None]

    def __call__(self, weight: torch.Tensor, bias: torch.Tensor, grad: bool = True):
        """Weighted mean cross-entropy for head weights [K, C] and bias [K]; with grad, also (dW, db)."""
        u = torch.addmm(bias.view(-1, 1), weight, self.rows_t)  # [K, R]: the head on every row
        z = u if self.mix is None else _transposed(self.mix @ _transposed(u))  # [K, N]
        m = z.amax(0)  # (max with indices is ~30x slower here)
        e = (z - m).exp_()
        tot = e.sum(0)
        loss = ((m + tot.log() - z.gather(0, self.y[None])[0]) * self.w).sum()
        if not grad:
            return loss
        g = e.mul_(self.w / tot).scatter_add_(0, self.y[None], self._neg_w)  # w * (softmax - one-hot), [K, N]
        if self.mix is not None:
            assert self.mix_t is not None  # set with mix
            g = _transposed(self.mix_t @ _transposed(g))  # [K, R]: back through the bilinear mix
        return loss, g @ self.rows_t.T, g.sum(1)


def _transposed(x: torch.Tensor) -> torch.Tensor:
    """x.T, contiguous. For the trainer's [N, K] blocks (K a handful of classes) numpy's copy is several
    times faster than torch's (0.16 vs 1.1 ms at 100,000 x 5); an evaluation through the bilinear mix has four
    (in and out of the sparse products, each way), one on the pixels' own features none."""
    if x.requires_grad or x.device.type != "cpu":
        return x.T.contiguous()
    return torch.from_numpy(np.ascontiguousarray(x.numpy().T))


def pixel_loss(head: LinearHead, px: PixelSet) -> torch.Tensor:
    """Weighted mean cross-entropy over labelled pixels (Eq. 1 with its mask) of `head`."""
    with torch.no_grad():
        return Objective(px, head.mean, head.std)(head.weight, head.bias, grad=False)


def _transfer(prev: LinearHead, head: LinearHead) -> None:
    """Warm start: copy prev's function onto head's new feature statistics, exactly, for shared classes."""
    k = min(prev.num_classes, head.num_classes)
    w_prev = prev.weight.detach()[:k]
    ratio = head.std / prev.std
    w_new = w_prev * ratio
    b_new = prev.bias.detach()[:k] + w_prev @ ((head.mean - prev.mean) / prev.std)
    with torch.no_grad():
        head.weight[:k] = w_new
        head.bias[:k] = b_new


def minimize_lbfgs(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    config: TrainConfig,
    callback: Callable[[np.ndarray, int], None] | None = None,
) -> Minimum:
    """The trainer's optimiser (`core.lbfgs`) with the config's iteration cap and tolerance; the benchmarks'
    literal Eq. 1 baseline uses exactly this too, so only the loss differs."""
    return lbfgs.minimize_lbfgs(fun, x0, max_iter=config.max_iter, ftol=config.tolerance, callback=callback)


def flat_params(head: LinearHead) -> np.ndarray:
    """The head's parameters as the optimiser sees them: [K, C + 1] (weights | bias) flattened, float64."""
    k = head.num_classes
    theta = torch.cat([head.conv.weight.detach().view(k, -1), head.bias.detach()[:, None]], 1)
    return theta.double().numpy().ravel()


def set_flat_params(head: LinearHead, x: np.ndarray) -> None:
    """The inverse of `flat_params`."""
    theta = torch.from_numpy(np.asarray(x)).float().view(head.num_classes, head.dim + 1)
    with torch.no_grad():
        head.conv.weight.copy_(theta[:, :-1].reshape(head.conv.weight.shape))
        head.bias.copy_(theta[:, -1])


class TrainingCancelled(Exception):
    """`should_stop` turned true during a fit (for example, a newer edit made it stale)."""


def train_head(
    images: Sequence[LabelledImage] | PixelSet,
    num_classes: int,
    config: TrainConfig = TrainConfig(),
    init: LinearHead | None = None,
    should_stop: Callable[[], bool] | None = None,
    cache: TrainingCache | None = None,
    progress: Callable[[int, Callable[[], LinearHead]], None] | None = None,
) -> TrainResult:
    """Fit a LinearHead with full-batch L-BFGS (the problem is convex, so this converges in tens of
    iterations and is deterministic). `should_stop` is checked before every loss evaluation and raises
    TrainingCancelled when true; `cache` reuses per-image work between fits (see TrainingCache);
    `progress(iteration, snapshot)` is called after each iteration; `snapshot()` returns a copy of the
    head at that point (built only when asked for: an interactive client shows one now and then while the
    fit goes on, since a fit is useful long before it has converged)."""
    start = time.perf_counter()
    px = images if isinstance(images, PixelSet) else gather(images, num_classes, config, cache)
    if len(px.pixel_counts) < 2:
        only = next(iter(px.pixel_counts))
        raise TrainingError(
            f"labels cover only one class (index {only}); label at least two classes (e.g. object and "
            "background) so the head has something to separate"
        )
    head = LinearHead(px.rows_t.shape[0], num_classes)
    head.set_statistics(px.mean, px.std)
    if init is not None and config.warm_start and init.dim == head.dim:
        _transfer(init, head)
    objective = Objective(px, head.mean, head.std)
    k, c = num_classes, head.dim
    decay = config.weight_decay

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        if should_stop is not None and should_stop():
            raise TrainingCancelled()
        theta = x.reshape(k, c + 1)  # the layout of flat_params
        w = theta[:, :c]
        loss, dw, db = objective(*torch.from_numpy(theta.astype(np.float32)).split([c, 1], 1))
        grad = np.empty_like(theta)  # the weight decay in numpy: on a few thousand numbers torch's
        np.multiply(w, decay, out=grad[:, :c])  # per-call overhead was most of its cost
        grad[:, :c] += dw.numpy()
        grad[:, c] = db.numpy()
        return float(loss) + 0.5 * decay * float(np.vdot(w, w)), grad.ravel()

    def each(x: np.ndarray, n: int) -> None:
        def snapshot() -> LinearHead:
            copy = LinearHead(c, k)
            copy.set_statistics(head.mean, head.std)
            set_flat_params(copy, x)
            return copy.eval().requires_grad_(False)

        if progress is not None:
            progress(n, snapshot)

    with torch.no_grad():
        found = minimize_lbfgs(fun, flat_params(head), config, each if progress is not None else None)
        set_flat_params(head, found.x)
        final = float(objective(head.conv.weight.view(k, c), head.bias, grad=False))
    iterations = found.iterations
    return TrainResult(
        head=head.eval().requires_grad_(False),
        loss=final,
        iterations=iterations,
        seconds=time.perf_counter() - start,
        pixel_counts=px.pixel_counts,
        trained_pixels=px.num_pixels,
    )


def literal_loss(
    head: LinearHead, images: Sequence[LabelledImage], class_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Reference Eq. 1: upsample every image's logits to full resolution, mask, average over labelled
    pixels. Slow by design; tests and benchmarks check `pixel_loss` against it."""
    total = torch.zeros(())
    denom = torch.zeros(())
    for im in images:
        logits = head(im.features.tokens.float().unsqueeze(0))
        up = upsample_logits(logits, im.features.original_size)
        target = torch.from_numpy(np.asarray(im.labels, dtype=np.int64)).unsqueeze(0)
        ce_sum, weight = masked_cross_entropy(up, target, class_weight)
        total, denom = total + ce_sum, denom + weight
    return total / denom
