"""A grid of paper-protocol runs (label kinds x frozen/fine-tuned x backbones), evaluated and tabulated.

Label kinds (`--kinds`):
    gt               the ground truth (the paper's "GT" column)
    scribble, point  generated from the ground truth (experiments.labelgen)
    noisy@63.6       dense pseudo-label imitation calibrated to that mIoU against the ground truth (SEAM-like;
                     noisy@69.4 is EPS-like; plain `noisy` means 63.6)
    zeroshot         MaskCLIP labels from the class names (experiments.zeroshot)
    NAME=DIR         labels you already have, e.g. real SEAM pseudo-labels: SEAM=/data/seam/pseudo_labels

Everything lands under the study folder: labels/<kind>/ (generated once, reused when the settings match),
runs/<backbone>/<kind>/<mode>/ (head, loss curve, checkpoint, result.json: finished runs are skipped, cut
runs resume), and study.md, study.json and study.png (validation mIoU against label quality).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from core.errors import UserError
from experiments.labelgen import (
    NoisyConfig,
    PointConfig,
    ScribbleConfig,
    generate_labels,
    measure_labels,
    read_manifest,
)
from experiments.protocol import BACKBONE_FILE, ProtocolConfig, evaluate_model, train_protocol
from experiments.zeroshot import ZeroShotConfig, class_prompts

log = logging.getLogger(__name__)

MODES = ("frozen", "finetune")
RESULT_FILE = "result.json"

# The paper's numbers (DINOv2 ViT-B/14, frozen, PASCAL VOC 2012 val, real labels) by our kind names, and
# DINOv2's own linear-probe results on VOC 2012 (Oquab et al. 2023, "lin.").
PAPER_VITB14 = {
    "gt": 80.6,
    "scribble": 80.1,
    "point": 73.6,
    "noisy@63.6": 71.2,
    "noisy@69.4": 74.1,
    "zeroshot": 38.4,
}
PAPER_LABEL_QUALITY = {"noisy@63.6": 63.6, "noisy@69.4": 69.4}
DINOV2_LINEAR_VOC = {"dinov2_vits14": 81.1, "dinov2_vitb14": 82.5}


class StudyError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class LabelKind:
    name: str  # as written in tables: gt, scribble, point, noisy@63.6, zeroshot, or the user's NAME
    kind: str  # gt | scribble | point | noisy | zeroshot | external
    target: float | None = None  # noisy: target mIoU in [0, 1]
    path: str | None = None  # external: the labels folder

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name.replace("@", "-"))


def parse_kind(spec: str) -> LabelKind:
    spec = spec.strip()
    if "=" in spec:
        name, path = spec.split("=", 1)
        if not name or not path:
            raise StudyError(f"label kind {spec!r}: write NAME=DIR, e.g. SEAM=/data/seam_labels")
        return LabelKind(name, "external", path=path)
    base, _, arg = spec.partition("@")
    if base in ("gt", "scribble", "point", "zeroshot") and not arg:
        return LabelKind(base, base)
    if base == "noisy":
        value = float(arg) if arg else 63.6
        target = value / 100 if value > 1 else value
        if not 0 < target < 1:
            raise StudyError(f"label kind {spec!r}: the target mIoU must be in (0, 100)")
        return LabelKind(f"noisy@{100 * target:.1f}", "noisy", target=target)
    raise StudyError(
        f"unknown label kind {spec!r}; use gt, scribble, point, noisy@63.6 (any target mIoU), zeroshot or NAME=DIR"
    )


@dataclass(frozen=True)
class StudyConfig:
    kinds: tuple[str, ...] = ("gt", "scribble", "point", "noisy@63.6", "noisy@69.4")
    modes: tuple[str, ...] = ("frozen",)
    backbones: tuple[str, ...] = ("dinov2_vitb14",)
    train_split: str = "train"
    val_split: str = "val"
    val_limit: int | None = None  # evaluate on the first N validation images only (quick looks)
    scribble: ScribbleConfig = field(default_factory=ScribbleConfig)
    point: PointConfig = field(default_factory=PointConfig)
    noisy_tolerance: float = 0.005
    label_seed: int = 0
    zeroshot: ZeroShotConfig = field(default_factory=ZeroShotConfig)
    label_workers: int = 1  # processes for generating labels
    zeroshot_prompts: dict | None = None  # {"class": ["word", ...]} overriding zero-shot prompt words

    def __post_init__(self):
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise StudyError(f"unknown mode {bad[0]!r}; choose frozen and/or finetune")
        if not self.kinds or not self.modes or not self.backbones:
            raise StudyError("a study needs at least one label kind, one mode and one backbone")


# ----------------------------------------------------------------------------------------------------------
# labels


def prepare_labels(
    dataset,
    kind: LabelKind,
    study_dir: Path,
    config: StudyConfig,
    clip_factory: Callable[[], object] | None,
    progress: bool,
) -> tuple[str | None, dict]:
    """The labels folder of a kind (None: ground truth) and its quality on the training split."""
    split = config.train_split
    if kind.kind == "gt":
        n = len(dataset.ids(split))
        return None, {"miou": 1.0, "coverage": 1.0, "precision": 1.0, "images": n}
    if kind.kind == "external":
        path = Path(kind.path).expanduser()
        if not path.is_dir():
            raise StudyError(f"labels folder {path} (kind {kind.name}) not found")
        return str(path), measure_labels(dataset, split, path)
    out = study_dir / "labels" / kind.slug
    if kind.kind == "zeroshot":
        manifest = read_manifest(out)
        prompts = class_prompts(dataset.classes, config.zeroshot_prompts)
        wanted = {
            "split": split,
            "images": len(dataset.ids(split)),
            "config": json.loads(json.dumps(asdict(config.zeroshot))),
            "prompts": {n: list(w) for n, w in zip(dataset.classes, prompts, strict=True)},
        }
        if manifest is None or any(manifest.get(k) != v for k, v in wanted.items()):
            if clip_factory is None:
                raise StudyError("zeroshot labels need a CLIP model; pass clip settings to the study")
            from experiments.zeroshot import make_zeroshot_labels

            manifest = make_zeroshot_labels(
                dataset,
                split,
                out,
                clip_factory(),
                config.zeroshot,
                synonyms=config.zeroshot_prompts,
                progress=progress,
            )
        return str(out), manifest.get("quality") or {}
    if kind.kind == "scribble":
        gen_config = config.scribble
    elif kind.kind == "point":
        gen_config = config.point
    else:
        gen_config = NoisyConfig(target_miou=kind.target, tolerance=config.noisy_tolerance)
    manifest = read_manifest(out)
    wanted = {
        "kind": kind.kind,
        "split": split,
        "seed": config.label_seed,
        "config": asdict(gen_config),
        "images": len(dataset.ids(split)),
    }
    if manifest is None or any(manifest.get(k) != v for k, v in wanted.items()):
        manifest = generate_labels(
            dataset,
            split,
            kind.kind,
            out,
            gen_config,
            seed=config.label_seed,
            progress=progress,
            workers=config.label_workers,
        )
        if kind.kind == "noisy" and not manifest.get("within_tolerance"):
            log.warning(
                "noisy labels reached mIoU %.1f for a target of %.1f",
                100 * manifest["achieved_miou"],
                100 * kind.target,
            )
    return str(out), manifest["quality"]


# ----------------------------------------------------------------------------------------------------------
# running


def run_study(
    dataset,
    out_dir: str | os.PathLike,
    config: StudyConfig,
    protocol: ProtocolConfig,
    load_backbone: Callable[[str], object],
    clip_factory: Callable[[], object] | None = None,
    progress: bool = True,
) -> dict:
    """Run (or resume) the grid; returns the results dict also written to study.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kinds = [parse_kind(k) for k in config.kinds]
    names = [k.name for k in kinds]
    if len(set(names)) != len(names):
        raise StudyError(f"label kinds repeat: {', '.join(names)}")
    quality: dict[str, dict] = {}
    label_dirs: dict[str, str | None] = {}
    for kind in kinds:
        label_dirs[kind.name], quality[kind.name] = prepare_labels(
            dataset, kind, out, config, clip_factory, progress
        )
    runs = []
    start = time.perf_counter()
    for name in config.backbones:
        backbone = None
        for kind in kinds:
            for mode in config.modes:
                run_dir = out / "runs" / name / kind.slug / mode
                run_protocol = replace(protocol, finetune=mode == "finetune")
                result = _read_result(run_dir, run_protocol)
                if result is None:
                    if backbone is None:
                        backbone = load_backbone(name)
                    result = _run_one(
                        dataset,
                        backbone,
                        kind,
                        mode,
                        label_dirs[kind.name],
                        run_dir,
                        config,
                        run_protocol,
                        progress,
                    )
                runs.append(result)
                elapsed = time.perf_counter() - start
                _write_outputs(out, dataset, config, protocol, kinds, quality, runs, elapsed, plot=False)
    return _write_outputs(out, dataset, config, protocol, kinds, quality, runs, time.perf_counter() - start)


