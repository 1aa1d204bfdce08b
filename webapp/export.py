"""Layout of the Evaluation and Export tabs."""

from __future__ import annotations

import gradio as gr

from webapp.ui import UI


def build_evaluation(ui: UI) -> None:
    ui.add(eval_refresh=gr.Button("Evaluate the current head", elem_id="eval-refresh"))
    with gr.Row():
        with gr.Column():
            ui.add(eval_md=gr.Markdown("", elem_id="eval-md"))
        with gr.Column():
            ui.add(
                eval_plot=gr.ScatterPlot(
                    x="labelled pixels",
                    y="mIoU %",
                    color="fit",
                    title="mIoU against the labelled pixels trained on (each fit a point)",
                    elem_id="eval-plot",
                    height=320,
                )
            )


def build_export(ui: UI, links: str) -> None:
    ui.add(
        export_pred=gr.Checkbox(
            value=False,
            label="VOC and COCO: export the current head's predictions (every image) instead of the labels",
        )
    )
    ui.add(export_links=gr.HTML(links, elem_id="export-links"))
    ui.add(export_head_btn=gr.Button("Trained head", elem_id="export-head"))
    ui.add(export_msg=gr.Markdown(""))
    ui.add(
        export_files=gr.File(
            label="Download", file_count="multiple", interactive=False, elem_id="export-files"
        )
    )
