"""Layout of the Annotate tab's left side: classes, tools, the editor / point canvas, navigation, gallery."""

from __future__ import annotations

import gradio as gr

from webapp import render
from webapp.callbacks_annotate import ERASE, POINT, SCRIBBLE
from webapp.callbacks_views import SORTS
from webapp.ui import UI


def build_tools(ui: UI) -> None:
    ui.add(class_style=gr.HTML("", elem_id="class-style", padding=False))
    with gr.Row(equal_height=True):
        ui.add(active_class=gr.Radio([], label="Active class (keys 1–9)", elem_id="active-class", scale=4))
        with gr.Column(scale=1, min_width=170):
            ui.add(quick_class_name=gr.Textbox(placeholder="new class name", show_label=False, container=False,
                                               elem_id="quick-class-name"))
            ui.add(quick_add_btn=gr.Button("+ Add class", size="sm", elem_id="quick-add-btn"))
    with gr.Row(equal_height=True, elem_id="tool-row"):
        ui.add(mode=gr.Radio([SCRIBBLE, ERASE, POINT], value=SCRIBBLE, label="Tool", elem_id="mode", scale=3,
                             min_width=240))
        ui.add(brush_size=gr.Slider(1, 60, value=8, step=1, label="Brush size", scale=2, min_width=160,
                                    elem_id="brush-size"))
        ui.add(point_radius=gr.Slider(2, 30, value=8, step=1, label="Point size", visible=False, scale=2,
                                      min_width=160))
    with gr.Row(elem_id="action-row"):
        ui.add(undo_btn=gr.Button("↶ Undo", size="sm", interactive=False, elem_id="undo-btn", scale=0,
                                  min_width=90))
        ui.add(redo_btn=gr.Button("↷ Redo", size="sm", interactive=False, elem_id="redo-btn", scale=0,
                                  min_width=90))
        ui.add(clear_btn=gr.Button("Clear image", size="sm", variant="stop", elem_id="clear-btn", scale=0,
                                   min_width=110))
        ui.add(train_btn=gr.Button("Train now", size="sm", variant="primary", elem_id="train-btn", scale=0,
                                   min_width=110))
        ui.add(auto_train=gr.Checkbox(value=True, label="Auto-retrain after each edit", elem_id="auto-train",
                                      container=False, scale=1))


def build_canvas(ui: UI) -> None:
    ui.add(title=gr.Markdown("", elem_id="title"))
    ui.add(editor=gr.ImageEditor(
        type="numpy", image_mode="RGBA", format="png", label="Scribbles", show_label=False,
        sources=(), transforms=(), elem_id="editor", height=620,
        brush=gr.Brush(colors=[("#ff0000", render.LABEL_ALPHA)], color_mode="fixed"),
        eraser=gr.Eraser(), layers=gr.LayerOptions(allow_additional_layers=False, layers=["labels"]),
        buttons=["fullscreen"],
    ))
    ui.add(points_img=gr.Image(type="numpy", format="jpeg", interactive=False, show_label=False,
                               visible=False, elem_id="points-img", height=620, buttons=["fullscreen"]))
    gr.Markdown("<span class='muted'>Scribble paints the active class · Erase removes labels under the brush · "
                "Point: a click adds a point, a click on a point removes it · zoom and pan with the editor's "
                "buttons · every edit is saved at once.</span>")
    ui.add(info=gr.Markdown("", elem_id="image-info"))
    with gr.Row():
        ui.add(prev_btn=gr.Button("◀ Previous (p)", size="sm", elem_id="prev-btn"))
        ui.add(next_btn=gr.Button("Next (n) ▶", size="sm", elem_id="next-btn"))
        ui.add(uncertain_btn=gr.Button("Next most uncertain (u)", size="sm", elem_id="uncertain-btn"))


def build_gallery(ui: UI) -> None:
    with gr.Row(equal_height=True):
        ui.add(sort=gr.Dropdown(list(SORTS), value=SORTS[0], label="Sort images", scale=1, elem_id="sort"))
        gr.Markdown("<span class='muted'>Caption: name | labelled pixels per class | prediction | "
                    "uncertainty (mean entropy; high = label it next).</span>")
    ui.add(gallery=gr.Gallery(label="Images", show_label=False, columns=8, height=260, allow_preview=False, fit_columns=False,
                              object_fit="cover", elem_id="gallery", format="jpeg"))