def _read_result(run_dir: Path, protocol: ProtocolConfig) -> dict | None:
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except ValueError:
        return None
    saved = result.get("protocol", {})
    now = json.loads(json.dumps(protocol.to_dict()))
    same = all(
        saved.get(k) == v
        for k, v in now.items()
        if k not in ("resume", "workers", "checkpoint_every", "log_every")
    )
    return result if same else None


def _run_one(
    dataset,
    backbone,
    kind: LabelKind,
    mode: str,
    labels_dir,
    run_dir: Path,
    config: StudyConfig,
    protocol: ProtocolConfig,
    progress: bool,
) -> dict:
    t0 = time.perf_counter()
    if progress:
        print(f"== {backbone.spec.name} | {kind.name} | {mode}", flush=True)
    head, meta, history = train_protocol(
        dataset, labels_dir, config.train_split, backbone, protocol, run_dir, progress=progress
    )
    model = backbone.model
    if mode == "finetune":
        from core.backbone import load_backbone as load_weights

        model = load_weights(backbone.spec.name, str(run_dir / BACKBONE_FILE), backbone.device).model
    scores = evaluate_model(
        dataset,
        config.val_split,
        model,
        head,
        protocol.base_long_side,
        backbone.device,
        amp=protocol.amp,
        limit=config.val_limit,
        progress=progress,
    )
    result = {
        "backbone": backbone.spec.name,
        "weights_id": backbone.weights_id,
        "kind": kind.name,
        "mode": mode,
        "labels": labels_dir,
        "run_dir": str(run_dir),
        "final_loss": history[-1]["loss"] if history and math.isfinite(history[-1]["loss"]) else None,
        "seconds": round(time.perf_counter() - t0, 3),
        "protocol": protocol.to_dict(),
        **scores.to_dict(list(dataset.classes)),
    }
    (run_dir / RESULT_FILE).write_text(json.dumps(result, indent=2, allow_nan=False))
    if progress:
        print(f"   val mIoU {_pct(result['miou'])}", flush=True)
    return result


