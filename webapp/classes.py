"""Layout of the Classes tab."""

from __future__ import annotations

import gradio as gr

from webapp.callbacks_classes import DELETE_MODES, KEEP
from webapp.ui import UI


def build_classes(ui: UI) -> None:
    gr.Markdown(
        "Each class has one colour, used in the brush, the overlays and the exports. Keys 1–9 pick "
        "the first nine classes while annotating; reorder classes to change the keys."
    )
    ui.add(classes_table=gr.HTML("", elem_id="classes-table"))
    with gr.Row(equal_height=True):
        ui.add(
            new_class_name=gr.Textbox(
                label="New class", placeholder="e.g. cat", scale=3, elem_id="new-class-name"
            )
        )
        ui.add(
            new_class_colour=gr.ColorPicker(
                value="#1f77b4", label="Colour", scale=1, min_width=260, elem_id="new-class-colour"
            )
        )
        ui.add(
            new_use_colour=gr.Checkbox(
                value=False, label="Use this colour (else a distinct one is chosen)", scale=2
            )
        )
        ui.add(add_btn=gr.Button("Add class", variant="primary", scale=1, elem_id="add-class-btn"))
    with gr.Group():
        with gr.Row(equal_height=True):
            ui.add(
                class_pick=gr.Dropdown(
                    [], label="Class", scale=2, elem_id="class-pick", allow_custom_value=True
                )
            )
            ui.add(class_name=gr.Textbox(label="Name", scale=2, elem_id="class-name"))
            ui.add(rename_btn=gr.Button("Rename", scale=1))
            # wide enough for the picker's panel (at scale 1 its right side was cut off)
            ui.add(
                class_colour=gr.ColorPicker(label="Colour", scale=1, min_width=260, elem_id="class-colour")
            )
            ui.add(recolour_btn=gr.Button("Recolour", scale=1))
        with gr.Row(equal_height=True):
            ui.add(up_btn=gr.Button("Move up ▲", scale=1))
            ui.add(down_btn=gr.Button("Move down ▼", scale=1))
            ui.add(
                delete_mode=gr.Radio(
                    list(DELETE_MODES), value=KEEP, label="When deleting a class in use", scale=3
                )
            )
            ui.add(reassign_to=gr.Dropdown([], label="Reassign to", scale=2, allow_custom_value=True))
            ui.add(delete_btn=gr.Button("Delete class", variant="stop", scale=1, elem_id="delete-class-btn"))
