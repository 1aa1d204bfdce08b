"""The paper's training recipe ("Implementation Details"), with the backbone in the loop.

SGD with momentum 0.9, learning rate 0.001, batch 10, 20,000 iterations; every batch is freshly augmented
(random scale, 448 x 448 crop, horizontal flip, colour jitter) and run through the backbone (bf16 on CUDA).
The loss is Eq. 1 literally: the head's logits bilinearly upsampled to the crop, pixel-wise cross-entropy
over the labelled pixels (255 = unlabelled is masked out), averaged over the labelled pixels of the batch.
The backbone is frozen (the paper's method) unless `finetune` is set (Table 4's "Tuning" column), in which
case it trains too, with its own smaller learning rate, and is saved next to the head.

The paper gives no schedule, weight decay or jitter strengths; the defaults here (constant learning rate, no
weight decay, scale 0.5-2.0 around a 448-pixel long side, torchvision-style jitter 0.4/0.4/0.4/0.1 with
probability 0.8) are stated so they can be changed. The head standardises its input features with statistics
of the frozen backbone's tokens on up to `stats_images` training images (a fixed affine map: it does not
change what a linear head can express, only how well SGD is conditioned).

Data order and augmentation are functions of (seed, iteration) only: each sample's augmentation is drawn
from a generator seeded by (seed, epoch * N + index), and batches come from torch's DistributedSampler with
the same seed. So a run resumed from a checkpoint continues exactly, and a DistributedDataParallel run under
`torchrun --nproc_per_node N` (each process takes batch / N samples of every global batch) computes the same
head as one process, up to floating-point summation order.

Outputs (rank 0 only): head.safetensors + head.json (core.head format), backbone.safetensors (fine-tuning
only; loadable with `--weights <out>/backbone.safetensors`), checkpoint.pt (for resume), history.json and
loss.png (the loss curve).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from core.backbone import PATCH_SIZE, Backbone, _file_digest
from core.features import IMAGENET_MEAN, IMAGENET_STD, PatchFeatures, preprocess
from core.head import HeadMeta, LinearHead, save_head
from core.labels import IGNORE
from core.metrics import ConfusionMatrix, SegmentationScores

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.json"
LOSS_PLOT = "loss.png"
BACKBONE_FILE = "backbone.safetensors"
SCHEDULES = ("constant", "poly", "cosine")
_MEAN_PIXEL = tuple(int(round(255 * m)) for m in IMAGENET_MEAN)  # padding colour: 0 after normalisation


class ProtocolError(ValueError):
    pass


@dataclass(frozen=True)
class ProtocolConfig:
    iterations: int = 20_000
    batch_size: int = 10  # global batch, split evenly over DistributedDataParallel processes
    lr: float = 0.001  # head learning rate
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | poly (power 0.9) | cosine
    crop: int = 448  # square training crop, a multiple of 14
    base_long_side: int = 448  # scale 1.0 resizes the image's long side to this; also the inference size
    scale_range: tuple[float, float] = (0.5, 2.0)  # random scale factor, uniform in this range
    flip: bool = True  # horizontal flip with probability 0.5
    color_jitter: tuple[float, float, float, float] = (
        0.4,
        0.4,
        0.4,
        0.1,
    )  # brightness, contrast, saturation, hue
    jitter_prob: float = 0.8  # chance a sample is colour-jittered
    finetune: bool = False  # train the backbone too (Table 4, "Tuning")
    backbone_lr: float = 1e-5  # backbone learning rate when fine-tuning
    seed: int = 0
    checkpoint_every: int = 1000  # iterations between checkpoints (0: only at the end)
    resume: bool = True  # continue from <out>/checkpoint.pt when present
    log_every: int = 20  # iterations per loss-history point
    workers: int = 4  # data-loading processes per training process
    stats_images: int = 100  # training images used for the head's feature standardisation
    amp: bool = True  # bf16 autocast for the backbone on CUDA

    def __post_init__(self):
        object.__setattr__(self, "scale_range", tuple(float(v) for v in self.scale_range))
        object.__setattr__(self, "color_jitter", tuple(float(v) for v in self.color_jitter))
        if self.iterations < 1 or self.batch_size < 1:
            raise ProtocolError("iterations and batch size must be >= 1")
        if self.crop < PATCH_SIZE or self.crop % PATCH_SIZE:
            raise ProtocolError(
                f"--crop must be a multiple of the patch size {PATCH_SIZE} (e.g. 448), got {self.crop}"
            )
        if self.base_long_side < PATCH_SIZE:
            raise ProtocolError(f"--base-long-side must be >= {PATCH_SIZE}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ProtocolError(f"--scale-range needs 0 < low <= high, got {lo} {hi}")
        if self.schedule not in SCHEDULES:
            raise ProtocolError(f"unknown schedule {self.schedule!r}; choose {', '.join(SCHEDULES)}")
        if len(self.color_jitter) != 4 or min(self.color_jitter) < 0 or self.color_jitter[3] > 0.5:
            raise ProtocolError(
                "--color-jitter takes 4 values >= 0: brightness contrast saturation hue (hue <= 0.5)"
            )
        if self.lr <= 0 or self.backbone_lr < 0:
            raise ProtocolError("learning rates must be positive")

    def to_dict(self) -> dict:
        return asdict(self)


# Settings that do not change the trajectory; a checkpoint may be resumed with other values of these.
_RESUMABLE = {"iterations", "checkpoint_every", "resume", "log_every", "workers"}


# ----------------------------------------------------------------------------------------------------------
# distributed


@dataclass(frozen=True)
class DistContext:
    world_size: int
    rank: int
    local_rank: int
    device: torch.device
    initialised_here: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def distributed_device() -> torch.device | None:
    """The device this process should use under torchrun (cuda:LOCAL_RANK), or None when not distributed
    or without CUDA; pass it to load_backbone so N processes do not all start on cuda:0."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return None