# ----------------------------------------------------------------------------------------------------------
# tables and plot


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _mode_title(mode: str) -> str:
    return "Freezing" if mode == "frozen" else "Tuning"


def tables(kinds: Sequence[LabelKind], quality: dict, runs: list[dict], modes: Sequence[str]) -> dict:
    """The paper's table shapes as plain data: rows of cells (strings), first row the header."""
    names = [k.name for k in kinds]
    by = {(r["backbone"], r["kind"], r["mode"]): r for r in runs}
    backbones = list(dict.fromkeys(r["backbone"] for r in runs))
    main = [["Method", "Backbone strategy", *names]]
    main.append(["Label quality (mIoU vs GT)", "-", *[_pct(quality[n].get("miou")) for n in names]])
    for b in backbones:
        for m in modes:
            main.append(
                [b, _mode_title(m), *[_pct(by[(b, n, m)]["miou"]) if (b, n, m) in by else "-" for n in names]]
            )
    if any(n in PAPER_VITB14 for n in names):
        main.append(
            [
                "Paper: DINOv2 ViT-B/14",
                "Freezing",
                *[f"{PAPER_VITB14[n]:.1f}" if n in PAPER_VITB14 else "-" for n in names],
            ]
        )
    out = {"main": main}
    if "frozen" in modes and "finetune" in modes:
        t4 = [["Method", "Labels", "Freezing", "Tuning"]]
        for b in backbones:
            for n in names:
                t4.append(
                    [
                        b,
                        n,
                        *[
                            _pct(by[(b, n, m)]["miou"]) if (b, n, m) in by else "-"
                            for m in ("frozen", "finetune")
                        ],
                    ]
                )
        out["frozen_vs_finetune"] = t4
    lq = [["Labels", "mIoU vs GT (unlabelled = miss)", "Coverage", "Precision"]]
    for n in names:
        q = quality[n]
        lq.append([n, _pct(q.get("miou")), _pct(q.get("coverage")), _pct(q.get("precision"))])
    out["label_quality"] = lq
    return out


