"""`train`: a head on a VOC-layout dataset with imperfect labels (scribbles, points or dense masks), or the paper's
full protocol with --protocol."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cli.backbone_args import (
    add_backbone_args,
    features_config,
    features_in_batches,
    open_store,
)
from cli.commands import help_of
from cli.protocol_args import add_protocol_arguments
from core.config import TrainConfig

if TYPE_CHECKING:  # (torch, timm) imported when a command runs: `--help` needs none of them
    from core.voc import VocDataset


LABEL_KINDS = ("scribble", "point", "dense")


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help=help_of("train"))
    t.add_argument(
        "--data", required=True, type=Path, help="dataset folder (JPEGImages/, ImageSets/Segmentation/)"
    )
    t.add_argument("--labels", required=True, type=Path, help="folder of label PNGs, 255 = unlabelled")
    t.add_argument(
        "--label-kind",
        required=True,
        choices=LABEL_KINDS,
        help="what the label PNGs are: sparse scribbles or points (class-balanced loss) or dense masks",
    )
    t.add_argument("--out", required=True, type=Path, help="folder to write head.safetensors + head.json")
    t.add_argument(
        "--split", default="train", help="ImageSets/Segmentation/SPLIT.txt to train on (default train)"
    )
    add_backbone_args(t, "hub")
    t.add_argument(
        "--max-iter",
        type=int,
        default=TrainConfig.max_iter,
        help=f"L-BFGS iterations (default {TrainConfig.max_iter})",
    )
    t.add_argument("--weight-decay", type=float, default=None, help=f"default {TrainConfig.weight_decay}")
    t.add_argument(
        "--max-pixels", type=int, default=TrainConfig.max_pixels, help="sampling cap for dense masks"
    )
    t.add_argument(
        "--class-balance",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="weight classes by inverse pixel count (default: on for scribble/point, off for dense)",
    )
    t.add_argument("--seed", type=int, default=0, help="seed of the dense-mask pixel sampling (default 0)")
    add_protocol_arguments(t)  # the paper's full recipe (augmentations, SGD, 20k iterations)
    t.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.head import HeadMeta, save_head
    from core.labels import IGNORE
    from core.train import PixelSetBuilder, TrainingError, train_head
    from core.voc import DatasetError, VocDataset

    ds = VocDataset.open(args.data)
    if not args.labels.is_dir():
        raise DatasetError(f"{args.labels}: labels folder not found")
    if getattr(args, "protocol", "fast") == "paper":
        return _run_protocol_train(args, ds)
    ids = ds.ids(args.split)
    balance = args.class_balance if args.class_balance is not None else args.label_kind != "dense"
    config = TrainConfig(
        max_iter=args.max_iter,
        weight_decay=TrainConfig.weight_decay if args.weight_decay is None else args.weight_decay,
        class_balance=balance,
        max_pixels=args.max_pixels,
        seed=args.seed,
    )
    # Sparse label sets often cover only part of a split: images without a label file are skipped, loudly.
    missing = [i for i in ids if not (args.labels / f"{i}.png").is_file()]
    if len(missing) == len(ids):
        raise DatasetError(
            f"{args.labels}: none of the {len(ids)} images of split {args.split!r} has a label PNG there"
        )
    if missing:
        print(
            f"warning: {len(missing)} of {len(ids)} images have no label file in {args.labels} and are skipped "
            f"(first: {missing[0]}.png)"
        )
        ids = [i for i in ids if i not in set(missing)]
    # Pass 1: read every label map once (cheap) to validate it and count pixels for the sampling cap.
    total = 0
    for image_id in tqdm(ids, desc="checking labels", unit="img"):
        total += int((ds.labels(args.labels, image_id) != IGNORE).sum())
    if total == 0:
        raise TrainingError(f"{args.labels}: no labelled pixels in split {args.split!r} (all 255)")
    store = open_store(args.backbone, args.weights, args, features_config(args))
    builder = PixelSetBuilder(len(ds.classes), config, total_labelled=total)
    started = time.perf_counter()
    items = [(i, (lambda i=i: ds.image(i))) for i in ids]
    for image_id, rgb, feats in features_in_batches(store, items, "features"):
        builder.add(feats, ds.labels(args.labels, image_id, size=rgb.shape[:2]), name=str(image_id))
    feature_seconds = time.perf_counter() - started
    result = train_head(builder.build(), len(ds.classes), config)
    spec = store.extractor.backbone.spec
    meta = HeadMeta(
        backbone=spec.name,
        weights_id=store.extractor.backbone.weights_id,
        classes=list(ds.classes),
        long_side=store.extractor.config.long_side if store.extractor.config.scale is None else 0,
        resolution=store.extractor.config.resolution,
        train={
            "label_kind": args.label_kind,
            "split": args.split,
            "images": len(ids),
            "config": config.to_dict(),
            "loss": result.loss,
            "iterations": result.iterations,
            "train_seconds": result.seconds,
            "feature_seconds": feature_seconds,
            "labelled_pixels": {ds.classes[c]: n for c, n in result.pixel_counts.items()},
            "trained_pixels": result.trained_pixels,
        },
    )
    save_head(args.out, result.head, meta)
    print(
        f"trained on {result.trained_pixels:,} of {total:,} labelled pixels in {result.seconds:.2f}s "
        f"({result.iterations} iterations, loss {result.loss:.4f}); head written to {args.out}"
    )
    return 0


def _run_protocol_train(args: argparse.Namespace, ds: VocDataset) -> int:
    """The paper's recipe: the backbone runs on every augmented batch (see experiments.protocol)."""
    from cli.protocol_args import protocol_config_from_args
    from core.backbone import load_backbone, resolve_device
    from core.backbones import default_backbone_name
    from experiments.distributed import distributed_device, is_main_process
    from experiments.protocol import train_protocol

    device = distributed_device() or resolve_device(args.device)  # one device per torchrun process
    name = args.backbone or default_backbone_name(device.type)
    backbone = load_backbone(name, args.weights, device)
    if is_main_process():
        print(f"backbone: {name} [{backbone.weights_id}] on {device}")
    train_protocol(ds, args.labels, args.split, backbone, protocol_config_from_args(args), args.out)
    if is_main_process():
        print(f"head written to {args.out}")
    return 0
