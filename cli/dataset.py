"""`train`, `evaluate` and `predict` on folders in PASCAL VOC layout (the paper's setting)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cli.commands import help_of
from cli.protocol_args import add_protocol_arguments
from core.config import RESOLUTION_HELP, FeatureConfig, TrainConfig
from core.errors import InputError

if TYPE_CHECKING:  # the run functions import these (torch, timm) when they run: `--help` needs none of them
    from core.cache import FeatureStore
    from core.head import HeadMeta
    from core.predict import Predictor
    from core.voc import VocDataset

log = logging.getLogger("probeseg")

LABEL_KINDS = ("scribble", "point", "dense")


def default_cache_dir() -> Path:
    return Path(os.environ.get("PROBESEG_CACHE", Path.home() / ".cache" / "probeseg" / "features"))


def _add_backbone_args(p: argparse.ArgumentParser, weights_default: str | None) -> None:
    p.add_argument(
        "--backbone",
        default=None,
        help="dinov2_vits14 (CPU default), dinov2_vitb14 (GPU default), or dino_*, ibot_*, dinov3_* ones",
    )
    p.add_argument(
        "--weights",
        default=weights_default,
        help="hub (timm weights from the Hugging Face cache), random (testing only) or a checkpoint path"
        + ("" if weights_default else "; default: the weights the head was trained with"),
    )
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--cache-dir", type=Path, default=None, help="feature cache (default ~/.cache/probeseg/features)"
    )
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached features")
    p.add_argument("--batch-size", type=int, default=None, help="images per backbone forward (default 8)")
    p.add_argument(
        "--resolution",
        "--long-side",
        dest="resolution",
        default=None,
        help=RESOLUTION_HELP + ("" if weights_default else "; default: the head's own"),
    )


def _add_edges_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--edges",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="class boundaries follow the image's edges (core.edges; default on); --no-edges: the plain "
        "bilinear upsampling of the patch-grid scores",
    )


def _predictor(args: argparse.Namespace) -> Predictor:
    from core.edges import EdgeConfig
    from core.predict import Predictor

    return Predictor(edges=EdgeConfig() if args.edges else None)


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
    _add_backbone_args(t, "hub")
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

    e = sub.add_parser("evaluate", help=help_of("evaluate"))
    e.add_argument(
        "--data", required=True, type=Path, help="dataset folder (JPEGImages/, SegmentationClass/)"
    )
    e.add_argument("--head", required=True, type=Path, help="folder written by train")
    e.add_argument("--split", default="val", help="split to score (default val)")
    e.add_argument(
        "--json", type=Path, default=None, help="where to write the scores (default HEAD/eval-SPLIT.json)"
    )
    _add_backbone_args(e, None)
    _add_edges_arg(e)
    e.set_defaults(func=run_evaluate)

    p = sub.add_parser("predict", help=help_of("predict"))
    p.add_argument("--head", required=True, type=Path, help="folder written by train")
    p.add_argument("--images", required=True, nargs="+", type=Path, help="a folder of images or image files")
    p.add_argument("--out", required=True, type=Path, help="folder for the prediction PNGs (one per image)")
    p.add_argument(
        "--coco",
        type=Path,
        default=None,
        help="also write the predictions to this COCO JSON file (one RLE annotation per image and class)",
    )
    p.add_argument(
        "--coco-background",
        action="store_true",
        help="with --coco: make the background class a COCO category too (default: objects only)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip images whose prediction PNG is already in --out (a run that was stopped goes on)",
    )
    _add_backbone_args(p, None)
    _add_edges_arg(p)
    p.set_defaults(func=run_predict)

    f = sub.add_parser(
        "features",
        help=help_of("features"),
        description="Compute and cache the backbone features of a folder of images (the cache train, "
        "evaluate and predict read). Under torchrun (`torchrun --nproc_per_node N app.py features ...`) "
        "the processes split the images; images already cached are skipped, so a stopped run goes on.",
    )
    f.add_argument("--images", required=True, nargs="+", type=Path, help="a folder of images or image files")
    _add_backbone_args(f, "hub")
    f.set_defaults(func=run_features)

    m = sub.add_parser(
        "simulate",
        help=help_of("simulate"),
        description="A simulated annotator labels the training split one scribble at a time (never "
        "across a ground-truth boundary), the head is retrained after each as in the app, and held-out "
        "mIoU is recorded: DIR/simulation.json, DIR/simulation.png and a table of the strokes each "
        "strategy needs to reach 90 % and 95 % of the mIoU of training on the full ground truth.",
    )
    m.add_argument(
        "--data", required=True, type=Path, help="dataset folder (JPEGImages/, SegmentationClass/)"
    )
    m.add_argument("--split", default="train", help="split the annotator labels (default train)")
    m.add_argument(
        "--val-split", default="val", help="held-out split scored after every stroke (default val)"
    )
    m.add_argument(
        "--strategy",
        nargs="+",
        default=["random", "uncertainty", "error", "refine"],
        choices=["random", "uncertainty", "error", "refine", "lookahead"],
        help="strategies to run (default the first four; lookahead, an oracle that tries every segment "
        "against the held-out images before each stroke, is slow and must be asked for)",
    )
    m.add_argument("--budget", type=int, default=100, help="actions per strategy (default 100)")
    m.add_argument(
        "--stroke-px",
        type=int,
        default=40,
        help="centre-line pixels of one scribble (default 40; 1 simulates clicks)",
    )
    m.add_argument("--seed", type=int, default=0, help="seed of the simulated annotator (default 0)")
    m.add_argument("--out", required=True, type=Path, help="folder for simulation.json and simulation.png")
    _add_backbone_args(m, "hub")
    _add_edges_arg(m)
    m.set_defaults(func=run_simulate)

    x = sub.add_parser(
        "export-onnx",
        help=help_of("export-onnx"),
        description="One ONNX graph: a normalised float32 image [1, 3, H, W] (H, W multiples of 14, "
        "dynamic) to class logits [1, K, H, W]; with --head-only, tokens [1, C, h, w] to logits "
        "[1, K, h, w]. The preprocessing and classes are in the model's metadata (key 'probeseg').",
    )
    x.add_argument(
        "--head", required=True, type=Path, help="folder written by train (or a web-app head export)"
    )
    x.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    x.add_argument("--head-only", action="store_true", help="only the 1x1 head on patch tokens (no backbone)")
    x.add_argument(
        "--max-side",
        type=int,
        default=None,
        help="largest input height or width in pixels the graph accepts, a multiple of the backbone's patch "
        "(default: the largest up to 2048: 2044 for DINOv2's 14 px, 2048 for 16 and 8)",
    )
    _add_backbone_args(x, None)
    x.set_defaults(func=run_export_onnx)


def _features_config(args: argparse.Namespace, head: HeadMeta | None = None) -> FeatureConfig:
    """The resolution a command computes features at: --resolution, else the head's (a head applied at
    another resolution works: its grid is just finer or coarser; said on stderr), else auto."""
    if args.resolution is None:
        cfg = head.feature_config if head is not None else FeatureConfig.parse("auto")
    else:
        cfg = FeatureConfig.parse(args.resolution)
        if head is not None and cfg.resolution != head.feature_config.resolution:
            log.warning(
                "the head was trained at resolution %s; applying it at %s as asked (--resolution)",
                head.feature_config.resolution,
                cfg.resolution,
            )
    return dataclasses.replace(cfg, batch_size=args.batch_size or cfg.batch_size)


def _open_store(
    name: str | None, weights: str, args: argparse.Namespace, features: FeatureConfig
) -> FeatureStore:
    from core.backbone import load_backbone, resolve_device
    from core.backbones import default_backbone_name
    from core.cache import FeatureStore
    from core.features import FeatureExtractor

    device = resolve_device(args.device)
    name = name or default_backbone_name(device.type)
    backbone = load_backbone(name, weights, device)
    note = "  (RANDOM WEIGHTS: for testing only)" if backbone.is_random else ""
    print(f"backbone: {name} [{backbone.weights_id}] on {device}{note}")
    extractor = FeatureExtractor(backbone, features)
    cache = None if args.no_cache else (args.cache_dir or default_cache_dir())
    return FeatureStore(extractor, cache_dir=cache, max_memory_bytes=64 * 2**20)


def _features_in_batches(store: FeatureStore, images, desc: str):
    """Yield (item, rgb, features) streaming through the store in backbone-sized batches, with a bar."""
    from tqdm import tqdm

    step = max(1, store.extractor.config.batch_size)
    with tqdm(total=len(images), desc=desc, unit="img") as bar:
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            rgbs = [load() for _, load in chunk]
            for (item, _), rgb, feats in zip(chunk, rgbs, store.get_many(rgbs), strict=True):
                yield item, rgb, feats
            bar.update(len(chunk))


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
    store = _open_store(args.backbone, args.weights, args, _features_config(args))
    builder = PixelSetBuilder(len(ds.classes), config, total_labelled=total)
    started = time.perf_counter()
    items = [(i, (lambda i=i: ds.image(i))) for i in ids]
    for image_id, rgb, feats in _features_in_batches(store, items, "features"):
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


def _store_for_head(args: argparse.Namespace, meta: HeadMeta) -> FeatureStore:
    weights = args.weights
    finetuned = Path(args.head) / "backbone.safetensors"  # written by `train --protocol paper --finetune`
    if weights is None:
        if finetuned.is_file() and meta.weights_id.startswith("file:"):
            weights = str(finetuned)
        elif meta.weights_id.startswith("random"):
            weights = "random"
        elif meta.weights_id.startswith("hub"):
            weights = "hub"
        else:
            raise InputError(
                f"the head was trained with backbone weights {meta.weights_id}; pass the same file with --weights PATH"
            )
    if args.backbone and args.backbone != meta.backbone:
        raise InputError(
            f"the head was trained on {meta.backbone} features, not {args.backbone}; drop --backbone"
        )
    store = _open_store(meta.backbone, weights, args, _features_config(args, meta))
    if store.extractor.backbone.weights_id != meta.weights_id:
        raise InputError(
            f"the head was trained on features of weights {meta.weights_id} but these are "
            f"{store.extractor.backbone.weights_id}; use the same --weights as for training"
        )
    return store


def run_evaluate(args: argparse.Namespace) -> int:
    from core.head import load_head
    from core.metrics import ConfusionMatrix
    from core.voc import DatasetError, VocDataset

    ds = VocDataset.open(args.data)
    head, meta = load_head(args.head)
    if len(meta.classes) != len(ds.classes):
        raise DatasetError(
            f"the head predicts {len(meta.classes)} classes but {args.data} has {len(ds.classes)}; "
            "evaluate on the dataset the head was trained for"
        )
    ids = ds.ids(args.split)
    store = _store_for_head(args, meta)
    cm = ConfusionMatrix(len(ds.classes))
    items = [(i, (lambda i=i: ds.image(i))) for i in ids]
    predictor = _predictor(args)
    for image_id, rgb, feats in _features_in_batches(store, items, f"evaluating {args.split}"):
        gt = ds.ground_truth(image_id, size=rgb.shape[:2])
        predictor.set_features(feats, rgb)
        cm.update(gt, predictor.predict(head).labels)
    scores = cm.scores()
    print(scores.format_table(list(ds.classes)))
    out = args.json or (args.head / f"eval-{args.split}.json")
    report = {
        "split": args.split,
        "images": len(ids),
        "data": str(args.data),
        **scores.to_dict(list(ds.classes)),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"scores written to {out}")
    return 0


def _image_files(paths: list[Path]) -> list[Path]:
    from core.imageio import IMAGE_SUFFIXES, list_images

    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(list_images(p))
        elif p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: not an image file or folder")
    if not files:
        raise FileNotFoundError(f"no images found in {', '.join(map(str, paths))}")
    return files


def run_predict(args: argparse.Namespace) -> int:
    """Predict every image; under torchrun the ranks split the images (cli.shards) and rank 0 writes the
    COCO file and summary.json from all ranks' PNGs, the same files one process writes."""
    from cli import shards
    from core.head import load_head
    from core.imageio import load_rgb
    from core.labels import write_label_png

    files = _image_files(args.images)
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        raise InputError(
            "two input images share a file name stem; their predictions would overwrite each other"
        )
    head, meta = load_head(args.head)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with shards.process_group(args) as world:
        store = _store_for_head(args, meta)
        mine = shards.shard(files, world)
        todo = [f for f in mine if not (args.resume and (args.out / f"{f.stem}.png").is_file())]
        items = [(f, (lambda f=f: load_rgb(f))) for f in todo]
        desc = f"predicting (rank {world.rank})" if world.enabled else "predicting"
        predictor = _predictor(args)
        for path, rgb, feats in _features_in_batches(store, items, desc):
            predictor.set_features(feats, rgb)
            write_label_png(args.out / f"{path.stem}.png", predictor.predict(head).labels)
        predicted = shards.total(len(todo), world)
        shards.barrier(world)  # every rank's PNGs are written
        if world.is_main:
            _merge_predictions(args, meta, files, predicted, time.perf_counter() - started, world.world_size)
    return 0