def markdown_table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def render_markdown(results: dict) -> str:
    t = results["tables"]
    p = results["protocol"]
    parts = [
        f"# Study on {results['dataset']}",
        "",
        f"Training split `{results['train_split']}` ({results['train_images']} images), evaluation on "
        f"`{results['val_split']}` ({results['val_images']} images). Paper protocol: {p['iterations']} iterations, "
        f"batch {p['batch_size']}, SGD lr {p['lr']} (momentum {p['momentum']}), crop {p['crop']}, "
        f"backbone lr {p['backbone_lr']} when tuning.",
        "",
        "## Validation mIoU (%) by label kind (the shape of the paper's Tables 1-3)",
        "",
        markdown_table(t["main"]),
        "",
        "Rows: backbones of any family (the paper's Table 3 compares DINO v1, iBOT and DINOv2); the figures mean "
        "something only with the real pretrained weights of each (random weights test the plumbing).",
        "",
    ]
    if "frozen_vs_finetune" in t:
        parts += [
            "## Freezing vs tuning the backbone (the shape of Table 4)",
            "",
            markdown_table(t["frozen_vs_finetune"]),
            "",
        ]
    parts += [
        "## Label quality on the training split (%)",
        "",
        markdown_table(t["label_quality"]),
        "",
        "Generated `noisy@X` labels imitate pseudo-labels of quality X; the paper's SEAM and EPS columns used the "
        "real pseudo-labels (pass them as `NAME=DIR`). DINOv2's own linear probe on VOC 2012: ViT-S/14 81.1, "
        "ViT-B/14 82.5 mIoU.",
        "",
    ]
    return "\n".join(parts)


def plot_study(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quality = results["label_quality"]
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    series: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
    for r in results["runs"]:
        q = quality.get(r["kind"], {}).get("miou")
        if q is None or r.get("miou") is None:
            continue
        series.setdefault((r["backbone"], r["mode"]), []).append((100 * q, 100 * r["miou"], r["kind"]))
    for (backbone, mode), pts in series.items():
        pts.sort()
        ax.scatter(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="o" if mode == "frozen" else "s",
            s=28,
            label=f"{backbone} ({_mode_title(mode).lower()})",
        )
        for x, y, kind in pts:
            ax.annotate(kind, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.plot([0, 100], [0, 100], ":", color="grey", lw=1, label="model = its labels")
    ax.set_xlim(0, 102)
    ax.set_ylim(0, 102)
    ax.set_xlabel("label quality: mIoU of the training labels vs GT (%)")
    ax.set_ylabel(f"{results['val_split']} mIoU (%)")
    ax.set_title("Segmentation quality against label quality")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _write_outputs(
    out: Path,
    dataset,
    config: StudyConfig,
    protocol: ProtocolConfig,
    kinds,
    quality,
    runs,
    seconds: float,
    plot: bool = True,
) -> dict:
    results = {
        "dataset": str(dataset.root),
        "classes": list(dataset.classes),
        "train_split": config.train_split,
        "val_split": config.val_split,
        "train_images": len(dataset.ids(config.train_split)),
        "val_images": len(
            dataset.ids(config.val_split)[: config.val_limit]
            if config.val_limit
            else dataset.ids(config.val_split)
        ),
        "protocol": protocol.to_dict(),
        "kinds": [asdict(k) for k in kinds],
        "modes": list(config.modes),
        "backbones": list(config.backbones),
        "label_quality": quality,
        "runs": runs,
        "tables": tables(kinds, quality, runs, config.modes),
        "paper": {
            "dinov2_vitb14_frozen": PAPER_VITB14,
            "label_quality": PAPER_LABEL_QUALITY,
            "dinov2_linear_probe_voc": DINOV2_LINEAR_VOC,
        },
        "seconds": round(seconds, 3),
    }
    (out / "study.json").write_text(json.dumps(results, indent=2, allow_nan=False))
    (out / "study.md").write_text(render_markdown(results))
    if plot:  # the plot is drawn once at the end; tables and JSON after every run
        plot_study(results, out / "study.png")
    return results
