"""What every callback gets: the shared app context (engine, its records, project) and the per-tab session.

`AppContext` is built once per server and shared by all sessions (it holds no per-user state).
`Session` lives in a `gr.State`, i.e. one per browser tab, server-side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine import ProjectEngine
from engine.records import Records
from storage import ClassInfo, ImageInfo


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
    def records(self) -> Records:
        """The stored project, read only: writes go through engine methods (engine/records.py)."""
        return self.engine.records

    def classes(self) -> list[ClassInfo]:
        return self.records.list_classes(self.project_id)

    def images(self) -> list[ImageInfo]:
        return self.records.list_images(self.project_id)


@dataclass
class Session:
    """One browser tab's view of the project (the canvas keeps its own tool, class and edits in the page)."""

    image_id: int | None = None
    head_id: int | None = None  # head the views were last drawn with
    view_ready: bool = False  # False while the current view waits for features or a head
    order: list[int] = field(default_factory=list)  # image ids in gallery order
    page: list[int] = field(default_factory=list)  # the ids the gallery shows now (one page of `order`)
    nonce: int = 0  # bumped to make the canvas reload the current image's labels
    nav: int = 0  # the canvas's latest page turn the server has followed (see callbacks_annotate.navigated)
    select_class: int | None = None  # a class the canvas should switch to (a class just added)
    suggestions: list[tuple[int, tuple[int, int, int, int]]] = field(
        default_factory=list
    )  # (image, box) shown
    walked: list[int] = field(default_factory=list)  # images "u" opened, in order (callbacks_annotate)
    focus: tuple[int, int, int, int] | None = None  # a box the canvas zooms to when it opens the image
    bundle: tuple[str, str] | None = (
        None  # an uploaded project archive or VOC zip awaiting import: (path, kind)
    )