def is_main_process() -> bool:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def setup_distributed(default_device: torch.device) -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): nccl on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(1, 0, 0, default_device, False)
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if default_device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        here = True
    return DistContext(dist.get_world_size(), dist.get_rank(), local, device, here)


def _all_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


# ----------------------------------------------------------------------------------------------------------
# data


def augment(
    rgb: np.ndarray, labels: np.ndarray, rng: np.random.Generator, config: ProtocolConfig
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
    x = torch.tensor(_MEAN_PIXEL, dtype=torch.uint8).view(3, 1, 1).repeat(1, c, c)
    y = torch.full((c, c), IGNORE, dtype=torch.int64)
    rh, rw = region.shape[1:]
    x[:, :rh, :rw] = region
    y[:rh, :rw] = torch.from_numpy(lab[y0 : y0 + c, x0 : x0 + c].astype(np.int64))
    if flip:
        x, y = x.flip(-1), y.flip(-1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x.float() / 255.0 - mean) / std, y


class CropDataset(torch.utils.data.Dataset):
    """Index by key = epoch * N + i: image i, augmented with a generator seeded by (seed, key)."""

    def __init__(self, dataset, ids: list[str], labels_dir: str | os.PathLike | None, config: ProtocolConfig):
        self.dataset = dataset
        self.ids = ids
        self.labels_dir = labels_dir
        self.config = config

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image_id = self.ids[i]
        rgb = self.dataset.image(image_id)
        if self.labels_dir is None:
            labels = self.dataset.ground_truth(image_id, rgb.shape[:2])
        else:
            labels = self.dataset.labels(self.labels_dir, image_id, rgb.shape[:2])
        return rgb, labels

    def __getitem__(self, key: int):
        rgb, labels = self.load(key % len(self.ids))
        rng = np.random.default_rng([self.config.seed & 0xFFFFFFFF, int(key)])
        return augment(rgb, labels, rng, self.config)


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


# ----------------------------------------------------------------------------------------------------------
# model


def vit_tokens(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Patch tokens with gradient (for fine-tuning): [B, 3, H, W] -> [B, C, H/14, W/14]."""
    b, _, h, w = x.shape
    tokens = model.forward_features(x)[:, model.num_prefix_tokens :]
    return tokens.transpose(1, 2).reshape(b, -1, h // PATCH_SIZE, w // PATCH_SIZE)


class Segmenter(nn.Module):
    """Backbone + linear head; logits upsampled to the input size (Eq. 1's y-hat)."""

    def __init__(self, backbone: nn.Module, head: LinearHead, finetune: bool, amp: bool):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.finetune = finetune
        self.amp = amp

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        use_amp = self.amp and x.device.type == "cuda"
        with torch.set_grad_enabled(self.finetune and torch.is_grad_enabled()):
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_amp):
                t = vit_tokens(self.backbone, x)
        return t.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.tokens(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def lr_factor(config: ProtocolConfig, it: int) -> float:
    p = min(1.0, it / config.iterations)
    if config.schedule == "poly":
        return (1 - p) ** 0.9
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * p))
    return 1.0


@torch.no_grad()
def feature_statistics(
    model: nn.Module,
    data: CropDataset,
    count: int,
    long_side: int,
    device: torch.device,
    amp: bool,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of patch tokens over a seeded sample of training images at the inference size."""
    n = len(data)
    pick = sorted(np.random.default_rng(seed).choice(n, size=min(count, n), replace=False).tolist())
    s1 = s2 = None
    tokens_seen = 0
    for i in pick:
        rgb, _ = data.load(i)
        x = preprocess(rgb, long_side).unsqueeze(0).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            t = vit_tokens(model, x).float()
        flat = t[0].reshape(t.shape[1], -1).double()
        s1 = flat.sum(1) if s1 is None else s1 + flat.sum(1)
        s2 = (flat**2).sum(1) if s2 is None else s2 + (flat**2).sum(1)
        tokens_seen += flat.shape[1]
    mean = s1 / tokens_seen
    std = (s2 / tokens_seen - mean**2).clamp(min=0).sqrt()
    return mean.float(), std.float()


# ----------------------------------------------------------------------------------------------------------
# checkpoints and outputs


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _check_resumable(saved: dict, config: ProtocolConfig, path: Path) -> None:
    now = config.to_dict()
    diffs = []
    for k, v in saved.items():
        if k in _RESUMABLE or k not in now:
            continue
        a = list(v) if isinstance(v, list | tuple) else v
        b = list(now[k]) if isinstance(now[k], list | tuple) else now[k]
        if a != b:
            diffs.append(f"{k}: {a} then, {b} now")
    if diffs:
        raise ProtocolError(
            f"{path} was written with other settings ({'; '.join(diffs)}); resume with the same settings, pick "
            "another --out, or pass --no-resume to start over"
        )


def plot_loss(history: list[dict], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    if history:
        ax.plot([h["iteration"] for h in history], [h["loss"] for h in history], lw=1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("masked cross-entropy")
    ax.set_title(title or "training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------
# training


def train_protocol(
    dataset,
    labels_dir: str | os.PathLike | None,
    split: str,
    backbone: Backbone,
    config: ProtocolConfig,
    out_dir: str | os.PathLike,
    progress: bool = True,
) -> tuple[LinearHead, dict, list[dict]]:
    """Train a head (and, with `finetune`, the backbone) with the paper's recipe on `split` of a VOC-layout
    dataset with the labels in `labels_dir` (None: the ground truth). Returns (head on CPU, HeadMeta fields
    as a dict, loss history). Under torchrun every process must call this; only rank 0 writes files."""
    ctx = setup_distributed(backbone.device)
    try:
        return _train(dataset, labels_dir, split, backbone, config, Path(out_dir), progress, ctx)
    finally:
        if ctx.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def _train(
    dataset,
    labels_dir,
    split,
    backbone: Backbone,
    config: ProtocolConfig,
    out: Path,
    progress: bool,
    ctx: DistContext,
):
    start_time = time.perf_counter()
    if config.batch_size % ctx.world_size:
        raise ProtocolError(
            f"--batch-size {config.batch_size} does not split over {ctx.world_size} processes; use a multiple of "
            f"{ctx.world_size}"
        )
    per_rank = config.batch_size // ctx.world_size
    ids = dataset.ids(split)
    _check_label_files(dataset, ids, labels_dir, split)
    data = CropDataset(dataset, ids, labels_dir, config)
    device = ctx.device
    num_classes = len(dataset.classes)

    model = backbone.model
    if config.finetune:  # never alter the caller's frozen backbone
        model = copy.deepcopy(model).requires_grad_(True).train()
    model = model.to(device)
    head = LinearHead(backbone.spec.embed_dim, num_classes).to(device)
    segmenter = Segmenter(model, head, config.finetune, config.amp)

    params = [{"params": list(head.parameters()), "lr": config.lr, "base_lr": config.lr}]
    if config.finetune:
        params.append(
            {
                "params": [p for p in model.parameters() if p.requires_grad],
                "lr": config.backbone_lr,
                "base_lr": config.backbone_lr,
            }
        )
    optimizer = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )

    ckpt_path = out / CHECKPOINT_FILE
    start_iter, history = 0, []
    if config.resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        _check_resumable(state["config"], config, ckpt_path)
        head.load_state_dict(state["head"])
        if config.finetune:
            model.load_state_dict(state["backbone"])
        optimizer.load_state_dict(state["optimizer"])
        start_iter, history = int(state["iteration"]), list(state["history"])
        if ctx.is_main:
            log.info("resuming %s at iteration %d of %d", ckpt_path, start_iter, config.iterations)
    else:
        mean, std = feature_statistics(
            model, data, config.stats_images, config.base_long_side, device, config.amp, config.seed
        )
        head.set_statistics(mean, std)

    trainable: nn.Module = segmenter
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        trainable = DDP(
            segmenter, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )

    batches = IterationBatches(len(ids), per_rank, ctx, config.seed, start_iter, config.iterations)
    loader = DataLoader(
        data,
        batch_sampler=batches,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    bar = None
    if progress and ctx.is_main:
        from tqdm import tqdm

        bar = tqdm(
            total=config.iterations,
            initial=start_iter,
            desc="train (paper protocol)",
            unit="it",
            dynamic_ncols=True,
        )
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)

    it = start_iter
    window = torch.zeros(2, dtype=torch.float64)  # loss sum, labelled pixels since the last history point
    segmenter.train(config.finetune)
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * lr_factor(config, it)
        logits = trainable(x)
        ce_sum = F.cross_entropy(logits, y, ignore_index=IGNORE, reduction="sum")
        counts = _all_sum(
            torch.tensor(
                [float(ce_sum.detach()), float((y != IGNORE).sum())], dtype=torch.float64, device=device
            ),
            ctx,
        ).cpu()
        total_px = max(counts[1].item(), 1.0)
        if not math.isfinite(counts[0].item()):
            raise ProtocolError(
                f"the loss became {counts[0].item()} at iteration {it + 1}; lower --lr (now {config.lr}) or "
                f"--backbone-lr (now {config.backbone_lr})"
            )
        # DDP averages gradients over processes; scaling by world size makes that the global pixel mean.
        loss = ce_sum * (ctx.world_size / total_px)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        it += 1
        window += counts
        if it % config.log_every == 0 or it == config.iterations:
            history.append(
                {
                    "iteration": it,
                    "loss": float(window[0] / max(window[1].item(), 1.0)),
                    "lr": config.lr * lr_factor(config, it - 1),
                }
            )
            window.zero_()
            if bar is not None:
                bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
        if bar is not None:
            bar.update(1)
        if (
            config.checkpoint_every
            and it % config.checkpoint_every == 0
            and it < config.iterations
            and ctx.is_main
        ):
            _save_checkpoint(ckpt_path, it, head, model, optimizer, history, config)
            plot_loss(history, out / LOSS_PLOT)
    if bar is not None:
        bar.close()

    head_cpu = copy.deepcopy(head).cpu().eval().requires_grad_(False)
    meta = _meta(dataset, labels_dir, split, backbone, config, it, history, ctx, start_time, out)
    if ctx.is_main:
        _save_checkpoint(ckpt_path, it, head, model, optimizer, history, config)
        if config.finetune:
            from safetensors.torch import save_file

            state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
            save_file(state, str(out / BACKBONE_FILE))
            meta.weights_id = f"file:{BACKBONE_FILE}:{_file_digest(out / BACKBONE_FILE)}"
            meta.train["backbone_file"] = BACKBONE_FILE
        save_head(out, head_cpu, meta)
        (out / HISTORY_FILE).write_text(json.dumps(history, indent=1))
        plot_loss(
            history, out / LOSS_PLOT, f"{backbone.spec.name} {'fine-tuned' if config.finetune else 'frozen'}"
        )
    if ctx.enabled:
        dist.barrier()
    return head_cpu, asdict(meta), history


def _check_label_files(dataset, ids: list[str], labels_dir, split: str) -> None:
    folder = Path(labels_dir) if labels_dir is not None else Path(dataset.root) / "SegmentationClass"
    if not folder.is_dir():
        raise ProtocolError(f"{folder}: labels folder not found")
    missing = [i for i in ids if not (folder / f"{i}.png").is_file()]
    if missing:
        raise ProtocolError(
            f"{folder}: no labels for {len(missing)} of the {len(ids)} images of split {split!r} (first: "
            f"{missing[0]}.png); make labels for the whole split (make-labels --split {split}) or train on a "
            "split that lists only labelled images"
        )


def _save_checkpoint(path: Path, it: int, head, model, optimizer, history, config: ProtocolConfig) -> None:
    state = {
        "iteration": it,
        "head": head.state_dict(),
        "optimizer": optimizer.state_dict(),
        "history": history,
        "config": config.to_dict(),
    }
    if config.finetune:
        state["backbone"] = model.state_dict()
    _atomic_save(state, path)


def _meta(
    dataset, labels_dir, split, backbone: Backbone, config, it, history, ctx, start_time, out
) -> HeadMeta:
    return HeadMeta(
        backbone=backbone.spec.name,
        weights_id=backbone.weights_id,
        classes=list(dataset.classes),
        long_side=config.base_long_side,
        train={
            "protocol": "paper",
            "config": config.to_dict(),
            "labels": str(labels_dir) if labels_dir is not None else "ground truth",
            "split": split,
            "iterations_done": it,
            "final_loss": history[-1]["loss"] if history else None,
            "seconds": round(time.perf_counter() - start_time, 3),
            "world_size": ctx.world_size,
            "out_dir": str(out),
        },
    )


# ----------------------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate_model(
    dataset,
    split: str,
    model: nn.Module,
    head: LinearHead,
    long_side: int,
    device: torch.device | str = "cpu",
    amp: bool = True,
    limit: int | None = None,
    progress: bool = True,
) -> SegmentationScores:
    """mIoU of backbone + head on a split at full resolution (logits upsampled bilinearly to each image)."""
    from core.predict import predict

    device = torch.device(device)
    ids = dataset.ids(split)[:limit] if limit else dataset.ids(split)
    cm = ConfusionMatrix(len(dataset.classes))
    head_cpu = head.cpu().eval()
    model = model.to(device).eval()
    iterator = ids
    if progress:
        from tqdm import tqdm

        iterator = tqdm(ids, desc=f"evaluate {split}", unit="img", dynamic_ncols=True)
    for image_id in iterator:
        rgb = dataset.image(image_id)
        x = preprocess(rgb, long_side).unsqueeze(0).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            tokens = vit_tokens(model, x).float()
        feats = PatchFeatures(
            tokens=tokens[0].cpu(), resized_size=tuple(x.shape[2:]), original_size=rgb.shape[:2]
        )
        pred = predict(head_cpu, feats).labels
        cm.update(dataset.ground_truth(image_id, rgb.shape[:2]), pred)
    return cm.scores()


# ----------------------------------------------------------------------------------------------------------
# command-line flags (shared by `train --protocol paper` and `study`)


_FOREIGN = "_protocol_foreign_defaults"


def _add(parser: argparse.ArgumentParser, group, *flags, **kwargs) -> None:
    """Add a flag unless the command already has it. An existing flag is shared (the same meaning), but its
    default belongs to the command's other mode (e.g. `train --batch-size 8` for the fast trainer): that
    default is remembered so that leaving the flag out still means the protocol's default."""
    existing = next(
        (parser._option_string_actions[f] for f in flags if f in parser._option_string_actions), None
    )
    if existing is None:
        group.add_argument(*flags, **kwargs)
        return
    foreign = dict(parser.get_default(_FOREIGN) or {})
    foreign[existing.dest] = existing.default
    parser.set_defaults(**{_FOREIGN: foreign})


def add_protocol_arguments(parser: argparse.ArgumentParser, with_protocol_flag: bool = True) -> None:
    """Add the paper-protocol flags to a command (flags it already defines are left alone)."""
    d = ProtocolConfig()
    g = parser.add_argument_group("paper protocol (--protocol paper)")
    if with_protocol_flag:
        _add(
            parser,
            g,
            "--protocol",
            choices=("fast", "paper"),
            default="fast",
            help="fast: exact L-BFGS on cached features (default); paper: the paper's SGD recipe with the "
            "backbone run on every augmented batch",
        )
    _add(
        parser,
        g,
        "--iterations",
        type=int,
        default=d.iterations,
        help=f"SGD iterations (default {d.iterations})",
    )
    _add(
        parser,
        g,
        "--batch-size",
        type=int,
        default=d.batch_size,
        help=f"global batch, split over torchrun processes (default {d.batch_size})",
    )
    _add(parser, g, "--lr", type=float, default=d.lr, help=f"head learning rate (default {d.lr})")
    _add(parser, g, "--momentum", type=float, default=d.momentum, help=f"SGD momentum (default {d.momentum})")
    _add(parser, g, "--weight-decay", type=float, default=d.weight_decay, help="SGD weight decay (default 0)")
    _add(
        parser,
        g,
        "--schedule",
        choices=SCHEDULES,
        default=d.schedule,
        help="learning-rate schedule (default constant)",
    )
    _add(
        parser,
        g,
        "--crop",
        type=int,
        default=d.crop,
        help=f"training crop, a multiple of 14 (default {d.crop})",
    )
    if "--long-side" not in parser._option_string_actions:  # else the command's --long-side is this setting
        _add(
            parser,
            g,
            "--base-long-side",
            type=int,
            default=d.base_long_side,
            help=f"long side at scale 1.0 and at inference (default {d.base_long_side})",
        )
    _add(
        parser,
        g,
        "--scale-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=d.scale_range,
        help="random scale range (default 0.5 2.0)",
    )
    _add(parser, g, "--no-flip", action="store_true", help="no horizontal flips")
    _add(
        parser,
        g,
        "--color-jitter",
        type=float,
        nargs=4,
        metavar=("B", "C", "S", "H"),
        default=d.color_jitter,
        help="brightness contrast saturation hue jitter (default 0.4 0.4 0.4 0.1; 0 0 0 0 disables)",
    )
    _add(
        parser,
        g,
        "--jitter-prob",
        type=float,
        default=d.jitter_prob,
        help="chance of colour jitter (default 0.8)",
    )
    _add(
        parser,
        g,
        "--finetune",
        action="store_true",
        help="train the backbone too (the paper's Table 4 ablation)",
    )
    _add(
        parser,
        g,
        "--backbone-lr",
        type=float,
        default=d.backbone_lr,
        help=f"backbone learning rate with --finetune (default {d.backbone_lr})",
    )
    _add(
        parser, g, "--seed", type=int, default=d.seed, help="seed of data order and augmentation (default 0)"
    )
    _add(
        parser,
        g,
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        help=f"iterations between checkpoints (default {d.checkpoint_every})",
    )
    _add(
        parser,
        g,
        "--no-resume",
        action="store_true",
        help="ignore an existing checkpoint in --out and start over",
    )
    _add(
        parser,
        g,
        "--workers",
        type=int,
        default=d.workers,
        help=f"data-loading workers per process (default {d.workers})",
    )
    _add(
        parser,
        g,
        "--log-every",
        type=int,
        default=d.log_every,
        help="iterations per loss-curve point (default 20)",
    )


def protocol_config_from_args(args: argparse.Namespace, **overrides) -> ProtocolConfig:
    """The ProtocolConfig of parsed flags (see add_protocol_arguments); `overrides` win."""
    d = ProtocolConfig()
    foreign = getattr(args, _FOREIGN, None) or {}

    def get(dest: str, default):
        value = getattr(args, dest, default)
        if value is None or (dest in foreign and value == foreign[dest]):
            return default  # left at the command's default for its other mode: use the paper's
        return value

    long_side = get("base_long_side", None)
    if long_side is None:
        long_side = getattr(args, "long_side", None) or d.base_long_side
    values = {
        "iterations": get("iterations", d.iterations),
        "batch_size": get("batch_size", d.batch_size),
        "lr": get("lr", d.lr),
        "momentum": get("momentum", d.momentum),
        "weight_decay": get("weight_decay", d.weight_decay),
        "schedule": get("schedule", d.schedule),
        "crop": get("crop", d.crop),
        "base_long_side": long_side,
        "scale_range": tuple(get("scale_range", d.scale_range)),
        "flip": not getattr(args, "no_flip", False),
        "color_jitter": tuple(get("color_jitter", d.color_jitter)),
        "jitter_prob": get("jitter_prob", d.jitter_prob),
        "finetune": bool(getattr(args, "finetune", False)),
        "backbone_lr": get("backbone_lr", d.backbone_lr),
        "seed": get("seed", d.seed),
        "checkpoint_every": get("checkpoint_every", d.checkpoint_every),
        "resume": not getattr(args, "no_resume", False),
        "workers": get("workers", d.workers),
        "log_every": get("log_every", d.log_every),
    }
    values.update(overrides)
    names = {f.name for f in fields(ProtocolConfig)}
    return ProtocolConfig(**{k: v for k, v in values.items() if k in names})
