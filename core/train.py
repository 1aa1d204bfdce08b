"""Training the linear head on imperfect labels: masked pixel-wise cross-entropy (the paper's Eq. 1), exact
and fast.

The literal implementation upsamples every image's logits to full resolution at every step. Because the
head is linear, the logit at a pixel equals the head applied to the bilinearly interpolated feature there,
and that in turn equals the bilinear mix of the head's outputs on the 4 surrounding tokens. So we gather,
once, for every labelled pixel its 4 token indices and weights, and each step costs
O(tokens x dim x classes + pixels x 4 x classes) instead of O(pixels x dim x classes) or worse.
`literal_loss` is kept as the reference the tests compare against.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from core.features import PatchFeatures
from core.head import LinearHead
from core.labels import IGNORE


class TrainingError(ValueError):
    pass


@dataclass(frozen=True)
class TrainConfig:
    max_iter: int = 100  # L-BFGS iterations; each is one pass over all labelled pixels
    weight_decay: float = 1e-3  # L2 penalty on the head weights (standardised features), not the bias
    class_balance: bool = True  # weight each class by 1 / its labelled pixel count (rare classes count)
    max_pixels: int = 400_000  # cap for dense masks: a seeded, class-stratified sample of this many pixels
    seed: int = 0  # seeds the pixel sampling; training is deterministic given the inputs
    tolerance: float = 1e-7  # stop when the loss changes less than this between iterations
    warm_start: bool = True  # start from the previous head when one is given and shapes fit

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LabelledImage:
    features: PatchFeatures
    labels: np.ndarray  # [H, W] uint8 class indices at the image's original size, 255 = unlabelled


@dataclass
class PixelSet:
    """The training problem after gathering: each labelled pixel as 4 weighted token references."""

    tokens: torch.Tensor  # [M, C] float32, only the tokens some labelled pixel touches
    idx: torch.Tensor  # [N, 4] long, rows of `tokens`
    wts: torch.Tensor  # [N, 4] float32 bilinear weights (sum to 1)
    y: torch.Tensor  # [N] long targets
    weight: torch.Tensor  # [N] float32 per-pixel weight (sampling correction x class balance)
    mean: torch.Tensor  # [C] feature statistics over all tokens of the training images
    std: torch.Tensor  # [C]
    pixel_counts: dict[int, int]  # labelled pixels per class before sampling
    _mix: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def num_pixels(self) -> int:
        return int(self.y.numel())

    def mix_matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The sparse bilinear mixing matrix S [N, M] and its transpose, built once and reused."""
        if self._mix is None:
            n, m = self.num_pixels, self.tokens.shape[0]
            rows = torch.arange(n).repeat_interleave(4)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "sparse CSR is beta" is not news for the user
                coo = torch.sparse_coo_tensor(torch.stack([rows, self.idx.reshape(-1)]), self.wts.reshape(-1), (n, m))
                coo = coo.coalesce()
                self._mix = (coo.to_sparse_csr(), coo.t().coalesce().to_sparse_csr())
        return self._mix


@dataclass
class TrainResult:
    head: LinearHead
    loss: float  # final weighted cross-entropy (without the weight-decay term)
    iterations: int
    seconds: float
    pixel_counts: dict[int, int]  # labelled pixels per class
    trained_pixels: int  # pixels used after the sampling cap


