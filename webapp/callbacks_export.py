"""Export (PASCAL VOC zip, COCO JSON and the project archive as download links; the head as files) and
evaluation against ground truth."""

from __future__ import annotations

import html
import math
import shutil
import tempfile
import time
import zipfile
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
    info = ctx.records.latest_head(ctx.project_id)
    if info is None:
        raise gr.Error("No trained head yet: label two classes and press Train.")
    out = _out_dir(ctx)
    weights, meta = ctx.engine.export_head(info.id, out)
    bundle = out / f"{weights.parent.name}.zip"  # one download: the folder predict reads, zipped
    with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in (weights, meta):
            zf.write(f, f"{weights.parent.name}/{f.name}")
    shutil.rmtree(weights.parent)
    return {
        "export_files": [str(bundle)],
        "export_msg": f"Head {info.id} ({info.meta.backbone}, {len(info.classes)} classes): a zip of the folder "
        f"{weights.parent.name}/ (head.safetensors and head.json); unzip it and pass the folder to "
        "`python app.py predict --head FOLDER`.",
    }


def _pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


ADDED, REMOVED = "labels added", "labels removed (undo, erase, clear)"


def progress_table(ctx: AppContext) -> list[list]:
    """Rows (labelled pixels trained on, mIoU %, what changed since the fit before) of the evaluated training
    runs, in the order of labelled pixels: an undo is a point of its own, not a line drawn backwards."""
    rows, before = [], None
    for run in ctx.records.list_training_runs(ctx.project_id):
        miou = (run.metrics or {}).get("miou")
        if miou is not None:
            px = int(run.labelled_pixels)
            rows.append(
                [px, round(100 * float(miou), 2), REMOVED if before is not None and px < before else ADDED]
            )
            before = px
    return sorted(rows, key=lambda r: r[0])


@ui_errors
def evaluation(ctx: AppContext, sess: Session) -> dict:
    images = ctx.images()
    if not any(i.has_ground_truth for i in images):
        return {
            "eval_md": "No ground truth in this project. Import a VOC-layout dataset (Images tab → import "
            "from a server folder) whose SegmentationClass masks become ground truth; then "
            "every training is scored here.",
            "eval_plot": None,
        }
    trained = ctx.engine.training_images(ctx.project_id)
    rule = (
        f"The head is trained on the labels of {len(trained)} image(s) outside the val split; images in the val "
        "split keep their labels but are never trained on. Scored: the ground-truth images the head did not "
        "train on."
    )
    result = ctx.engine.evaluate(ctx.project_id)
    if result is None:
        return {
            "eval_md": (
                "Every ground-truth image has labels the head was trained on, so none can score it honestly: "
                "move some to the val split (Annotate tab, Split) to score the head on images it has not seen."
                if ctx.engine.head(ctx.project_id) is not None
                and not any(i.has_ground_truth and i.id not in {t.id for t in trained} for i in images)
                else "Ground truth found, but there is no trained head yet (or no features for the "
                "ground-truth images): label two classes and train."
            )
            + "\n\n"
            + rule,
            "eval_plot": None,
        }
    scores = result.scores
    absent = [n for n, v in zip(result.class_names, scores.per_class_iou, strict=True) if math.isnan(v)]
    lines = [
        f"**mIoU {_pct(scores.miou)}%** · pixel accuracy {_pct(scores.pixel_accuracy)}% on "
        f"{result.images} ground-truth image(s) ({result.split})"
        + (f"; {result.skipped} without features yet" if result.skipped else ""),
        "",
        rule,
        "",
        "| class | IoU % |",
        "|---|---:|",
    ]
    for name, iou in zip(result.class_names, scores.per_class_iou, strict=True):
        lines.append(f"| {md(name)} | {'no ground truth' if math.isnan(iou) else _pct(iou)} |")
    if absent:
        lines += [
            "",
            f"Left out of the mIoU (no ground-truth pixels in the scored images): {', '.join(map(md, absent))}.",
        ]
    rows = progress_table(ctx)
    labelled = sum(i.labelled_pixels for i in trained)
    if not any(r[0] == labelled for r in rows):  # a run whose scoring a newer edit superseded: score now
        rows = sorted(
            [*rows, [labelled, round(100 * float(scores.miou), 2), "current head"]], key=lambda r: r[0]
        )
    plot = None
    if rows:
        import pandas as pd

        plot = pd.DataFrame(rows, columns=["labelled pixels", "mIoU %", "fit"])
    return {"eval_md": "\n".join(lines), "eval_plot": plot}
