"""`predict`: palette PNG predictions (and optionally COCO JSON) of a head for a folder of images (sharded under
torchrun)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cli.backbone_args import (
    add_backbone_args,
    add_edges_arg,
    features_in_batches,
    image_files,
    make_predictor,
    store_for_head,
)
from cli.commands import help_of
from core.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
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
    add_backbone_args(p, None)
    add_edges_arg(p)
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Predict every image; under torchrun the ranks split the images (cli.shards) and rank 0 writes the
    COCO file and summary.json from all ranks' PNGs, the same files one process writes."""
    from cli import shards
    from core.head import load_head
    from core.imageio import load_rgb
    from core.labels import write_label_png

    files = image_files(args.images)
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        raise InputError(
            "two input images share a file name stem; their predictions would overwrite each other"
        )
    head, meta = load_head(args.head)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with shards.process_group(args) as world:
        store = store_for_head(args, meta)
        mine = shards.shard(files, world)
        todo = [f for f in mine if not (args.resume and (args.out / f"{f.stem}.png").is_file())]
        items = [(f, (lambda f=f: load_rgb(f))) for f in todo]
        desc = f"predicting (rank {world.rank})" if world.enabled else "predicting"
        predictor = make_predictor(args)
        for path, rgb, feats in features_in_batches(store, items, desc):
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
