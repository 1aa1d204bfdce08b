"""`simulate`: simulated annotation sessions, the strokes each labelling strategy needs (experiments.simulate)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.backbone_args import (
    add_backbone_args,
    add_edges_arg,
    features_config,
    features_in_batches,
    open_store,
)
from cli.commands import help_of


def register(sub: argparse._SubParsersAction) -> None:
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
    add_backbone_args(m, "hub")
    add_edges_arg(m)
    m.set_defaults(func=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.voc import VocDataset
    from experiments import simulate

    ds = VocDataset.open(args.data)
    store = open_store(args.backbone, args.weights, args, features_config(args))

    def samples(split: str) -> list:
        items = [(i, (lambda i=i: ds.image(i))) for i in ds.ids(split)]
        return [
            simulate.Sample(feats, ds.ground_truth(i, size=rgb.shape[:2]), rgb if args.edges else None)
            for i, rgb, feats in features_in_batches(store, items, f"features {split}")
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