def _stratified_sample(y: np.ndarray, cap: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a class-stratified sample of at most ~cap entries of y, and the weight that makes each
    sampled pixel stand for the pixels of its class it replaced (so the weighted loss is unbiased)."""
    n = y.size
    if n <= cap:
        return np.arange(n), np.ones(n, dtype=np.float32)
    keep, weight = [], []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        m = min(members.size, max(1, int(round(cap * members.size / n))))
        chosen = np.sort(rng.choice(members, size=m, replace=False))
        keep.append(chosen)
        weight.append(np.full(m, members.size / m, dtype=np.float32))
    order = np.argsort(np.concatenate(keep), kind="stable")
    return np.concatenate(keep)[order], np.concatenate(weight)[order]


class PixelSetBuilder:
    """Accumulates labelled pixels image by image, so callers can stream features through it instead of
    holding every image's tokens in memory (only the tokens a labelled pixel touches are kept)."""

    def __init__(self, num_classes: int, config: TrainConfig = TrainConfig(), total_labelled: int | None = None):
        self.num_classes = num_classes
        self.config = config
        self.total_labelled = total_labelled  # enables the sampling cap; None = keep every pixel
        self._rng = np.random.default_rng(config.seed)
        self._chunks: dict[str, list[torch.Tensor]] = {k: [] for k in ("tok", "idx", "wts", "y", "w")}
        self._counts = np.zeros(num_classes, dtype=np.int64)
        self._dim: int | None = None
        self._s1 = self._s2 = None
        self._n_tok = self._offset = self._images = 0

    def add(self, features: PatchFeatures, labels: np.ndarray, name: str = "") -> None:
        name = name or f"image {self._images}"
        self._images += 1
        labels = np.asarray(labels)
        if self._dim is None:
            self._dim = features.dim
            self._s1 = torch.zeros(features.dim, dtype=torch.float64)
            self._s2 = torch.zeros(features.dim, dtype=torch.float64)
        elif features.dim != self._dim:
            raise TrainingError(f"{name} has {features.dim}-d features, others {self._dim}-d: mixed backbones")
        if labels.shape != features.original_size:
            raise TrainingError(
                f"{name}: label map is {labels.shape[1]}x{labels.shape[0]} (WxH) but the image is "
                f"{features.original_size[1]}x{features.original_size[0]}; labels must have the image's size"
            )
        flat = features.flat_tokens()
        self._s1 += flat.sum(0, dtype=torch.float64)
        self._s2 += (flat.double() ** 2).sum(0)
        self._n_tok += flat.shape[0]
        ys, xs = np.nonzero(labels != IGNORE)
        if ys.size == 0:
            return
        y = labels[ys, xs].astype(np.int64)
        if y.max() >= self.num_classes:
            raise TrainingError(f"{name}: class index {int(y.max())} but only {self.num_classes} classes")
        self._counts += np.bincount(y, minlength=self.num_classes)
        cap, total = self.config.max_pixels, self.total_labelled
        # Each image keeps its share of the cap, so large images do not crowd out small ones.
        share = max(1, int(cap * ys.size / total)) if total and total > cap else ys.size
        pick, sw = _stratified_sample(y, share, self._rng)
        idx, wts = features.corner_indices(ys[pick], xs[pick])
        used, local = torch.unique(idx, return_inverse=True)
        self._chunks["tok"].append(flat[used].float())
        self._chunks["idx"].append(local + self._offset)
        self._offset += used.numel()
        self._chunks["wts"].append(wts)
        self._chunks["y"].append(torch.from_numpy(y[pick]))
        self._chunks["w"].append(torch.from_numpy(sw))

    def build(self) -> PixelSet:
        if not self._chunks["y"]:
            raise TrainingError("no labelled pixels: draw scribbles or points (or import masks) before training")
        mean = self._s1 / self._n_tok
        std = (self._s2 / self._n_tok - mean**2).clamp(min=0).sqrt()
        y_all = torch.cat(self._chunks["y"])
        weight = torch.cat(self._chunks["w"])
        counts = self._counts
        if self.config.class_balance:
            present = counts > 0
            cw = np.zeros(self.num_classes, dtype=np.float64)
            cw[present] = counts[present].sum() / (present.sum() * counts[present])
            weight = weight * torch.from_numpy(cw.astype(np.float32))[y_all]
        return PixelSet(
            tokens=torch.cat(self._chunks["tok"]),
            idx=torch.cat(self._chunks["idx"]),
            wts=torch.cat(self._chunks["wts"]),
            y=y_all,
            weight=weight,
            mean=mean.float(),
            std=std.float(),
            pixel_counts={c: int(n) for c, n in enumerate(counts) if n > 0},
        )


def gather(images: Sequence[LabelledImage], num_classes: int, config: TrainConfig = TrainConfig()) -> PixelSet:
    """Collect labelled pixels of all images into a PixelSet (validating labels against the classes)."""
    if not images:
        raise TrainingError("no images to train on; add images and label some pixels first")
    total = sum(int((np.asarray(im.labels) != IGNORE).sum()) for im in images)
    builder = PixelSetBuilder(num_classes, config, total_labelled=total)
    for im in images:
        builder.add(im.features, im.labels)
    return builder.build()


class _BilinearMix(torch.autograd.Function):
    """z = S @ u with S the sparse [N, M] matrix of bilinear weights (4 per row); grad_u = S^T @ grad_z.
    Sparse CSR products are several times faster here than gathering u[idx] and scattering back."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, s: torch.Tensor, s_t: torch.Tensor) -> torch.Tensor:
        ctx.s_t = s_t
        return s @ u

    @staticmethod
    def backward(ctx, grad_z: torch.Tensor):
        return ctx.s_t @ grad_z.contiguous(), None, None


class _WeightedCrossEntropy(torch.autograd.Function):
    """sum_i w_i * CE(z_i, y_i) for z [N, K] and weights w that sum to 1, in one fused pass.

    With few classes, PyTorch's log_softmax over the last dimension of [N, K] is slow (it vectorises over K);
    working on the [K, N] transpose vectorises over pixels and halves the step time (bench/RESULTS.md)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        zt = z.T.contiguous()  # [K, N]
        m = zt.max(0).values
        e = (zt - m).exp_()
        s = e.sum(0)
        loss = ((m + s.log() - zt.gather(0, y[None])[0]) * w).sum()
        ctx.save_for_backward(e.div_(s), y, w)  # softmax, reused by backward
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        p, y, w = ctx.saved_tensors
        g = p.scatter_add(0, y[None], torch.full((1, y.numel()), -1.0, dtype=p.dtype))  # softmax - onehot
        return (g * (w * grad)).T, None, None


def _mixed_loss(u: torch.Tensor, px: PixelSet) -> torch.Tensor:
    """Weighted mean cross-entropy from per-token logits u [M, K] (bilinear mix, then masked CE)."""
    s, s_t = px.mix_matrices()
    return _WeightedCrossEntropy.apply(_BilinearMix.apply(u, s, s_t), px.y, px.weight / px.weight.sum())


def pixel_logits(head: LinearHead, px: PixelSet) -> torch.Tensor:
    """[N, K] logits at the labelled pixels: the head on each touched token, then the bilinear mix."""
    s, s_t = px.mix_matrices()
    return _BilinearMix.apply(head.logits_flat(px.tokens), s, s_t)


def pixel_loss(head: LinearHead, px: PixelSet) -> torch.Tensor:
    """Weighted mean cross-entropy over labelled pixels (Eq. 1 with its mask)."""
    return _mixed_loss(head.logits_flat(px.tokens), px)


def _transfer(prev: LinearHead, head: LinearHead) -> None:
    """Warm start: copy prev's function onto head's new feature statistics, exactly, for shared classes."""
    k = min(prev.num_classes, head.num_classes)
    w_prev = prev.conv.weight.detach().view(prev.num_classes, -1)[:k]
    ratio = head.std / prev.std
    w_new = w_prev * ratio
    b_new = prev.conv.bias.detach()[:k] + w_prev @ ((head.mean - prev.mean) / prev.std)
    with torch.no_grad():
        head.conv.weight.view(head.num_classes, -1)[:k] = w_new
        head.conv.bias[:k] = b_new


def make_optimizer(params: list[torch.Tensor], config: TrainConfig) -> torch.optim.LBFGS:
    """Full-batch L-BFGS with a strong-Wolfe line search: the head's problem is convex, so this converges in
    tens of iterations, deterministically. Benchmarks build their baselines with the same settings."""
    return torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=config.max_iter,
        tolerance_grad=1e-9,
        tolerance_change=config.tolerance,
        history_size=20,
        line_search_fn="strong_wolfe",
    )


