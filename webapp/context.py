"""What every callback gets: the shared app context (engine, repository, project) and the per-tab session.

`AppContext` is built once per server and shared by all sessions (it holds no per-user state).
`Session` lives in a `gr.State`, i.e. one per browser tab, server-side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine import ProjectEngine
from storage import ClassInfo, ImageInfo, Repository


@dataclass
class AppContext:
    engine: ProjectEngine
    project_id: int
    project_name: str
    banner: str = ""  # markdown shown on top of the page (random-weights warning), "" for none
    export_dir: str = ""  # where export files are written before download
    import_roots: tuple[str, ...] = ()  # --import-root folders; empty: importing server folders is off
    upload_dir: str = ""  # where the server receives uploads (inside the data folder); emptied as they import

    @property
    def allow_server_paths(self) -> bool:
        return bool(self.import_roots)

    @property
    def repo(self) -> Repository:
        return self.engine.repo

    def classes(self) -> list[ClassInfo]:
        return self.repo.list_classes(self.project_id)

    def images(self) -> list[ImageInfo]:
        return self.repo.list_images(self.project_id)


@dataclass
class Session:
    """One browser tab's view of the project."""

    image_id: int | None = None
    # What the editor holds: its layer of fresh strokes as class ids (display size), the scribble layer
    # when the image was opened (full size), and a probe of its background (to recognise values that
    # belong to another image after a switch).
    baseline: np.ndarray | None = None
    loaded: np.ndarray | None = None
    bg_probe: np.ndarray | None = None
    display_size: tuple[int, int] | None = None  # (h, w) of the annotation image
    scale: float = 1.0  # display pixels per image pixel (editor)
    point_scale: float = 1.0  # shown pixels per image pixel in point mode
    head_id: int | None = None  # head the views were last drawn with
    view_ready: bool = False  # False while the current view waits for features or a head
    order: list[int] = field(default_factory=list)  # image ids in gallery order
    labels_version: int = -1  # label_version of the current image when last drawn
    snapshot: list[tuple[int, str]] = field(default_factory=list)  # (class id, colour) the editor paints with
    active_class: int | None = None  # class id strokes and points get
    erasing: bool = False  # the brush paints the eraser colour
    brush_size: int = 8  # brush radius in display pixels
