"""The paper's training recipe ("Implementation Details"), with the backbone in the loop.

SGD with momentum 0.9, learning rate 0.001, batch 10, 20,000 iterations; every batch is freshly augmented
(random scale, 448 x 448 crop, horizontal flip, colour jitter) and run through the backbone (bf16 on CUDA).
The loss is Eq. 1: the head's logits bilinearly upsampled to the crop, pixel-wise cross-entropy over the
labelled pixels (255 = unlabelled is masked out), averaged (class-weighted) over the labelled pixels of the
batch.
The backbone is frozen (the paper's method) unless `finetune` is set (Table 4's "Tuning" column), in which
case it trains too, with its own smaller learning rate, and is saved next to the head.

The objective is by default the interactive trainer's (core.train): Eq. 1 with each class weighted by
total / (classes present x its labelled pixels), counted once over the training labels, plus weight decay
1e-3 on the head's weights (not its bias); `--no-class-balance --weight-decay 0` is the paper's literal,
unweighted Eq. 1. The paper gives no schedule, weight decay or jitter strengths; the defaults here (constant
learning rate, scale 0.5-2.0 around a 448-pixel long side, torchvision-style jitter 0.4/0.4/0.4/0.1 with
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

import copy
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from core.backbone import Backbone, _file_digest, vit_tokens
from core.features import PatchFeatures, TokenMoments, preprocess, upsample_logits
from core.head import HeadMeta, LinearHead, save_head
from core.labels import IGNORE
from core.loss import masked_cross_entropy
from core.metrics import ConfusionMatrix, SegmentationScores
from core.train import class_weights
from experiments.checkpoints import (
    CHECKPOINT_FILE,
    HISTORY_FILE,
    LOSS_PLOT,
    check_resumable,
    plot_loss,
    save_checkpoint,
)
from experiments.config import ProtocolConfig, ProtocolError
from experiments.data import CropDataset, IterationBatches
from experiments.distributed import DistContext, all_sum, setup_distributed

log = logging.getLogger(__name__)

BACKBONE_FILE = "backbone.safetensors"


# ----------------------------------------------------------------------------------------------------------
# model


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
        return upsample_logits(logits, x.shape[-2:])


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
    moments = None
    for i in pick:
        rgb, _ = data.load(i)
        x = preprocess(rgb, long_side, model.probeseg_spec.input).unsqueeze(0).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            t = vit_tokens(model, x).float()
        one = TokenMoments.of(t[0].reshape(t.shape[1], -1).cpu())
        moments = one if moments is None else moments + one
    return moments.mean_std()


def _class_weight(data: CropDataset, num_classes: int, device: torch.device) -> torch.Tensor:
    """core.train's class-balance weights from the labelled pixels of every training label map (one pass
    over the label files; the images are not decoded)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for i in range(len(data)):
        labels = data.labels_only(i)
        counts += np.bincount(labels[labels != IGNORE].ravel(), minlength=num_classes)[:num_classes]
    if not counts.any():
        raise ProtocolError("the training labels hold no labelled pixel; check --labels and the split")
    return torch.from_numpy(class_weights(counts)).to(device)


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


def _optimizer(head: LinearHead, model: nn.Module, config: ProtocolConfig) -> torch.optim.SGD:
    # Weight decay on the head's weights only, as core.train's penalty (the bias is free there too).
    params = [
        {
            "params": [head.conv.weight],
            "lr": config.lr,
            "base_lr": config.lr,
            "weight_decay": config.weight_decay,
        },
        {"params": [head.conv.bias], "lr": config.lr, "base_lr": config.lr, "weight_decay": 0.0},
    ]
    if config.finetune:
        params.append(
            {
                "params": [p for p in model.parameters() if p.requires_grad],
                "lr": config.backbone_lr,
                "base_lr": config.backbone_lr,
            }
        )
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=0.0)


