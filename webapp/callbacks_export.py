"""Export (PASCAL VOC zip, COCO JSON, head, project archive) and evaluation against ground truth."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np

from webapp.context import AppContext, Session
from webapp.errors import ui_errors
from webapp.text import md


def _out_dir(ctx: AppContext) -> Path:
    root = Path(ctx.export_dir) if ctx.export_dir else Path(tempfile.gettempdir()) / "probeseg-exports"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=root))


def _stem(ctx: AppContext) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in ctx.project_name) or "project"
    return safe


def predictions(ctx: AppContext) -> dict[int, np.ndarray]:
    """Full-resolution predictions of the current head for every image with features."""
    if ctx.engine.head(ctx.project_id) is None:
        raise gr.Error("No trained head yet: label two classes and train before exporting predictions.")
    out = {}
    missing = 0
    for info in ctx.images():
        pred = ctx.engine.prediction(ctx.project_id, info.id, wait=120.0)
        if pred is None:
            missing += 1
            continue
        out[info.id] = pred.labels
    if missing:
        gr.Warning(f"{missing} image(s) have no features yet and were left out.")
    return out


@ui_errors
def export_masks(ctx: AppContext, sess: Session, use_predictions: bool) -> dict:
    preds = predictions(ctx) if use_predictions else None
    what = "predictions" if use_predictions else "labels"
    path = ctx.repo.export_voc(ctx.project_id, _out_dir(ctx) / f"{_stem(ctx)}-{what}-voc.zip", preds)
    return {
        "export_files": [str(path)],
        "export_msg": f"PASCAL VOC layout of the {what}: JPEGImages/, labels/ (palette PNGs), SegmentationClass/ "
        "(ground truth), ImageSets/Segmentation/ (your splits) and classes.txt. "
        "`python app.py train --data DIR --labels DIR/labels` reads it.",
    }


@ui_errors
def export_coco(ctx: AppContext, sess: Session, use_predictions: bool) -> dict:
    preds = predictions(ctx) if use_predictions else None
    what = "predictions" if use_predictions else "labels"
    path = ctx.repo.export_coco(ctx.project_id, _out_dir(ctx) / f"{_stem(ctx)}-{what}-coco.json", preds)
    return {"export_files": [str(path)], "export_msg": f"COCO JSON (RLE masks) of the {what}."}


@ui_errors
def export_head(ctx: AppContext, sess: Session) -> dict:
    info = ctx.repo.latest_head(ctx.project_id)
    if info is None:
        raise gr.Error("No trained head yet: label two classes and press Train.")
    weights, meta = ctx.repo.export_head(info.id, _out_dir(ctx))
    return {
        "export_files": [str(weights), str(meta)],
        "export_msg": f"Head {info.id} ({info.backbone}, {len(info.classes)} classes): head.safetensors and "
        f"head.json, the format `python app.py predict --head FOLDER` reads (keep them in one "
        "folder).",
    }


@ui_errors
def export_project(ctx: AppContext, sess: Session) -> dict:
    path = ctx.repo.export_project(ctx.project_id, _out_dir(ctx) / f"{_stem(ctx)}-project.zip")
    return {
        "export_files": [str(path)],
        "export_msg": "The whole project (images, classes, label history, ground truth, heads) as one zip.",
    }


def _pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def progress_table(ctx: AppContext) -> list[list]:
    """Rows (labelled pixels, mIoU %) of the training runs that were evaluated, for the plot."""
    rows = []
    for run in ctx.repo.list_training_runs(ctx.project_id):
        miou = (run.metrics or {}).get("miou")
        if miou is not None:
            rows.append([int(run.labelled_pixels), round(100 * float(miou), 2)])
    return rows


@ui_errors
def evaluation(ctx: AppContext, sess: Session) -> dict:
    if not any(i.has_ground_truth for i in ctx.images()):
        return {
            "eval_md": "No ground truth in this project. Import a VOC-layout dataset (Images tab → import "
            "from a server folder) whose SegmentationClass masks become ground truth; then "
            "every training is scored here.",
            "eval_plot": None,
        }
    result = ctx.engine.evaluate(ctx.project_id)
    if result is None:
        return {
            "eval_md": "Ground truth found, but there is no trained head yet (or no features for the "
            "ground-truth images): label two classes and train.",
            "eval_plot": None,
        }
    scores = result.scores
    lines = [
        f"**mIoU {_pct(scores.miou)}%** · pixel accuracy {_pct(scores.pixel_accuracy)}% on "
        f"{result.images} ground-truth image(s) ({result.split})"
        + (f"; {result.skipped} without features yet" if result.skipped else ""),
        "",
        "| class | IoU % |",
        "|---|---:|",
    ]
    for name, iou in zip(result.class_names, scores.per_class_iou, strict=True):
        lines.append(f"| {md(name)} | {_pct(iou)} |")
    rows = progress_table(ctx)
    labelled = sum(ctx.repo.labelled_pixel_counts(ctx.project_id).values())
    if not rows or rows[-1][0] != labelled:  # runs whose scoring a newer edit superseded: score the head now
        rows.append([int(labelled), round(100 * float(scores.miou), 2)])
    plot = None
    if rows:
        import pandas as pd

        plot = pd.DataFrame(rows, columns=["labelled pixels", "mIoU %"])
    return {"eval_md": "\n".join(lines), "eval_plot": plot}
