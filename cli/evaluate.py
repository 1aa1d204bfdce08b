"""`evaluate`: per-class IoU and mIoU of a head on a split of a VOC-layout dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.backbone_args import (
    add_backbone_args,
    add_edges_arg,
    features_in_batches,
    make_predictor,
    store_for_head,
)
from cli.commands import help_of


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("evaluate", help=help_of("evaluate"))
    e.add_argument(
        "--data", required=True, type=Path, help="dataset folder (JPEGImages/, SegmentationClass/)"
    )
    e.add_argument("--head", required=True, type=Path, help="folder written by train")
    e.add_argument("--split", default="val", help="split to score (default val)")
    e.add_argument(
        "--json", type=Path, default=None, help="where to write the scores (default HEAD/eval-SPLIT.json)"
    )
    add_backbone_args(e, None)
    add_edges_arg(e)
    e.set_defaults(func=run_evaluate)


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
    store = store_for_head(args, meta)
    cm = ConfusionMatrix(len(ds.classes))
    items = [(i, (lambda i=i: ds.image(i))) for i in ids]
    predictor = make_predictor(args)
    for image_id, rgb, feats in features_in_batches(store, items, f"evaluating {args.split}"):
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