def _merge_predictions(args, meta, files, predicted: int, seconds: float, ranks: int) -> None:  # type: ignore[no-untyped-def]
    """summary.json and the COCO file of every image's prediction PNG, in the sorted files' order."""
    from core import coco
    from core.atomic import atomic_write
    from core.labels import read_label_png

    summary = {
        "images": len(files),
        "predicted": predicted,
        "skipped": len(files) - predicted,
        "seconds": round(seconds, 3),
        "ranks": ranks,
        "head": str(args.head),
        "backbone": meta.backbone,
    }
    atomic_write(args.out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
    print(f"wrote {len(files)} palette PNGs to {args.out} ({predicted} predicted, {ranks} process(es))")
    if not args.coco:
        return
    colours = {c.get("index"): c.get("colour") for c in meta.extra.get("classes", [])}  # a web-app export's
    classes = [coco.CocoClass(i, name, colours.get(i)) for i, name in enumerate(meta.classes)]
    info = {
        "description": f"probeseg predictions of {meta.backbone} head {args.head}",
        "head": str(args.head),
    }
    builder = coco.CocoBuilder(classes, info, include_background=args.coco_background)
    for n, path in enumerate(files, start=1):
        labels = read_label_png(args.out / f"{path.stem}.png")
        builder.add(
            {"id": n, "file_name": path.name, "height": labels.shape[0], "width": labels.shape[1]}, labels
        )
    atomic_write(args.coco, json.dumps(builder.document()).encode("utf-8"))
    print(f"wrote {len(builder.annotations)} COCO annotations of {len(files)} images to {args.coco}")


def run_features(args: argparse.Namespace) -> int:
    """Fill the feature cache for a folder of images; under torchrun the ranks split the images."""
    from cli import shards
    from core.imageio import load_rgb

    files = _image_files(args.images)
    if args.no_cache:
        raise InputError("features writes the feature cache; drop --no-cache")
    started = time.perf_counter()
    with shards.process_group(args) as world:
        store = _open_store(args.backbone, args.weights, args, _features_config(args))
        mine = shards.shard(files, world)
        items = [(f, (lambda f=f: load_rgb(f))) for f in mine]
        desc = f"features (rank {world.rank})" if world.enabled else "features"
        for _ in _features_in_batches(store, items, desc):
            pass
        done = shards.total(len(mine), world)
        shards.barrier(world)
        if world.is_main:
            seconds = time.perf_counter() - started
            print(
                f"features of {done} images in {seconds:.1f} s ({done / max(seconds, 1e-9):.2f} images/s, "
                f"{world.world_size} process(es)); cached in {args.cache_dir or default_cache_dir()}"
            )
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.voc import VocDataset
    from experiments import simulate

    ds = VocDataset.open(args.data)
    store = _open_store(args.backbone, args.weights, args, _features_config(args))

    def samples(split: str) -> list:
        items = [(i, (lambda i=i: ds.image(i))) for i in ds.ids(split)]
        return [
            simulate.Sample(feats, ds.ground_truth(i, size=rgb.shape[:2]), rgb if args.edges else None)
            for i, rgb, feats in _features_in_batches(store, items, f"features {split}")
        ]

    train, val = samples(args.split), samples(args.val_split)
    config = simulate.SimConfig(budget=args.budget, stroke_px=args.stroke_px, seed=args.seed)
    with tqdm(total=args.budget * len(args.strategy), desc="simulating", unit="stroke") as bar:
        result = simulate.simulate(
            train, val, len(ds.classes), args.strategy, config, lambda _name, _step: bar.update()
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "simulation.json").write_text(json.dumps(result, indent=1))
    simulate.plot_simulation(result, args.out / "simulation.png")
    print(f"full ground truth: mIoU {100 * result['full_label_miou']:.1f} %")
    print(simulate.table(result))
    print(f"wrote {args.out / 'simulation.json'} and {args.out / 'simulation.png'}")
    return 0


def run_export_onnx(args: argparse.Namespace) -> int:
    from core.head import load_head
    from core.onnx_export import export_onnx

    head, meta = load_head(args.head)
    backbone = None if args.head_only else _store_for_head(args, meta).extractor.backbone
    path = export_onnx(head, meta, args.out, backbone, head_only=args.head_only, max_side=args.max_side)
    what = "head" if args.head_only else f"{meta.backbone} + head"
    print(
        f"wrote {what} ({len(meta.classes)} classes) as ONNX to {path} ({path.stat().st_size / 2**20:.1f} MiB)"
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
