"""`features`: compute and cache the backbone features of a folder (sharded under torchrun)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cli.backbone_args import (
    add_backbone_args,
    default_cache_dir,
    features_config,
    features_in_batches,
    image_files,
    open_store,
)
from cli.commands import help_of
from core.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "features",
        help=help_of("features"),
        description="Compute and cache the backbone features of a folder of images (the cache train, "
        "evaluate and predict read). Under torchrun (`torchrun --nproc_per_node N app.py features ...`) "
        "the processes split the images; images already cached are skipped, so a stopped run goes on.",
    )
    f.add_argument("--images", required=True, nargs="+", type=Path, help="a folder of images or image files")
    add_backbone_args(f, "hub")
    f.set_defaults(func=run_features)


def run_features(args: argparse.Namespace) -> int:
    """Fill the feature cache for a folder of images; under torchrun the ranks split the images."""
    from cli import shards
    from core.imageio import load_rgb

    files = image_files(args.images)
    if args.no_cache:
        raise InputError("features writes the feature cache; drop --no-cache")
    started = time.perf_counter()
    with shards.process_group(args) as world:
        store = open_store(args.backbone, args.weights, args, features_config(args))
        mine = shards.shard(files, world)
        items = [(f, (lambda f=f: load_rgb(f))) for f in mine]
        desc = f"features (rank {world.rank})" if world.enabled else "features"
        for _ in features_in_batches(store, items, desc):
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