def _resume_or_start(
    ckpt_path: Path,
    config: ProtocolConfig,
    head: LinearHead,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: CropDataset,
    ctx: DistContext,
) -> tuple[int, list]:
    """Load the checkpoint when resuming (returns its iteration and loss history), else set the head's
    feature statistics for a fresh start."""
    if config.resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=ctx.device, weights_only=True)
        check_resumable(state["config"], config, ckpt_path)
        head.load_state_dict(state["head"])
        if config.finetune:
            model.load_state_dict(state["backbone"])
        optimizer.load_state_dict(state["optimizer"])
        if ctx.is_main:
            log.info(
                "resuming %s at iteration %d of %d", ckpt_path, int(state["iteration"]), config.iterations
            )
        return int(state["iteration"]), list(state["history"])
    mean, std = feature_statistics(
        model, data, config.stats_images, config.base_long_side, ctx.device, config.amp, config.seed
    )
    head.set_statistics(mean, std)
    return 0, []


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
    data = CropDataset(dataset, ids, labels_dir, config, backbone.spec.input)
    device = ctx.device
    num_classes = len(dataset.classes)

    model = backbone.model
    if config.finetune:  # never alter the caller's frozen backbone
        model = copy.deepcopy(model).requires_grad_(True).train()
    model = model.to(device)
    head = LinearHead(backbone.spec.embed_dim, num_classes).to(device)
    segmenter = Segmenter(model, head, config.finetune, config.amp)

    optimizer = _optimizer(head, model, config)
    class_weight = _class_weight(data, num_classes, device) if config.class_balance else None
    ckpt_path = out / CHECKPOINT_FILE
    start_iter, history = _resume_or_start(ckpt_path, config, head, model, optimizer, data, ctx)

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
    bar = _progress_bar(config, start_iter) if progress and ctx.is_main else None
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
        ce_sum, labelled = masked_cross_entropy(logits, y, class_weight)  # Eq. 1 (see the module docstring)
        counts = all_sum(
            torch.tensor([float(ce_sum.detach()), float(labelled)], dtype=torch.float64, device=device), ctx
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
            save_checkpoint(ckpt_path, it, head, model, optimizer, history, config)
            plot_loss(history, out / LOSS_PLOT)
    if bar is not None:
        bar.close()

    head_cpu = copy.deepcopy(head).cpu().eval().requires_grad_(False)
    meta = _meta(dataset, labels_dir, split, backbone, config, it, history, ctx, start_time, out)
    if ctx.is_main:
        save_checkpoint(ckpt_path, it, head, model, optimizer, history, config)
        meta = _write_outputs(out, head_cpu, model, meta, history, backbone, config)
    if ctx.enabled:
        dist.barrier()
    return head_cpu, meta.to_dict(), history


def _progress_bar(config: ProtocolConfig, start_iter: int):  # -> a tqdm bar
    from tqdm import tqdm

    return tqdm(
        total=config.iterations,
        initial=start_iter,
        desc="train (paper protocol)",
        unit="it",
        dynamic_ncols=True,
    )


def _write_outputs(
    out: Path,
    head: LinearHead,
    model: nn.Module,
    meta: HeadMeta,
    history: list,
    backbone: Backbone,
    config: ProtocolConfig,
) -> HeadMeta:
    """The head (and a fine-tuned backbone), the loss history and its plot (rank 0); the record written."""
    if config.finetune:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(out / BACKBONE_FILE))
        meta = meta.but(
            weights_id=f"file:{BACKBONE_FILE}:{_file_digest(out / BACKBONE_FILE)}",
            train={**meta.train, "backbone_file": BACKBONE_FILE},
        )
    save_head(out, head, meta)
    (out / HISTORY_FILE).write_text(json.dumps(history, indent=1))
    plot_loss(
        history, out / LOSS_PLOT, f"{backbone.spec.name} {'fine-tuned' if config.finetune else 'frozen'}"
    )
    return meta


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
        x = preprocess(rgb, long_side, model.probeseg_spec.input).unsqueeze(0).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            tokens = vit_tokens(model, x).float()
        feats = PatchFeatures(
            tokens=tokens[0].cpu(), resized_size=tuple(x.shape[2:]), original_size=rgb.shape[:2]
        )
        pred = predict(head_cpu, feats).labels
        cm.update(dataset.ground_truth(image_id, rgb.shape[:2]), pred)
    return cm.scores()
