"""What the commands that run a backbone share: its flags, the feature store, streaming features in batches,
the head's own store, the predictor (the boundary rule on or off), the image files of a folder."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import RESOLUTION_HELP, FeatureConfig
from core.errors import InputError

if TYPE_CHECKING:  # (torch, timm) imported when a command runs: `--help` needs none of them
    from core.cache import FeatureStore
    from core.head import HeadMeta
    from core.predict import Predictor

log = logging.getLogger("probeseg")


def default_cache_dir() -> Path:
    return Path(os.environ.get("PROBESEG_CACHE", Path.home() / ".cache" / "probeseg" / "features"))


def add_backbone_args(p: argparse.ArgumentParser, weights_default: str | None) -> None:
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


def add_edges_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--edges",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="class boundaries follow the image's edges (core.edges; default on); --no-edges: the plain "
        "bilinear upsampling of the patch-grid scores",
    )


def make_predictor(args: argparse.Namespace) -> Predictor:
    from core.edges import EdgeConfig
    from core.predict import Predictor

    return Predictor(edges=EdgeConfig() if args.edges else None)


def features_config(args: argparse.Namespace, head: HeadMeta | None = None) -> FeatureConfig:
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


def open_store(
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


def features_in_batches(store: FeatureStore, images, desc: str):
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


def store_for_head(args: argparse.Namespace, meta: HeadMeta) -> FeatureStore:
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
    store = open_store(meta.backbone, weights, args, features_config(args, meta))
    if store.extractor.backbone.weights_id != meta.weights_id:
        raise InputError(
            f"the head was trained on features of weights {meta.weights_id} but these are "
            f"{store.extractor.backbone.weights_id}; use the same --weights as for training"
        )
    return store


def image_files(paths: list[Path]) -> list[Path]:
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
