"""The protocol's training data: one augmented crop per (seed, key), and the iteration-indexed batches
that make a resumed or DistributedDataParallel run see exactly the same samples."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DistributedSampler, Sampler

from core.config import InputRecipe
from core.features import normalise
from core.labels import IGNORE
from experiments.config import ProtocolConfig, ProtocolError
from experiments.distributed import DistContext


def augment(
    rgb: np.ndarray, labels: np.ndarray, rng: np.random.Generator, config: ProtocolConfig, recipe: InputRecipe
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training sample: random scale around `base_long_side`, pad (mean colour / 255) and random
    crop to crop x crop, colour jitter, horizontal flip. Returns ([3, c, c] normalised, [c, c] int64)."""
    import torchvision.transforms.functional as TF

    H, W = labels.shape
    c = config.crop
    scale = rng.uniform(*config.scale_range) * config.base_long_side / max(H, W)
    nh, nw = max(1, int(round(H * scale))), max(1, int(round(W * scale)))
    img = np.array(Image.fromarray(rgb).resize((nw, nh), Image.Resampling.BILINEAR))
    lab = np.asarray(Image.fromarray(labels).resize((nw, nh), Image.Resampling.NEAREST))
    y0 = int(rng.integers(0, max(nh, c) - c + 1))
    x0 = int(rng.integers(0, max(nw, c) - c + 1))
    jitter = rng.random() < config.jitter_prob
    b, ct, s, h = config.color_jitter
    factors = (
        rng.uniform(max(0.0, 1 - b), 1 + b),
        rng.uniform(max(0.0, 1 - ct), 1 + ct),
        rng.uniform(max(0.0, 1 - s), 1 + s),
        rng.uniform(-h, h),
    )
    order = rng.permutation(4)
    flip = config.flip and rng.random() < 0.5

    region = torch.from_numpy(np.ascontiguousarray(img[y0 : y0 + c, x0 : x0 + c])).permute(2, 0, 1)
    if jitter:
        ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
        for i in order:
            if i < 3 and factors[i] == 1.0 or i == 3 and factors[3] == 0.0:
                continue
            region = ops[i](region, float(factors[i]))
    mean_pixel = [int(round(255 * m)) for m in recipe.mean]  # padding colour: 0 after normalisation
    x = torch.tensor(mean_pixel, dtype=torch.uint8).view(3, 1, 1).repeat(1, c, c)
    y = torch.full((c, c), IGNORE, dtype=torch.int64)
    rh, rw = region.shape[1:]
    x[:, :rh, :rw] = region
    y[:rh, :rw] = torch.from_numpy(lab[y0 : y0 + c, x0 : x0 + c].astype(np.int64))
    if flip:
        x, y = x.flip(-1), y.flip(-1)
    return normalise(x.float() / 255.0, recipe), y


class CropDataset(torch.utils.data.Dataset):
    """Index by key = epoch * N + i: image i, augmented with a generator seeded by (seed, key)."""

    def __init__(
        self,
        dataset,
        ids: list[str],
        labels_dir: str | os.PathLike | None,
        config: ProtocolConfig,
        recipe: InputRecipe,
    ):
        self.dataset = dataset
        self.ids = ids
        self.labels_dir = labels_dir
        self.config = config
        self.recipe = recipe  # the backbone's input (core.backbones)
        if config.crop % recipe.patch:
            raise ProtocolError(
                f"--crop must be a multiple of the backbone's patch size {recipe.patch} (e.g. {recipe.patch * 32}), "
                f"got {config.crop}"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rgb = self.dataset.image(self.ids[i])
        return rgb, self.labels_only(i, rgb.shape[:2])

    def labels_only(self, i: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """Image i's label map (checked against `size` when given), without decoding the image."""
        if self.labels_dir is None:
            return self.dataset.ground_truth(self.ids[i], size)
        return self.dataset.labels(self.labels_dir, self.ids[i], size)

    def __getitem__(self, key: int):
        rgb, labels = self.load(key % len(self.ids))
        rng = np.random.default_rng([self.config.seed & 0xFFFFFFFF, int(key)])
        return augment(rgb, labels, rng, self.config, self.recipe)


class IterationBatches(Sampler[list[int]]):
    """Batches of keys for iterations [start, stop) of one process: DistributedSampler (shuffled, seeded,
    drop_last) shards each epoch's permutation, so the processes' batches together form the global batch."""

    def __init__(self, n: int, per_rank: int, ctx: DistContext, seed: int, start: int, stop: int):
        self.n, self.per_rank, self.ctx, self.seed = n, per_rank, ctx, seed
        self.start, self.stop = start, stop
        self.steps_per_epoch = (n // ctx.world_size) // per_rank
        if self.steps_per_epoch < 1:
            raise ProtocolError(
                f"{n} training images cannot fill one batch of {per_rank * ctx.world_size}; lower --batch-size "
                "or add images"
            )

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        it = self.start
        while it < self.stop:
            epoch, offset = divmod(it, self.steps_per_epoch)
            sampler = DistributedSampler(
                range(self.n),
                num_replicas=self.ctx.world_size,
                rank=self.ctx.rank,
                shuffle=True,
                seed=self.seed,
                drop_last=True,
            )
            sampler.set_epoch(epoch)
            idx = list(sampler)
            for b in range(offset, self.steps_per_epoch):
                if it >= self.stop:
                    return
                yield [epoch * self.n + i for i in idx[b * self.per_rank : (b + 1) * self.per_rank]]
                it += 1
