"""`make-labels` and `study`: the paper's experiments as commands.

    python app.py make-labels --data VOC --kind scribble --out labels/scribble
    python app.py make-labels --data VOC --kind noisy --target-miou 63.6 --out labels/seam_like
    python app.py make-labels --data VOC --kind zeroshot --out labels/maskclip
    python app.py study --data VOC --kinds gt scribble point noisy@63.6 noisy@69.4 --modes frozen finetune \\
        --backbones dinov2_vitb14 --out studies/voc
"""

from __future__ import annotations

import argparse
import os

from cli.commands import help_of
from cli.protocol_args import add_protocol_arguments, protocol_config_from_args
from core.errors import InputError
from experiments.config import (
    DEFAULT_MODEL,
    DEFAULT_TAG,
    KINDS,
    NoisyConfig,
    PointConfig,
    ScribbleConfig,
    ZeroShotConfig,
    default_workers,
)


def _fraction(text: str) -> float:
    """63.6 and 0.636 both mean 63.6 %."""
    v = float(text)
    v = v / 100 if v > 1 else v
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"expected a mIoU in (0, 100), got {text}")
    return v


def _add_generator_flags(p: argparse.ArgumentParser) -> None:
    s, pt, n = ScribbleConfig(), PointConfig(), NoisyConfig()
    g = p.add_argument_group("scribbles")
    g.add_argument("--width", type=int, default=s.width, help=f"stroke width in pixels (default {s.width})")
    g.add_argument(
        "--coverage",
        type=float,
        default=s.coverage,
        help=f"fraction of each object's skeleton the stroke follows (default {s.coverage})",
    )
    g.add_argument(
        "--background-strokes",
        type=int,
        default=s.background_strokes,
        help=f"strokes per background region (default {s.background_strokes})",
    )
    g.add_argument(
        "--min-area", type=int, default=s.min_area, help="objects smaller than this get no label (default 16)"
    )
    g = p.add_argument_group("points")
    g.add_argument("--points", type=int, default=pt.points, help="points per object (default 1)")
    g.add_argument(
        "--background-points",
        type=int,
        default=pt.background_points,
        help="background points per image (default 1)",
    )
    g.add_argument(
        "--radius", type=int, default=pt.radius, help="point disk radius in pixels; 0 = one pixel (default 0)"
    )
    g = p.add_argument_group("noisy pseudo-labels")
    g.add_argument(
        "--tolerance",
        type=float,
        default=n.tolerance,
        help=f"accepted |achieved - target| mIoU as a fraction (default {n.tolerance})",
    )


def _add_clip_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("zero-shot labels (MaskCLIP with open_clip)")
    g.add_argument(
        "--clip-model", default=DEFAULT_MODEL, help=f"open_clip model (default {DEFAULT_MODEL}, as MaskCLIP)"
    )
    g.add_argument(
        "--clip-pretrained",
        default=DEFAULT_TAG,
        help="open_clip pretrained tag for --clip-weights hub; openai also means QuickGELU for a local file "
        f"(default {DEFAULT_TAG})",
    )
    g.add_argument(
        "--clip-weights",
        default="hub",
        help="hub (Hugging Face cache), a local open_clip checkpoint file, or random (tests only)",
    )
    g.add_argument(
        "--clip-long-side",
        type=int,
        default=ZeroShotConfig.long_side,
        help=f"CLIP input long side in pixels (default {ZeroShotConfig.long_side})",
    )
    g.add_argument(
        "--min-confidence",
        type=float,
        default=0.0,
        help="leave pixels below this probability unlabelled (default 0: dense)",
    )
    g.add_argument(
        "--denoise",
        type=float,
        default=0.0,
        help="MaskCLIP prompt denoising threshold, e.g. 0.5 (default off)",
    )
    g.add_argument(
        "--prompts", default=None, help='JSON file {"class": ["word", ...]} overriding the words per class'
    )


def _scribble(args) -> ScribbleConfig:
    return ScribbleConfig(
        width=args.width,
        coverage=args.coverage,
        background_strokes=args.background_strokes,
        min_area=args.min_area,
    )


def _point(args) -> PointConfig:
    return PointConfig(points=args.points, background_points=args.background_points, radius=args.radius)


def _clip_factory(args):
    def load():
        from experiments.zeroshot import load_clip

        return load_clip(args.clip_model, args.clip_weights, args.clip_pretrained, args.device)

    return load


