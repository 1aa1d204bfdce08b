"""The paper-protocol flags, shared by `train --protocol paper` and `study`, and their parsing into a
ProtocolConfig (the one place flags become the config)."""

from __future__ import annotations

import argparse
from dataclasses import fields

from experiments.config import SCHEDULES, ProtocolConfig

_FOREIGN = "_protocol_foreign_defaults"


def _add(parser: argparse.ArgumentParser, group, *flags, **kwargs) -> None:
    """Add a flag unless the command already has it. An existing flag is shared (the same meaning), but its
    default belongs to the command's other mode (e.g. `train --batch-size 8` for the fast trainer): that
    default is remembered so that leaving the flag out still means the protocol's default."""
    try:
        group.add_argument(*flags, **kwargs)
    except argparse.ArgumentError:  # "conflicting option string": the command defines this flag already
        dest = kwargs.get("dest") or flags[0].lstrip("-").replace("-", "_")
        foreign = dict(parser.get_default(_FOREIGN) or {})
        foreign[dest] = parser.get_default(dest)
        parser.set_defaults(**{_FOREIGN: foreign})


def add_protocol_arguments(parser: argparse.ArgumentParser, with_protocol_flag: bool = True) -> None:
    """Add the paper-protocol flags to a command (flags it already defines are left alone)."""
    d = ProtocolConfig()
    g = parser.add_argument_group("paper protocol (--protocol paper)")
    if with_protocol_flag:
        _add(
            parser,
            g,
            "--protocol",
            choices=("fast", "paper"),
            default="fast",
            help="fast: exact L-BFGS on cached features (default); paper: the paper's SGD recipe with the "
            "backbone run on every augmented batch",
        )
    _add(
        parser,
        g,
        "--iterations",
        type=int,
        default=d.iterations,
        help=f"SGD iterations (default {d.iterations})",
    )
    _add(
        parser,
        g,
        "--batch-size",
        type=int,
        default=d.batch_size,
        help=f"global batch, split over torchrun processes (default {d.batch_size})",
    )
    _add(parser, g, "--lr", type=float, default=d.lr, help=f"head learning rate (default {d.lr})")
    _add(parser, g, "--momentum", type=float, default=d.momentum, help=f"SGD momentum (default {d.momentum})")
    _add(
        parser,
        g,
        "--weight-decay",
        type=float,
        default=d.weight_decay,
        help=f"L2 penalty on the head's weights, not its bias (default {d.weight_decay:g}, the interactive "
        "trainer's; 0 with --no-class-balance is the paper's literal Eq. 1)",
    )
    _add(
        parser,
        g,
        "--no-class-balance",
        action="store_true",
        help="plain Eq. 1: every labelled pixel counts the same (default: each class weighted by 1 / its "
        "labelled pixels over the training labels, as the interactive trainer does)",
    )
    _add(
        parser,
        g,
        "--schedule",
        choices=SCHEDULES,
        default=d.schedule,
        help="learning-rate schedule (default constant)",
    )
    _add(
        parser,
        g,
        "--crop",
        type=int,
        default=d.crop,
        help=f"training crop, a multiple of the backbone's patch (default {d.crop})",
    )
    if "--long-side" not in parser._option_string_actions:  # else the command's --long-side is this setting
        _add(
            parser,
            g,
            "--base-long-side",
            type=int,
            default=d.base_long_side,
            help=f"long side at scale 1.0 and at inference (default {d.base_long_side})",
        )
    _add(
        parser,
        g,
        "--scale-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=d.scale_range,
        help="random scale range (default 0.5 2.0)",
    )
    _add(parser, g, "--no-flip", action="store_true", help="no horizontal flips")
    _add(
        parser,
        g,
        "--color-jitter",
        type=float,
        nargs=4,
        metavar=("B", "C", "S", "H"),
        default=d.color_jitter,
        help="brightness contrast saturation hue jitter (default 0.4 0.4 0.4 0.1; 0 0 0 0 disables)",
    )
    _add(
        parser,
        g,
        "--jitter-prob",
        type=float,
        default=d.jitter_prob,
        help="chance of colour jitter (default 0.8)",
    )
    _add(
        parser,
        g,
        "--finetune",
        action="store_true",
        help="train the backbone too (the paper's Table 4 ablation)",
    )
    _add(
        parser,
        g,
        "--backbone-lr",
        type=float,
        default=d.backbone_lr,
        help=f"backbone learning rate with --finetune (default {d.backbone_lr})",
    )
    _add(
        parser, g, "--seed", type=int, default=d.seed, help="seed of data order and augmentation (default 0)"
    )
    _add(
        parser,
        g,
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        help=f"iterations between checkpoints (default {d.checkpoint_every})",
    )
    _add(
        parser,
        g,
        "--no-resume",
        action="store_true",
        help="ignore an existing checkpoint in --out and start over",
    )
    _add(
        parser,
        g,
        "--workers",
        type=int,
        default=d.workers,
        help=f"data-loading workers per process (default {d.workers})",
    )
    _add(
        parser,
        g,
        "--log-every",
        type=int,
        default=d.log_every,
        help="iterations per loss-curve point (default 20)",
    )


def protocol_config_from_args(args: argparse.Namespace, **overrides) -> ProtocolConfig:
    """The ProtocolConfig of parsed flags (see add_protocol_arguments); `overrides` win."""
    d = ProtocolConfig()
    foreign = getattr(args, _FOREIGN, None) or {}

    def get(dest: str, default):
        value = getattr(args, dest, default)
        if value is None or (dest in foreign and value == foreign[dest]):
            return default  # left at the command's default for its other mode: use the paper's
        return value

    long_side = get("base_long_side", None)
    if long_side is None:
        # the command's --long-side N (its --resolution N: the protocol trains at a fixed size)
        fixed = str(getattr(args, "resolution", None) or "")
        long_side = int(fixed) if fixed.isdigit() else d.base_long_side
    values = {
        "iterations": get("iterations", d.iterations),
        "batch_size": get("batch_size", d.batch_size),
        "lr": get("lr", d.lr),
        "momentum": get("momentum", d.momentum),
        "weight_decay": get("weight_decay", d.weight_decay),
        "schedule": get("schedule", d.schedule),
        "crop": get("crop", d.crop),
        "base_long_side": long_side,
        "scale_range": tuple(get("scale_range", d.scale_range)),
        "flip": not getattr(args, "no_flip", False),
        "class_balance": not getattr(args, "no_class_balance", False),
        "color_jitter": tuple(get("color_jitter", d.color_jitter)),
        "jitter_prob": get("jitter_prob", d.jitter_prob),
        "finetune": bool(getattr(args, "finetune", False)),
        "backbone_lr": get("backbone_lr", d.backbone_lr),
        "seed": get("seed", d.seed),
        "checkpoint_every": get("checkpoint_every", d.checkpoint_every),
        "resume": not getattr(args, "no_resume", False),
        "workers": get("workers", d.workers),
        "log_every": get("log_every", d.log_every),
    }
    values.update(overrides)
    names = {f.name for f in fields(ProtocolConfig)}
    return ProtocolConfig(**{k: v for k, v in values.items() if k in names})
