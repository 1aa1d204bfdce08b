"""Layout of the Annotate tab's right side: the analysis view and its controls, refinement, training status."""

from __future__ import annotations

import gradio as gr

from webapp.callbacks_views import KM, VIEW_MODES
from webapp.inline import InlineImage
from webapp.ui import UI


def build_views(ui: UI) -> None:
    """What the canvas does not show (its prediction layer has the class toggles, confidence and
    uncertainty): the backbone's K-means and PCA views, where to label next, labels beside the prediction."""
    ui.add(view_mode=gr.Radio(list(VIEW_MODES), value=KM, label="View", elem_id="view-mode"))
    ui.add(
        view_img=InlineImage(
            type="numpy",
            format="jpeg",
            interactive=False,
            show_label=False,
            height=480,
            elem_id="view-img",
            buttons=["download", "fullscreen"],
        )
    )
    ui.add(view_note=gr.Markdown("", elem_id="view-note"))
    with gr.Row():
        ui.add(opacity=gr.Slider(0, 1, value=0.55, step=0.05, label="Overlay opacity", elem_id="opacity"))
        ui.add(k=gr.Slider(2, 12, value=5, step=1, label="K-means clusters (k)", elem_id="k-slider"))
    with gr.Group():
        with gr.Row(equal_height=True):
            ui.add(
                refine_threshold=gr.Slider(
                    0.5,
                    1.0,
                    value=0.9,
                    step=0.01,
                    label="Refine: confidence threshold",
                    scale=3,
                    elem_id="refine-threshold",
                )
            )
            ui.add(refine_btn=gr.Button("Refine", scale=1, elem_id="refine-btn"))
        gr.Markdown(
            "<span class='muted'>Refine turns the prediction's pixels above the threshold (of the classes "
            "the canvas shows) into editable labels where the image has none, so you correct mistakes instead of "
            "labelling from scratch. Undo removes them.</span>"
        )
