"""Image callbacks: uploads (files, a folder's files, zips), sample images, server-side folder and VOC
imports, split and deletion."""

from __future__ import annotations

import contextlib
import html
import os
import time
from collections.abc import Sequence
from pathlib import Path

import gradio as gr

from core.tiff import TiffError, TiffOptions
from storage import SPLITS, ImportReport, ValidationError
from webapp import callbacks_annotate as annotate
from webapp import callbacks_classes, imagepanel
from webapp import callbacks_views as views
from webapp.context import AppContext, Session
from webapp.errors import ui_errors
from webapp.samples import sample_files
from webapp.text import md

MAX_LISTED = 8


def report_markdown(report: ImportReport, what: str) -> str:
    lines = [f"**{what}:** {md(report.summary())}"]
    if report.classes_added:
        lines.append("Classes added: " + md(", ".join(report.classes_added)))
    lines += [f"- ℹ {md(note)}" for note in report.notes[:MAX_LISTED]]
    for name, reason in report.failed[:MAX_LISTED]:
        lines.append(f"- ✗ {md(name)}: {md(reason)}")
    if len(report.failed) > MAX_LISTED:
        lines.append(f"- … and {len(report.failed) - MAX_LISTED} more failures")
    for name, reason in report.skipped[:3]:
        lines.append(f"- skipped {md(name)}: {md(reason)}")
    if report.duplicates:
        more = (
            f" and {len(report.duplicates) - MAX_LISTED} more" if len(report.duplicates) > MAX_LISTED else ""
        )
        lines.append(
            "Already in the project (same pixels, not added again): "
            + md(", ".join(report.duplicates[:MAX_LISTED]))
            + more
        )
    return "  \n".join(lines)


def _paths(files: Sequence | str | None) -> list[str]:
    if files is None:
        return []
    if isinstance(files, str | os.PathLike):
        files = [files]
    out = []
    for f in files:
        path = getattr(f, "name", f)  # gradio may hand file objects or plain paths
        if path and Path(path).is_file():
            out.append(str(path))
    return out


def after_import(ctx: AppContext, sess: Session, report: ImportReport, what: str, sort: str) -> dict:
    """Tell the user, refresh the gallery, open the first new image if none is open (the engine's import
    queued the features, and a retrain for imported labels)."""
    if report.failed and not report.image_ids:
        gr.Warning(f"{what}: nothing imported. " + "; ".join(f"{n}: {r}" for n, r in report.failed[:3]))
    elif report.failed:
        gr.Warning(f"{what}: {len(report.failed)} file(s) could not be imported (see the report).")
    elif report.imported:
        gr.Info(f"{what}: {len(report.imported)} image(s) added; features are computed in the background.")
    out: dict = {"import_report": report_markdown(report, what)}
    if sess.image_id is None and report.image_ids:
        sess.image_id = report.image_ids[0]
    if report.classes_added:  # new classes must reach the class list, the toggles and the editor
        out |= callbacks_classes.class_outputs(ctx, sess, None)
    elif sess.image_id is not None:
        out |= annotate.show(ctx, sess, sess.image_id)
    out |= views.gallery(ctx, sess, sort)
    out["timer"] = gr.Timer(active=True)  # features are being computed: show their progress
    return out


def resolution_outputs(ctx: AppContext) -> dict:
    """The project's resolution in the header and the Images tab."""
    cfg = ctx.engine.project_config(ctx.project_id)
    return {
        "header": header_text(ctx),
        "resolution": cfg.resolution,
        "resolution_md": f"This project: **{md(cfg.describe())}**.",
    }


def header_text(ctx: AppContext) -> str:
    licence = ctx.engine.backbone.spec.licence  # the pretrained weights' (DINOv3's is not Apache-2.0)
    backbone = f"{ctx.engine.backbone_name} ({ctx.engine.weights_id}; its weights' licence: {licence})"
    return (
        f"## probeseg · {md(ctx.project_name)} <span class='muted'>&nbsp; frozen {backbone}, "
        f"{ctx.engine.project_config(ctx.project_id).describe()}, + a linear head trained on your scribbles "
        "and points</span>"
    )


@ui_errors
def set_resolution(ctx: AppContext, sess: Session, resolution: str | None) -> dict:
    """A new resolution for the project: features are recomputed at it (progress in the status line) and the
    head retrains; labels are untouched."""
    before = ctx.engine.project_config(ctx.project_id)
    after = ctx.engine.set_resolution(ctx.project_id, resolution)
    out = resolution_outputs(ctx)
    if after != before:
        gr.Info(f"Resolution {after.resolution}: features are being recomputed; the head retrains after.")
        out["timer"] = gr.Timer(active=True)
        if sess.image_id is not None:
            out |= annotate.show(ctx, sess, sess.image_id)
    return out


