"""Export (PASCAL VOC zip, COCO JSON and the project archive as download links; the head as files) and
evaluation against ground truth."""

from __future__ import annotations

import html
import math
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import gradio as gr

from webapp.context import AppContext, Session
from webapp.errors import ui_errors
from webapp.text import md


def _out_dir(ctx: AppContext) -> Path:
    root = Path(ctx.export_dir) if ctx.export_dir else Path(tempfile.gettempdir()) / "probeseg-exports"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=root))


def download_links(ctx: AppContext, use_predictions: bool) -> str:
    """Links that download the project through the REST API's export route: the file is written when the
    link is followed, streamed, and deleted once sent (nothing held in memory, no copy left behind)."""
    base = f"/api/v1/projects/{quote(ctx.project_name, safe='')}/export"
    pred = "&predictions=true" if use_predictions else ""
    what = "the current head's predictions" if use_predictions else "the labels"
    links = [
        (
            f"{base}?format=voc{pred}",
            "PASCAL VOC zip",
            f"JPEGImages/, labels/ ({what}), SegmentationClass/ "
            "(ground truth), ImageSets/Segmentation/ (your splits), classes.txt; `python app.py train --data DIR "
            "--labels DIR/labels` reads it",
        ),
        (f"{base}?format=coco{pred}", "COCO JSON", f"RLE masks of {what}"),
        (
            f"{base}?format=archive",
            "Project archive",
            "the whole project (images, classes, label history, ground truth, heads) as one zip",
        ),
    ]
    return "\n".join(
        f"<a class='ps-download' href='{html.escape(href)}' download>{label}</a> <span class='muted'>{note}"
        "</span><br>"
        for href, label, note in links
    )


def export_links(ctx: AppContext, sess: Session, use_predictions: bool) -> dict:
    return {"export_links": download_links(ctx, use_predictions)}


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