def _zeroshot_config(args) -> ZeroShotConfig:
    return ZeroShotConfig(
        long_side=args.clip_long_side, min_confidence=args.min_confidence, denoise=args.denoise
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "make-labels",
        help=help_of("make-labels"),
        description="Write imperfect label PNGs (palette, 255 = unlabelled) for every image of a split, plus "
        "labels.json with the settings, the density and the quality against the ground truth.",
    )
    p.add_argument("--data", required=True, help="dataset folder in PASCAL VOC layout")
    p.add_argument("--kind", required=True, choices=KINDS, help="which imperfect labels to make")
    p.add_argument("--out", required=True, help="folder for <id>.png label maps")
    p.add_argument("--split", default="train", help="split to label (default train)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of the split")
    p.add_argument(
        "--target-miou",
        type=_fraction,
        default=NoisyConfig().target_miou,
        help="noisy: labels' mIoU against the ground truth, e.g. 63.6 (SEAM) or 69.4 (EPS)",
    )
    p.add_argument("--device", default="auto", help="zeroshot: auto, cpu, cuda, cuda:1, mps")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes for scribble/point/noisy labels (default 0: up to 8, one per CPU core)",
    )
    _add_generator_flags(p)
    _add_clip_flags(p)
    p.set_defaults(func=cmd_make_labels)

    s = subparsers.add_parser(
        "study",
        help=help_of("study"),
        description="Train (paper protocol) and evaluate every combination of label kinds x frozen/fine-tuned x "
        "backbones; writes study.md, study.json and study.png (mIoU against label quality) in --out. Finished "
        "runs are skipped and interrupted runs resume, so the same command continues a study.",
    )
    s.add_argument("--data", required=True, help="dataset folder in PASCAL VOC layout")
    s.add_argument("--out", required=True, help="study folder")
    s.add_argument(
        "--kinds",
        nargs="+",
        default=["gt", "scribble", "point", "noisy@63.6", "noisy@69.4"],
        help="label kinds: gt scribble point noisy@63.6 zeroshot NAME=DIR (default: gt scribble point "
        "noisy@63.6 noisy@69.4)",
    )
    s.add_argument(
        "--modes",
        nargs="+",
        default=["frozen"],
        choices=("frozen", "finetune"),
        help="backbone strategies (default frozen)",
    )
    s.add_argument(
        "--backbones",
        nargs="+",
        default=["dinov2_vitb14"],
        help="backbones of any family (core.backbones: dinov2_*, dino_*, ibot_*, dinov3_*; default dinov2_vitb14)",
    )
    s.add_argument(
        "--weights",
        nargs="+",
        default=["hub"],
        help="hub, random, a checkpoint path, or NAME=PATH per backbone (default hub)",
    )
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    s.add_argument("--train-split", default="train", help="split the heads are trained on (default train)")
    s.add_argument("--val-split", default="val", help="split their mIoU is measured on (default val)")
    s.add_argument(
        "--val-limit", type=int, default=None, help="evaluate on the first N validation images only"
    )
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_generator_flags(s)
    _add_clip_flags(s)
    add_protocol_arguments(s, with_protocol_flag=False)
    s.set_defaults(func=cmd_study)


def cmd_make_labels(args) -> int:
    from core.voc import VocDataset
    from experiments.labelgen import generate_labels

    dataset = VocDataset.open(args.data)
    if args.kind == "zeroshot":
        from experiments.zeroshot import make_zeroshot_labels, read_synonyms

        synonyms = read_synonyms(args.prompts) if args.prompts else None
        manifest = make_zeroshot_labels(
            dataset,
            args.split,
            args.out,
            _clip_factory(args)(),
            _zeroshot_config(args),
            synonyms=synonyms,
            limit=args.limit,
        )
    else:
        config = {
            "scribble": lambda: _scribble(args),
            "point": lambda: _point(args),
            "noisy": lambda: NoisyConfig(target_miou=args.target_miou, tolerance=args.tolerance),
        }[args.kind]()
        workers = args.workers or default_workers()
        manifest = generate_labels(
            dataset,
            args.split,
            args.kind,
            args.out,
            config,
            seed=args.seed,
            limit=args.limit,
            workers=workers,
        )
    print(summary_line(manifest, args.out))
    return 0


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def summary_line(manifest: dict, out: str | os.PathLike) -> str:
    q = manifest.get("quality") or {}
    line = (
        f"wrote {manifest['images']} {manifest['kind']} label maps to {out}: coverage {_pct(q.get('coverage'))} "
        f"of pixels, label mIoU vs ground truth {_pct(q.get('miou'))}, precision {_pct(q.get('precision'))}"
    )
    if manifest["kind"] == "noisy":
        ok = "" if manifest.get("within_tolerance") else " (outside the tolerance: see labels.json)"
        line += f" (target {_pct(manifest['target_miou'])}){ok}"
    return line


def _weights_for(specs: list[str], backbones: list[str]):
    per: dict[str, str] = {}
    default = "hub"
    for spec in specs:
        if "=" in spec and not os.path.exists(spec):
            name, path = spec.split("=", 1)
            per[name] = path
        else:
            default = spec
    unknown = set(per) - set(backbones)
    if unknown:
        raise InputError(f"--weights names {', '.join(sorted(unknown))}, which is not in --backbones")
    return lambda name: per.get(name, default)


def cmd_study(args) -> int:
    from core.backbone import load_backbone
    from core.voc import VocDataset
    from experiments.study import StudyConfig, run_study
    from experiments.zeroshot import read_synonyms

    dataset = VocDataset.open(args.data)
    weights = _weights_for(args.weights, args.backbones)
    config = StudyConfig(
        kinds=tuple(args.kinds),
        modes=tuple(args.modes),
        backbones=tuple(args.backbones),
        train_split=args.train_split,
        val_split=args.val_split,
        val_limit=args.val_limit,
        scribble=_scribble(args),
        point=_point(args),
        noisy_tolerance=args.tolerance,
        label_seed=args.seed,
        zeroshot=_zeroshot_config(args),
        label_workers=max(1, args.workers),
        zeroshot_prompts=read_synonyms(args.prompts) if args.prompts else None,
    )
    protocol = protocol_config_from_args(args)
    clip_factory = None
    if any(k.strip() == "zeroshot" for k in args.kinds):
        clip_factory = _clip_factory(args)
    results = run_study(
        dataset,
        args.out,
        config,
        protocol,
        load_backbone=lambda name: load_backbone(name, weights(name), args.device),
        clip_factory=clip_factory,
        progress=not args.quiet,
    )
    from experiments.study import markdown_table

    print(markdown_table(results["tables"]["main"]))
    print(f"wrote {args.out}/study.md, study.json and study.png")
    return 0
