"""Layout of the Annotate tab's left side: the canvas (with its own tools), navigation, the gallery."""

from __future__ import annotations

import gradio as gr

from webapp import canvas
from webapp.callbacks_views import SORTS
from webapp.inline import InlineGallery
from webapp.ui import UI


def build_tools(ui: UI) -> None:
    with gr.Row(equal_height=True, elem_id="tool-row"):
        ui.add(title=gr.Markdown("", elem_id="title"))
        ui.add(
            quick_class_name=gr.Textbox(
                placeholder="new class name",
                show_label=False,
                container=False,
                elem_id="quick-class-name",
                scale=0,
                min_width=150,
            )
        )
        ui.add(
            quick_add_btn=gr.Button("+ Add class", size="sm", elem_id="quick-add-btn", scale=0, min_width=100)
        )
        ui.add(
            train_btn=gr.Button(
                "Train now", size="sm", variant="primary", elem_id="train-btn", scale=0, min_width=100
            )
        )


def build_canvas(ui: UI) -> None:
    ui.add(canvas=canvas.build_canvas())
    with gr.Row(equal_height=True):
        ui.add(prev_btn=gr.Button("◀ Previous (p)", size="sm", elem_id="prev-btn"))
        ui.add(next_btn=gr.Button("Next (n) ▶", size="sm", elem_id="next-btn"))
        ui.add(uncertain_btn=gr.Button("Next most uncertain (u)", size="sm", elem_id="uncertain-btn"))
        ui.add(suggest_btn=gr.Button("Suggest where to label (g)", size="sm", elem_id="suggest-btn"))
    ui.add(info=gr.Markdown("", elem_id="image-info"))
    gr.Markdown(
        "<span class='muted'>Keys: 1–9 class · b brush · e eraser · o points · h pan (or space / middle "
        "button drag; wheel zooms; f fits) · [ ] size · Ctrl+Z undo · Ctrl+Shift+Z redo. Every edit is "
        "saved as you make it; the line under the image says when the server has it.</span>"
    )


def build_suggestions(ui: UI) -> None:
    """The strip "g" fills, at the top of the side column: in view at 1366x768 whatever the canvas's size, and
    showing it moves nothing on the canvas's side."""
    ui.add(
        suggestions=InlineGallery(
            label="Where labels help most (click one to zoom there)",
            columns=5,
            height=120,
            allow_preview=False,
            object_fit="contain",
            visible=False,
            elem_id="suggestions",
            format="jpeg",
        )
    )


def build_gallery(ui: UI) -> None:
    with gr.Row(equal_height=True):
        ui.add(sort=gr.Dropdown(list(SORTS), value=SORTS[0], label="Sort images", scale=1, elem_id="sort"))
        gr.Markdown(
            "<span class='muted'>Caption: name | labelled pixels per class | prediction | "
            "need for labels (entropy where still unlabelled; high = label it next).</span>"
        )
        ui.add(page_prev_btn=gr.Button("◀", size="sm", scale=0, min_width=40, elem_id="page-prev"))
        ui.add(gallery_range=gr.Markdown("", elem_id="gallery-range"))
        ui.add(page_next_btn=gr.Button("▶", size="sm", scale=0, min_width=40, elem_id="page-next"))
    ui.add(
        gallery=InlineGallery(
            label="Images",
            show_label=False,
            columns=8,
            height=260,
            allow_preview=False,
            fit_columns=False,
            object_fit="cover",
            elem_id="gallery",
            format="jpeg",
        )
    )