def train_head(
    images: Sequence[LabelledImage] | PixelSet,
    num_classes: int,
    config: TrainConfig = TrainConfig(),
    init: LinearHead | None = None,
) -> TrainResult:
    """Fit a LinearHead with full-batch L-BFGS (the problem is convex, so this converges in tens of
    iterations and is deterministic)."""
    start = time.perf_counter()
    px = images if isinstance(images, PixelSet) else gather(images, num_classes, config)
    if len(px.pixel_counts) < 2:
        only = next(iter(px.pixel_counts))
        raise TrainingError(
            f"labels cover only one class (index {only}); label at least two classes (e.g. object and "
            "background) so the head has something to separate"
        )
    head = LinearHead(px.tokens.shape[1], num_classes)
    head.set_statistics(px.mean, px.std)
    if init is not None and config.warm_start and init.dim == head.dim:
        _transfer(init, head)
    weight = head.conv.weight.view(num_classes, -1)
    params = [head.conv.weight, head.conv.bias]
    # Tokens are fixed: standardise them once instead of in every step.
    z = ((px.tokens - head.mean) / head.std).contiguous()
    opt = make_optimizer(params, config)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=False)
        u = torch.addmm(head.conv.bias, z, weight.T)
        loss = _mixed_loss(u, px) + 0.5 * config.weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        final = float(pixel_loss(head, px))
    iterations = int(opt.state[opt._params[0]].get("n_iter", 0))
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
        up = F.interpolate(logits, size=im.features.original_size, mode="bilinear", align_corners=False)
        target = torch.from_numpy(np.asarray(im.labels, dtype=np.int64)).unsqueeze(0)
        ce = F.cross_entropy(up, target, weight=class_weight, ignore_index=IGNORE, reduction="none")
        mask = target != IGNORE
        w = class_weight[target.clamp(max=head.num_classes - 1)] if class_weight is not None else torch.ones_like(ce)
        total = total + ce[mask].sum()
        denom = denom + (w * mask).sum()
    return total / denom
