"""`export-onnx`: a trained head, with its backbone or alone, as one ONNX graph."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.backbone_args import (
    add_backbone_args,
    store_for_head,
)
from cli.commands import help_of


def register(sub: argparse._SubParsersAction) -> None:
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
    add_backbone_args(x, None)
    x.set_defaults(func=run_export_onnx)


def run_export_onnx(args: argparse.Namespace) -> int:
    from core.head import load_head
    from core.onnx_export import export_onnx

    head, meta = load_head(args.head)
    backbone = None if args.head_only else store_for_head(args, meta).extractor.backbone
    path = export_onnx(head, meta, args.out, backbone, head_only=args.head_only, max_side=args.max_side)
    what = "head" if args.head_only else f"{meta.backbone} + head"
    print(
        f"wrote {what} ({len(meta.classes)} classes) as ONNX to {path} ({path.stat().st_size / 2**20:.1f} MiB)"
    )
    return 0