def tiff_options(
    plane: str | None, channels: str | None, low: float | None, high: float | None
) -> TiffOptions:
    """The TIFF settings of the Images tab as a TiffOptions (the one place they are parsed)."""
    try:
        return TiffOptions(
            plane=int(str(plane)) if str(plane or "").strip() else None,
            channels=tuple(int(c) for c in str(channels).replace(" ", "").split(","))
            if str(channels or "").strip()
            else None,
            low=0.5 if low is None else float(low),
            high=99.5 if high is None else float(high),
        )
    except ValueError as exc:
        msg = (
            str(exc)
            if isinstance(exc, TiffError)
            else "plane and channels take whole numbers, e.g. 0 or 2,0,1"
        )
        raise gr.Error(f"TIFF settings: {html.escape(msg)}") from None


@ui_errors
def upload(
    ctx: AppContext,
    sess: Session,
    files,
    sort: str,
    plane: str | None = None,
    channels: str | None = None,
    low: float | None = None,
    high: float | None = None,
) -> dict:
    paths = _paths(files)
    if not paths:
        return {}
    kinds = {p: ctx.records.zip_kind(p) for p in paths}
    bundles = [p for p in paths if kinds[p] is not None]
    loose = [p for p in paths if kinds[p] is None]
    out: dict = {"upload_files": None, "upload_dir": None}
    if bundles:  # a project archive or a VOC zip is a project, never loose images: offer to import it
        _discard_uploads(ctx, bundles[1:] + ([sess.bundle[0]] if sess.bundle else []))
        out |= offer_bundle(sess, bundles[0], str(kinds[bundles[0]]), len(bundles) - 1)
    if not loose:
        return out
    tiff = tiff_options(plane, channels, low, high)
    try:
        report = ctx.engine.import_uploads(ctx.project_id, loose, tiff)
    finally:
        _discard_uploads(ctx, loose)  # imported (or refused): the temporary copies are not needed any more
    return after_import(ctx, sess, report, "Upload", sort) | out


def offer_bundle(sess: Session, path: str, kind: str, others: int) -> dict:
    """Show the choice for an uploaded project archive or VOC zip (kept until it is imported or replaced)."""
    sess.bundle = (path, kind)
    name = Path(path).name
    what = (
        "a probeseg project archive: it becomes a project of its own"
        if kind == "project"
        else "a PASCAL VOC dataset: import it as a new project, or merge its images, labels, ground truth and "
        "splits into this one (classes matched by name)"
    )
    note = (
        f" ({others} more archive(s) in the same upload were left out: upload them one at a time)"
        if others
        else ""
    )
    return {
        "bundle_box": gr.update(visible=True),
        "bundle_md": f"**{md(name)}** is {what}.{note}",
        "bundle_name": Path(name).stem.removesuffix("-project").removesuffix("-voc") or "imported",
        "bundle_merge_btn": gr.update(visible=kind == "voc"),
    }


@ui_errors
def import_bundle(
    ctx: AppContext, sess: Session, name: str, merge: bool, sort: str, zero_is_unlabelled: bool = False
) -> dict:
    """Import the offered archive: as a new project (`name`), or a VOC zip merged into this project
    (`zero_is_unlabelled`: its label PNGs use 0 = unlabelled)."""
    if sess.bundle is None:
        return {"bundle_box": gr.update(visible=False)}
    path, _kind = sess.bundle
    into = ctx.project_id if merge else None
    project, report = ctx.engine.import_bundle(
        path, None if merge else (name.strip() or None), into, bool(zero_is_unlabelled)
    )
    _discard_uploads(ctx, [path])
    sess.bundle = None
    hide = {"bundle_box": gr.update(visible=False)}
    if merge and report is not None:
        return after_import(ctx, sess, report, f"{Path(path).name} merged", sort) | hide
    info = ctx.records.get_project(project.id)
    gr.Info(f"Project {html.escape(info.name)} created with {info.image_count} image(s).")
    text = (
        f"**Project {md(info.name)} created** with {info.image_count} image(s) and {info.class_count} "
        f"class(es). This page shows project {md(ctx.project_name)}: open the new one with "
        f"`python app.py serve --project {info.name}`; the REST API serves it at "
        f"`/api/v1/projects/{info.name}` already."
    )
    return hide | {"import_report": text}


