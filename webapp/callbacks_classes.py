"""Class callbacks: add, rename, recolour, reorder and delete classes; one colour per class everywhere."""

from __future__ import annotations

import html

import gradio as gr

from storage import ClassInfo
from webapp import callbacks_annotate as annotate
from webapp import render
from webapp.context import AppContext, Session
from webapp.errors import ui_errors

KEEP, REASSIGN, DROP = "Only if unused", "Reassign its labels to…", "Delete its labels"
DELETE_MODES = (KEEP, REASSIGN, DROP)


def table_html(ctx: AppContext, classes: list[ClassInfo]) -> str:
    counts = ctx.records.labelled_pixel_counts(ctx.project_id)
    rows = []
    for c in classes:
        key = str(c.index + 1) if c.index < 9 else ""
        attrs = (
            f"data-class-id='{c.id}' data-name='{html.escape(c.name)}' data-pixels='{counts.get(c.index, 0)}'"
        )
        rows.append(
            f"<tr {attrs}><td>{key}</td><td><span class='swatch big' style='background:{c.colour}'></span>"
            f"<code>{c.colour}</code></td><td>{html.escape(c.name)}</td><td>{counts.get(c.index, 0):,}</td></tr>"
        )
    return (
        "<table class='classes'><thead><tr><th>key</th><th>colour</th><th>class</th>"
        "<th>labelled pixels</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


@ui_errors
def refresh_table(ctx: AppContext, sess: Session) -> dict:
    """The table with today's pixel counts (the Classes tab shows it)."""
    return {"classes_table": table_html(ctx, ctx.classes())}


def _choices(classes: list[ClassInfo]) -> list[tuple[str, str]]:
    return [(f"{c.index + 1}. {c.name}", str(c.id)) for c in classes]


def class_outputs(ctx: AppContext, sess: Session, selected: int | None = None) -> dict:
    """Everything that shows the class list: the table, pickers, view toggles and the annotation panel."""
    classes = ctx.classes()
    ids = [c.id for c in classes]
    pick = str(selected) if selected in ids else (str(ids[0]) if ids else None)
    pick_colour = next((c.colour for c in classes if str(c.id) == pick), "#ff0000")
    pick_name = next((c.name for c in classes if str(c.id) == pick), "")
    out = {
        "classes_table": table_html(ctx, classes),
        "class_pick": gr.update(choices=_choices(classes), value=pick),
        "class_name": pick_name,
        "class_colour": pick_colour,
        "reassign_to": gr.update(choices=_choices(classes), value=None),
    }
    return out | annotate.show(ctx, sess, sess.image_id)


def _selected(ctx: AppContext, value: str | None) -> int:
    """The picked class's id; a value that is not one of this project's classes (the picker accepts any
    value, so a page open across a server restart keeps working) is refused."""
    if value in (None, ""):
        raise gr.Error("Select a class first.")
    try:
        cid = int(str(value))
    except ValueError:
        cid = -1
    if cid not in {c.id for c in ctx.classes()}:
        raise gr.Error("That class is not in this project any more; pick one from the list.")
    return cid


def _check_colour_free(classes: list[ClassInfo], colour: str, exclude: int | None = None) -> str:
    hexc = render.normalise_colour(colour)
    for c in classes:
        if c.id != exclude and c.colour.lower() == hexc:
            raise gr.Error(
                f"{hexc} is already the colour of '{html.escape(c.name)}'; every class needs its own "
                "colour so strokes map to one class."
            )
    return hexc


@ui_errors
def pick(ctx: AppContext, sess: Session, value: str | None) -> dict:
    if not value:
        return {}
    c = ctx.records.get_class(int(value))
    return {"class_name": c.name, "class_colour": c.colour}


@ui_errors
def add(ctx: AppContext, sess: Session, name: str, colour: str | None, use_colour: bool) -> dict:
    name = (name or "").strip()
    if not name:
        raise gr.Error("Type a name for the new class.")
    classes = ctx.classes()
    hexc = _check_colour_free(classes, colour) if use_colour and colour else None
    c = ctx.engine.add_class(ctx.project_id, name, hexc)
    sess.select_class = c.id  # the canvas switches its brush to the new class
    gr.Info(
        f"Added class '{html.escape(c.name)}' (key {c.index + 1})."
        if c.index < 9
        else f"Added class '{html.escape(c.name)}'."
    )
    return class_outputs(ctx, sess, c.id) | {"new_class_name": ""}


@ui_errors
def quick_add(ctx: AppContext, sess: Session, name: str) -> dict:
    """Add a class from the annotation panel (distinct colour chosen automatically) and make it active."""
    return add(ctx, sess, name, None, False) | {"quick_class_name": ""}


@ui_errors
def rename(ctx: AppContext, sess: Session, value: str | None, name: str) -> dict:
    cid = _selected(ctx, value)
    if not (name or "").strip():
        raise gr.Error("Type the new name.")
    ctx.engine.rename_class(ctx.project_id, cid, name.strip())
    return class_outputs(ctx, sess, cid)


@ui_errors
def recolour(ctx: AppContext, sess: Session, value: str | None, colour: str) -> dict:
    cid = _selected(ctx, value)
    ctx.engine.recolour_class(ctx.project_id, cid, _check_colour_free(ctx.classes(), colour, exclude=cid))
    return class_outputs(ctx, sess, cid)


@ui_errors
def move(ctx: AppContext, sess: Session, value: str | None, delta: int) -> dict:
    cid = _selected(ctx, value)
    classes = ctx.classes()
    index = next(c.index for c in classes if c.id == cid)
    target = index + int(delta)
    if not 0 <= target < len(classes):
        return {}
    ctx.engine.move_class(ctx.project_id, cid, target)
    return class_outputs(ctx, sess, cid)


@ui_errors
def delete(ctx: AppContext, sess: Session, value: str | None, mode: str, reassign_to: str | None) -> dict:
    cid = _selected(ctx, value)
    c = ctx.records.get_class(cid)
    usage = ctx.records.class_usage(cid)
    if len(ctx.classes()) <= 1:
        raise gr.Error("A project needs at least one class; add another class before deleting this one.")
    if usage.in_use and mode == KEEP:
        raise gr.Error(
            f"Class '{html.escape(c.name)}' is in use ({usage.labelled_pixels:,} labelled pixels, "
            f"{usage.annotations} annotation version(s), {usage.ground_truth_images} ground-truth mask(s)). "
            f"Nothing was deleted. Choose '{REASSIGN}' or '{DROP}' and press Delete again."
        )
    target = None
    if usage.in_use and mode == REASSIGN:
        if not reassign_to:
            raise gr.Error("Choose the class that gets the labels.")
        target = _selected(ctx, reassign_to)
        if target == cid:
            raise gr.Error("Choose another class than the one being deleted.")
    api_mode = None if not usage.in_use else ("reassign" if mode == REASSIGN else "delete_labels")
    ctx.engine.delete_class(ctx.project_id, cid, api_mode, target)
    if usage.in_use:
        sess.nonce += 1  # the canvas reloads the labels that changed class or went away
    gr.Info(f"Deleted class '{html.escape(c.name)}'.")
    return class_outputs(ctx, sess, target)
