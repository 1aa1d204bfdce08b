"""Layout of the Images tab: uploads, sample images, server-side imports, split and deletion."""

from __future__ import annotations

import gradio as gr

from storage import SPLITS
from webapp.ui import UI


def build_images(ui: UI, allow_server_paths: bool) -> None:
    with gr.Row():
        with gr.Column():
            ui.add(
                upload_files=gr.File(
                    label="Upload images or zips (a project archive or a VOC zip is offered as a project)",
                    file_count="multiple",
                    file_types=["image", ".zip"],
                    type="filepath",
                    elem_id="upload-files",
                )
            )
        with gr.Column():
            ui.add(
                upload_dir=gr.File(
                    label="Upload a folder", file_count="directory", type="filepath", elem_id="upload-dir"
                )
            )
        with gr.Column():
            gr.Markdown(
                "**No images at hand?** Load a few photos that ship with scikit-image (no network needed)."
            )
            ui.add(samples_btn=gr.Button("Load sample images", variant="primary", elem_id="samples-btn"))
    with gr.Accordion("Resolution: image pixels per token", open=False, elem_id="resolution-box"):
        gr.Markdown(
            "<span class='muted'>How finely the backbone sees this project's images. <b>auto</b>: a small "
            "image's longer side at 32 tokens (objects at the size the backbone learnt them), a big one's up "
            "to a token per patch (DINOv2: 14 px) within 4,096 tokens (tiles of 37 tokens blended across their "
            "overlap). "
            "<b>16px</b>: that many image pixels a token (finer costs more: time grows with the tokens). "
            "<b>448</b>: every image's longer side fed at 448 px, the paper's setting. Changing it recomputes "
            "the features in the background and retrains; the labels stay as they are.</span>"
        )
        with gr.Row(equal_height=True):
            ui.add(
                resolution=gr.Dropdown(
                    ["auto", "8px", "14px", "28px", "448", "896"],
                    label="Resolution",
                    allow_custom_value=True,
                    scale=2,
                    elem_id="resolution",
                )
            )
            ui.add(resolution_btn=gr.Button("Apply", scale=1, elem_id="resolution-btn"))
        ui.add(resolution_md=gr.Markdown("", elem_id="resolution-md"))
    with gr.Accordion("TIFF and scientific images", open=False):
        gr.Markdown(
            "<span class='muted'>A TIFF stack becomes one image per plane (or only the plane you pick). "
            "Channels: 1 is grey, 2 are red and green, 3 are RGB, of more the first three; or name the "
            "channels shown as red, green, blue. 16-bit and float images are scaled to 8 bits by one rule "
            "for the whole import: these percentiles of each shown channel over all its images go to 0 and "
            "255 (the import report says which values that was).</span>"
        )
        with gr.Row(equal_height=True):
            ui.add(tiff_plane=gr.Textbox(label="Plane (empty: every plane)", placeholder="e.g. 0", scale=1))
            ui.add(
                tiff_channels=gr.Textbox(
                    label="Channels as R,G,B (empty: the rule above)", placeholder="e.g. 2,0,1", scale=1
                )
            )
            ui.add(tiff_low=gr.Number(label="Low percentile", value=0.5, minimum=0, maximum=100, scale=1))
            ui.add(tiff_high=gr.Number(label="High percentile", value=99.5, minimum=0, maximum=100, scale=1))
    with gr.Group(visible=False, elem_id="bundle-box") as box:
        ui.add(bundle_md=gr.Markdown("", elem_id="bundle-md"))
        with gr.Row(equal_height=True):
            ui.add(bundle_name=gr.Textbox(label="New project's name", scale=2, elem_id="bundle-name"))
            ui.add(
                bundle_zero=gr.Checkbox(
                    label="VOC label PNGs use 0 = unlabelled (napari, ilastik)", value=False, scale=1
                )
            )
            ui.add(bundle_new_btn=gr.Button("Import as a new project", scale=1, elem_id="bundle-new"))
            ui.add(bundle_merge_btn=gr.Button("Merge into this project", scale=1, elem_id="bundle-merge"))
    ui.add(bundle_box=box)
    ui.add(import_report=gr.Markdown("", elem_id="import-report"))
    with gr.Accordion(
        "Import from a folder on the server (--import-root)", open=False, visible=allow_server_paths
    ):
        with gr.Row(equal_height=True):
            ui.add(
                server_folder=gr.Textbox(label="Folder on the server", placeholder="/data/my-images", scale=3)
            )
            ui.add(import_folder_btn=gr.Button("Import images", scale=1))
        with gr.Row(equal_height=True):
            ui.add(
                voc_labels=gr.Textbox(
                    label="VOC: optional folder of label PNGs (scribbles, 255 = unlabelled)", scale=3
                )
            )
            ui.add(
                voc_zero_unlabelled=gr.Checkbox(
                    label="label PNGs use 0 = unlabelled (napari, ilastik)", value=False, scale=1
                )
            )
            ui.add(import_voc_btn=gr.Button("Import VOC dataset", scale=1))
        with gr.Row(equal_height=True):
            ui.add(
                coco_file=gr.Textbox(
                    label="COCO: JSON file on the server (its images: in the folder above)",
                    placeholder="/data/annotations/instances.json",
                    scale=3,
                )
            )
            ui.add(coco_as_gt=gr.Checkbox(label="as ground truth (else as labels)", value=False, scale=1))
            ui.add(import_coco_btn=gr.Button("Import COCO", scale=1))
        gr.Markdown(
            "<span class='muted'>A VOC dataset folder holds JPEGImages/, SegmentationClass/ (becomes "
            "ground truth for the Evaluation tab), ImageSets/Segmentation/{train,val}.txt and optionally "
            "classes.txt.</span>"
        )
    with gr.Row(equal_height=True):
        ui.add(current_image=gr.Markdown("", elem_id="current-image"))
        ui.add(split=gr.Radio(list(SPLITS), label="Split of the current image", scale=3, elem_id="split"))
        ui.add(
            delete_image_btn=gr.Button(
                "Delete current image", variant="stop", size="sm", scale=1, elem_id="delete-image-btn"
            )
        )