def _discard_uploads(ctx: AppContext, paths: Sequence[str]) -> None:
    if not ctx.upload_dir:
        return
    root = Path(ctx.upload_dir).resolve()
    cutoff = time.time() - 60
    for p in paths:
        path = Path(p).resolve()
        if path.is_relative_to(root) and path != root:
            with contextlib.suppress(OSError):
                cutoff = max(cutoff, path.stat().st_mtime)
            path.unlink(missing_ok=True)
            if path.parent != root and not any(path.parent.iterdir()):
                path.parent.rmdir()
    # Gradio's upload parser leaves an empty part file behind (also for a cancelled upload): those no newer
    # than the uploads just handled (or a minute old) go; a newer one may be an upload in flight
    for stray in root.glob("tmp*"):
        with contextlib.suppress(OSError):
            if stray.is_file() and stray.stat().st_size == 0 and stray.stat().st_mtime <= cutoff:
                stray.unlink()


@ui_errors
def load_samples(ctx: AppContext, sess: Session, sort: str) -> dict:
    report = ctx.engine.import_uploads(ctx.project_id, sample_files())
    return after_import(ctx, sess, report, "Sample images", sort)


def _server_folder(ctx: AppContext, folder: str) -> Path:
    """The folder typed by the user, if it lies inside an --import-root (and outside the data folder, so
    no project's stored files can be imported into another); errors never say what exists elsewhere."""
    if not ctx.allow_server_paths:
        raise gr.Error(
            "Importing folders on the server is off on this server (start it with --import-root DIR "
            "to allow it); upload files instead."
        )
    if not str(folder or "").strip():
        raise gr.Error(
            "Enter the path of a folder inside the server's import folders: "
            + html.escape(", ".join(ctx.import_roots))
        )
    try:
        path = ctx.engine.server_path(folder.strip(), ctx.import_roots)
    except ValidationError as exc:
        raise gr.Error(html.escape(str(exc))) from None
    if not path.is_dir():
        raise gr.Error(f"{html.escape(str(path))} is not a folder.")
    return path


@ui_errors
def import_folder(
    ctx: AppContext,
    sess: Session,
    folder: str,
    sort: str,
    plane: str | None = None,
    channels: str | None = None,
    low: float | None = None,
    high: float | None = None,
) -> dict:
    tiff = tiff_options(plane, channels, low, high)
    report = ctx.engine.import_folder(ctx.project_id, _server_folder(ctx, folder), ctx.import_roots, tiff)
    return after_import(ctx, sess, report, "Folder import", sort)


@ui_errors
def import_voc(
    ctx: AppContext, sess: Session, folder: str, labels_dir: str, sort: str, zero_is_unlabelled: bool = False
) -> dict:
    root = _server_folder(ctx, folder)
    labels = (
        _server_folder(ctx, str(root / labels_dir.strip())) if labels_dir and labels_dir.strip() else None
    )
    report = ctx.engine.import_voc(ctx.project_id, root, labels, ctx.import_roots, bool(zero_is_unlabelled))
    return after_import(ctx, sess, report, "VOC import", sort)


@ui_errors
def import_coco(
    ctx: AppContext, sess: Session, folder: str, coco_file: str, as_ground_truth: bool, sort: str
) -> dict:
    images = _server_folder(ctx, folder)
    if not str(coco_file or "").strip():
        raise gr.Error("Enter the path of the COCO JSON file (inside the server's import folders).")
    try:
        path = ctx.engine.server_path(coco_file.strip(), ctx.import_roots)
    except ValidationError as exc:
        raise gr.Error(html.escape(str(exc))) from None
    report = ctx.engine.import_coco(ctx.project_id, path, images, bool(as_ground_truth), ctx.import_roots)
    return after_import(ctx, sess, report, "COCO import", sort)


@ui_errors
def set_split(ctx: AppContext, sess: Session, split: str) -> dict:
    if sess.image_id is None or split not in SPLITS:
        return {}
    info = ctx.engine.set_split(sess.image_id, split)
    return {"title": imagepanel.image_title(ctx, sess, info)}


@ui_errors
def delete_image(ctx: AppContext, sess: Session, sort: str) -> dict:
    if sess.image_id is None:
        return {}
    name = ctx.records.get_image(sess.image_id).name
    order = sess.order or [i.id for i in ctx.images()]
    pos = order.index(sess.image_id) if sess.image_id in order else 0
    ctx.engine.delete_image(sess.image_id)
    remaining = [i for i in order if i != sess.image_id and ctx.engine.image_exists(i)]
    gr.Info(f"Deleted {html.escape(name)} and its labels.")
    nxt = remaining[min(pos, len(remaining) - 1)] if remaining else None
    sess.image_id = None
    return annotate.show(ctx, sess, nxt) | views.gallery(ctx, sess, sort)
