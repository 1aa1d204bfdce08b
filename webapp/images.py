"""Layout of the Images tab: uploads, sample images, server-side imports, split and deletion."""

from __future__ import annotations

import gradio as gr

from storage import SPLITS
from webapp.ui import UI


def build_images(ui: UI, allow_server_paths: bool) -> None:
    with gr.Row():
        with gr.Column():
            ui.add(upload_files=gr.File(label="Upload images or zip files", file_count="multiple",
                                        file_types=["image", ".zip"], type="filepath", elem_id="upload-files"))
        with gr.Column():
            ui.add(upload_dir=gr.File(label="Upload a folder", file_count="directory", type="filepath",
                                      elem_id="upload-dir"))
        with gr.Column():
            gr.Markdown("**No images at hand?** Load a few photos that ship with scikit-image (no network needed).")
            ui.add(samples_btn=gr.Button("Load sample images", variant="primary", elem_id="samples-btn"))
    ui.add(import_report=gr.Markdown("", elem_id="import-report"))
    with gr.Accordion("Import from a folder on the server (--import-root)", open=False, visible=allow_server_paths):
        with gr.Row(equal_height=True):
            ui.add(server_folder=gr.Textbox(label="Folder on the server", placeholder="/data/my-images", scale=3))
            ui.add(import_folder_btn=gr.Button("Import images", scale=1))
        with gr.Row(equal_height=True):
            ui.add(voc_labels=gr.Textbox(label="VOC: optional folder of label PNGs (scribbles, 255 = unlabelled)",
                                         scale=3))
            ui.add(import_voc_btn=gr.Button("Import VOC dataset", scale=1))
        gr.Markdown("<span class='muted'>A VOC dataset folder holds JPEGImages/, SegmentationClass/ (becomes "
                    "ground truth for the Evaluation tab), ImageSets/Segmentation/{train,val}.txt and optionally "
                    "classes.txt.</span>")
    with gr.Row(equal_height=True):
        ui.add(split=gr.Radio(list(SPLITS), label="Split of the current image", scale=3, elem_id="split"))
        ui.add(delete_image_btn=gr.Button("Delete current image", variant="stop", size="sm", scale=1,
                                          elem_id="delete-image-btn"))
