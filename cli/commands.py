"""The subcommands of `python app.py`, in the order `--help` lists them: name -> (module, one-line help).

Kept apart from the command modules (which import torch, gradio or scikit-image for their work) so that
`--help`, `--version` and a mistyped command are answered without loading any of them: `cli.main` imports
only the module of the command that runs.
"""

from __future__ import annotations

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("cli.serve", "start the web app (default command)"),
    "train": ("cli.train", "train a head on a VOC-layout dataset with imperfect labels"),
    "evaluate": ("cli.evaluate", "per-class IoU and mIoU of a head on a dataset split"),
    "predict": ("cli.predict", "write palette PNG predictions for images (sharded under torchrun)"),
    "features": ("cli.features", "compute and cache backbone features of a folder (sharded under torchrun)"),
    "simulate": (
        "cli.simulate",
        "simulated annotation sessions: strokes each labelling strategy needs to reach a held-out mIoU",
    ),
    "export-onnx": (
        "cli.export_onnx",
        "write a trained head (with its backbone, or alone) as one ONNX graph",
    ),
    "export-project": ("cli.projects", "write a project as an archive, a VOC zip or COCO JSON"),
    "import-project": (
        "cli.projects",
        "make a project from an archive or a VOC zip (or merge a VOC zip into one)",
    ),
    "make-labels": (
        "cli.experiments",
        "make imperfect labels (scribble, point, noisy, zeroshot) for a VOC-layout dataset",
    ),
    "study": (
        "cli.experiments",
        "run a grid of paper-protocol trainings and tabulate validation mIoU like the paper",
    ),
    "bench": (
        "cli.bench",
        "benchmarks: retrain speed, dense masks, stroke latency, feature throughput, memory",
    ),
}


def help_of(name: str) -> str:
    return COMMANDS[name][1]
