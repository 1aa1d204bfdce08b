"""The annotation panel's text for one image: its title and its labelling status."""

from __future__ import annotations

from storage import ClassInfo, ImageInfo
from webapp.context import AppContext, Session
from webapp.text import md


def image_title(ctx: AppContext, sess: Session, info: ImageInfo | None) -> str:
    if info is None:
        return "**No image yet.** Upload images or press **Load sample images** (Images tab) to start."
    ids = [i.id for i in ctx.images()]
    pos = f"{ids.index(info.id) + 1}/{len(ids)}" if info.id in ids else "?"
    return (
        f"**{md(info.name)}** <span class='muted'>&nbsp; image {pos} · {info.width}×{info.height} px · "
        f"split: {info.split}</span>"
    )


def image_status(ctx: AppContext, info: ImageInfo | None, classes: list[ClassInfo]) -> str:
    """Labelled pixels per class, prediction and uncertainty of one image (markdown)."""
    if info is None:
        return ""
    counts = ctx.records.labelled_pixel_counts(image_id=info.id)
    parts = []
    for c in classes:
        n = counts.get(c.index, 0)
        if n:
            parts.append(f"<span class='swatch' style='background:{c.colour}'></span>{md(c.name)}: {n:,}")
    labelled = " · ".join(parts) if parts else "no labels yet"
    points = len(ctx.records.points(info.id))
    pred = "prediction ✓" if info.has_prediction else "no prediction yet"
    unc = f" · need for labels {info.uncertainty:.2f}" if info.uncertainty is not None else ""
    feats = ""
    if not ctx.engine.has_features(info.id):
        failure = ctx.engine.feature_failure(info.id)
        feats = f" · ⚠ {md(failure)}" if failure else " · computing features…"
    pts = f" · {points} point{'s' if points != 1 else ''}" if points else ""
    h, w = ctx.engine.project_config(ctx.project_id).token_grid(
        (info.height, info.width), ctx.engine.backbone.spec.patch_size
    )
    feats += f" · {w} x {h} tokens ({info.width / w:.0f} px a token)"
    return f"**Labelled pixels:** {labelled}{pts}  \n{pred}{unc}{feats}"
