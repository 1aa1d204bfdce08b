"""The one storage API: `Repository`. Everything else (web app, CLI, tests) goes through it.

A repository owns every database session; it returns frozen records (`storage.records`) and numpy
arrays. It is thread-safe (share one per process) and multi-process safe; every write method commits
before it returns, so a returned value means the data is durable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.head_meta import HeadMeta
from core.tiff import TiffOptions

from . import annotations as label_store
from . import (
    archive,
    bundles,
    classes,
    exports,
    heads,
    images,
    import_coco,
    import_voc,
    imports,
    ops,
    projects,
    thumbnails,
)
from .cache import LabelCache
from .context import Ctx
from .db import Database, check_database, sqlite_url, tighten
from .files import ImageStore
from .records import (
    AnnotationInfo,
    ClassInfo,
    ClassUsage,
    EditState,
    HeadInfo,
    ImageInfo,
    ImportReport,
    OpResult,
    PointInfo,
    ProjectInfo,
    TrainingRunInfo,
)

DEFAULT_AUTHOR = "user"
DEFAULT_DATA_DIR = Path("probeseg-data")  # what --data-dir defaults to


class Repository:
    """Projects, classes, images, versioned annotations, ground truth, heads and training runs.

    Create with `Repository.open(data_dir, db_url=None)`. Coordinates are image pixels of the
    EXIF-oriented image: x = column, y = row, pixel centres at integers. Label rasters are HxW uint8
    current class indices with 255 = unlabelled.
    """

    def __init__(self, ctx: Ctx) -> None:
        self._ctx = ctx

    @property
    def data_dir(self) -> Path:
        return self._ctx.data_dir

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql' (or another SQLAlchemy dialect name)."""
        return self._ctx.db.engine.dialect.name

    @property
    def db_url(self) -> str:
        """The database URL with any password masked."""
        return self._ctx.db.engine.url.render_as_string(hide_password=True)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, data_dir: str | os.PathLike, db_url: str | None = None) -> Repository:
        """Open (creating if needed) the data folder and database, and upgrade the schema to head.

        db_url: any SQLAlchemy URL; falls back to env DATABASE_URL, then `sqlite:///<data_dir>/probeseg.db`.
        """
        root = Path(data_dir).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        url = db_url or os.environ.get("DATABASE_URL") or sqlite_url(root / "probeseg.db")
        db = Database(url)
        try:
            check_database(db)
            db.upgrade()
        except BaseException:
            db.dispose()
            raise
        if db.is_sqlite:  # labels are private: the database and its journal files for the owner only
            tighten(Path(db.engine.url.database or ""))
        return cls(Ctx(root, db, ImageStore(root / "images"), LabelCache()))

    def close(self) -> None:
        """Dispose of the connection pool. The object must not be used afterwards."""
        self._ctx.db.dispose()
        self._ctx.cache.clear()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ projects
    def create_project(
        self,
        name: str,
        description: str = "",
        settings: Mapping[str, Any] | None = None,
        with_background: bool = True,
    ) -> ProjectInfo:
        """Create a project; it gets a 'background' class (index 0) unless with_background=False."""
        return projects.create_project(self._ctx, name, description, settings, with_background)

    def list_projects(self) -> list[ProjectInfo]:
        """All projects, oldest first."""
        return projects.list_projects(self._ctx)

    def get_project(self, project_id: int) -> ProjectInfo:
        """One project, or NotFoundError."""
        return projects.get_project(self._ctx, project_id)

    def find_project(self, name: str) -> ProjectInfo | None:
        """The project with this name, or None."""
        return projects.find_project(self._ctx, name)

    def rename_project(self, project_id: int, name: str) -> ProjectInfo:
        """Rename a project (names are unique)."""
        return projects.rename_project(self._ctx, project_id, name)

    def update_project_settings(self, project_id: int, settings: Mapping[str, Any]) -> ProjectInfo:
        """Merge `settings` (JSON-serialisable) into the project's settings; a value of None removes a key."""
        return projects.update_settings(self._ctx, project_id, settings)

    def delete_project(self, project_id: int) -> None:
        """Delete a project with all its data; image files no other project uses are removed."""
        projects.delete_project(self._ctx, project_id)

    # ------------------------------------------------------------------ classes
    def list_classes(self, project_id: int) -> list[ClassInfo]:
        """Classes ordered by index (0..K-1)."""
        return classes.list_classes(self._ctx, project_id)

    def get_class(self, class_id: int) -> ClassInfo:
        """One class, or NotFoundError."""
        return classes.get_class(self._ctx, class_id)

    def add_class(self, project_id: int, name: str, colour: str | Sequence[int] | None = None) -> ClassInfo:
        """Append a class (index K). Without a colour, the first unused VOC palette colour is chosen."""
        return classes.add_class(self._ctx, project_id, name, colour)

    def rename_class(self, class_id: int, name: str) -> ClassInfo:
        """Rename; labels keep pointing at the class (they reference its id)."""
        return classes.rename_class(self._ctx, class_id, name)

    def recolour_class(self, class_id: int, colour: str | Sequence[int]) -> ClassInfo:
        """Change the display colour ('#rrggbb' or an (r, g, b) triple)."""
        return classes.recolour_class(self._ctx, class_id, colour)

    def reorder_classes(self, project_id: int, class_ids: Sequence[int]) -> list[ClassInfo]:
        """Give the classes the order of `class_ids` (a permutation of all class ids); labels follow."""
        return classes.reorder_classes(self._ctx, project_id, class_ids)

    def move_class(self, class_id: int, new_index: int) -> list[ClassInfo]:
        """Move one class to `new_index`, shifting the others; returns the new order."""
        return classes.move_class(self._ctx, class_id, new_index)

    def class_usage(self, class_id: int) -> ClassUsage:
        """How many annotations, labelled pixels and ground-truth masks use the class."""
        return classes.class_usage(self._ctx, class_id)

    def delete_class(self, class_id: int, mode: str | None = None, reassign_to: int | None = None) -> None:
        """Delete a class. If it is in use, mode is required: 'reassign' (its labels become class
        `reassign_to`) or 'delete_labels' (its labels become unlabelled, in history too). Indices stay dense."""
        for item in classes.delete_class(self._ctx, class_id, mode, reassign_to):
            self._ctx.cache.put(*item)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ images
    def add_image(self, project_id: int, data: bytes, filename: str, split: str = "unassigned") -> ImageInfo:
        """Validate and store an image; the same content in the same project returns the existing image."""
        return images.add_image(self._ctx, project_id, data, filename, split)[0]

    def get_image(self, image_id: int) -> ImageInfo:
        """One image, or NotFoundError."""
        return images.get_image(self._ctx, image_id)

    def list_images(self, project_id: int, split: str | None = None) -> list[ImageInfo]:
        """Images of a project in insertion order, optionally of one split."""
        return images.list_images(self._ctx, project_id, split)

    def image_rgb(self, image_id: int, max_side: int | None = None) -> np.ndarray:
        """HxWx3 uint8, EXIF orientation applied; with max_side, downsampled so max(H, W) <= max_side."""
        return images.image_rgb(self._ctx, image_id, max_side)

    def image_bytes(self, image_id: int) -> bytes:
        """The original uploaded file, byte for byte."""
        return images.image_bytes(self._ctx, image_id)

    def image_path(self, image_id: int) -> Path:
        """Where the original file is stored (read-only; do not modify it)."""
        return images.image_path(self._ctx, image_id)

    @property
    def thumbnail_folder(self) -> Path:
        return self._ctx.data_dir / thumbnails.FOLDER

    def thumbnail_path(self, image_id: int, side: int) -> Path:
        """A small JPEG of the image on disk (made once per image content and side; see storage.thumbnails)."""
        return thumbnails.thumbnail_path(self._ctx, image_id, side)

    def display_file(self, image_id: int) -> tuple[Path, str]:
        """(file, media type) showing the image upright in a browser: the original when it can be sent as it
        is (JPEG or PNG without EXIF rotation), else a JPEG made once (see storage.thumbnails)."""
        return thumbnails.display_file(self._ctx, image_id)

    def set_split(self, image_id: int, split: str) -> ImageInfo:
        """Set 'train', 'val' or 'unassigned'."""
        return images.set_split(self._ctx, image_id, split)

    def delete_image(self, image_id: int) -> None:
        """Delete an image and all its annotations, ground truth and stats."""
        images.delete_image(self._ctx, image_id)

    def collect_garbage(self) -> int:
        """Delete image files that no image row of this database references (e.g. left by a killed process)
        and stale temporary files; returns the number removed. Do not run it while another database
        (a different --db) uses the same data folder: its files would look unreferenced."""
        return images.collect_garbage(self._ctx)

    def set_image_stats(self, image_id: int, uncertainty: float | None, has_prediction: bool) -> ImageInfo:
        """Record prediction status and an uncertainty score (for 'label the most uncertain image next')."""
        return images.set_image_stats(self._ctx, image_id, uncertainty, has_prediction)

    # ------------------------------------------------------------------ annotations (versioned)
    def set_image_scores(self, scores: Mapping[int, float]) -> int:
        """{image_id: need score} for many images in one transaction (images deleted meanwhile skipped)."""
        return images.set_image_scores(self._ctx, scores)

    def save_scribbles(
        self, image_id: int, raster: np.ndarray, author: str = DEFAULT_AUTHOR, client: str | None = None
    ) -> AnnotationInfo:
        """Store a new version of the image's whole scribble layer: HxW uint8 class indices, 255 = none
        (`client`: whose undo takes it back, see `undo`).

        A raster identical to the current layer is not stored again; the current version is returned."""
        return label_store.save_scribbles(self._ctx, image_id, raster, author, client)

    def apply_op(self, image_id: int, op: dict, author: str = DEFAULT_AUTHOR) -> OpResult:
        """Commit one edit operation (stroke, erase, point, unpoint, undo, redo, clear; see storage.ops)
        exactly once: a retried op_id is acknowledged again (duplicate=True) and not applied twice."""
        return ops.apply_op(self._ctx, image_id, op, author)

    def add_point(
        self,
        image_id: int,
        class_id: int,
        x: float,
        y: float,
        radius: float = 3.0,
        author: str = DEFAULT_AUTHOR,
    ) -> AnnotationInfo:
        """Add a point label (a disk of `radius` pixels around column x, row y)."""
        return label_store.add_point(self._ctx, image_id, class_id, x, y, radius, author)

    def remove_point(
        self,
        image_id: int,
        annotation_id: int | None = None,
        x: float | None = None,
        y: float | None = None,
        author: str = DEFAULT_AUTHOR,
    ) -> AnnotationInfo | None:
        """Remove a point by id, or the one nearest (x, y) whose disk contains (x, y). None if none there."""
        return label_store.remove_point(self._ctx, image_id, annotation_id, x, y, author)

    def add_mask(
        self, image_id: int, raster: np.ndarray, author: str = DEFAULT_AUTHOR, source: str = "import"
    ) -> AnnotationInfo:
        """Add dense labels (HxW uint8 class indices, 255 = none), e.g. an imported or noisy mask."""
        return label_store.add_mask(self._ctx, image_id, raster, author, source)

    def erase(self, image_id: int, region: np.ndarray, author: str = DEFAULT_AUTHOR) -> AnnotationInfo:
        """Clear every label (mask, scribble, point) under the boolean HxW `region` drawn before now."""
        return label_store.erase(self._ctx, image_id, region, author)

    def clear_labels(self, image_id: int, author: str = DEFAULT_AUTHOR) -> AnnotationInfo | None:
        """Erase the whole image (undoable). None if there was nothing to clear."""
        return label_store.clear_labels(self._ctx, image_id, author)

    def undo(
        self, image_id: int, author: str = DEFAULT_AUTHOR, client: str | None = None
    ) -> AnnotationInfo | None:
        """Undo this author and client's latest active edit of the image (never another's); returns that
        edit, or None if they have nothing to undo."""
        return label_store.undo(self._ctx, image_id, author, client)

    def redo(
        self, image_id: int, author: str = DEFAULT_AUTHOR, client: str | None = None
    ) -> AnnotationInfo | None:
        """Redo the edit this author and client undid last; returns it, or None. Their new edit after an
        undo clears their redo stack."""
        return label_store.redo(self._ctx, image_id, author, client)

    def edit_state(self, image_id: int, author: str = DEFAULT_AUTHOR, client: str | None = None) -> EditState:
        """Version number and whether this author and client's undo / redo would do something."""
        return label_store.edit_state(self._ctx, image_id, author, client)

    def history(self, image_id: int) -> list[AnnotationInfo]:
        """Every version row of the image, oldest first (including undo / redo rows)."""
        return label_store.history(self._ctx, image_id)

    def label_map(self, image_id: int) -> np.ndarray:
        """HxW uint8 in current class indices, 255 = unlabelled: masks, then scribbles, then points on top."""
        return label_store.label_map(self._ctx, image_id)

    def label_maps(
        self, project_id: int, split: str | None = None, labelled_only: bool = True
    ) -> dict[int, np.ndarray]:
        """{image_id: label_map} of a project (images without labels left out unless labelled_only=False)."""
        return label_store.label_maps(self._ctx, project_id, split, labelled_only)

    def scribble_layer(self, image_id: int) -> np.ndarray:
        """The current scribble raster only (later erases applied), to restore the browser editor."""
        return label_store.scribble_layer(self._ctx, image_id)

    def points(self, image_id: int) -> list[PointInfo]:
        """The active points of an image, oldest first."""
        return label_store.points(self._ctx, image_id)

    def labelled_pixel_counts(
        self, project_id: int | None = None, image_id: int | None = None
    ) -> dict[int, int]:
        """{class_index: labelled pixels} for a project or one image (from a cache; cheap)."""
        return label_store.labelled_pixel_counts(self._ctx, project_id, image_id)

    # ------------------------------------------------------------------ ground truth
    def set_ground_truth(self, image_id: int, labels: np.ndarray | None, source: str = "") -> None:
        """Set (or with None remove) the dense evaluation mask: HxW uint8 class indices, 255 = ignore."""
        label_store.set_ground_truth(self._ctx, image_id, labels, source)

    def ground_truth(self, image_id: int) -> np.ndarray | None:
        """The evaluation mask in current class indices, or None."""
        return label_store.ground_truth(self._ctx, image_id)

    # ------------------------------------------------------------------ heads and training runs
    def save_head(
        self,
        project_id: int,
        weights: bytes,
        meta: HeadMeta,
        metrics: Mapping[str, Any] | None = None,
    ) -> HeadInfo:
        """Store a trained head (safetensors bytes) with its record (core.head_meta: the backbone and its
        weights, the classes by output); the project's current classes are snapshotted."""
        return heads.save_head(self._ctx, project_id, weights, meta, metrics)

    def latest_head(self, project_id: int) -> HeadInfo | None:
        """The most recently saved head of the project, or None."""
        return heads.latest_head(self._ctx, project_id)

    def list_heads(self, project_id: int) -> list[HeadInfo]:
        """All heads of the project, oldest first."""
        return heads.list_heads(self._ctx, project_id)

    def get_head(self, head_id: int) -> HeadInfo:
        """One head, or NotFoundError."""
        return heads.get_head(self._ctx, head_id)

    def head_weights(self, head_id: int) -> bytes:
        """The head's safetensors bytes exactly as saved."""
        return heads.head_weights(self._ctx, head_id)

    def set_head_metrics(self, head_id: int, metrics: Mapping[str, Any]) -> HeadInfo:
        """Replace a head's metrics (e.g. after evaluating it on the val split)."""
        return heads.set_head_metrics(self._ctx, head_id, metrics)

    def record_training_run(
        self,
        project_id: int,
        settings: Mapping[str, Any],
        seconds: float,
        loss: float | None,
        metrics: Mapping[str, Any] | None,
        pixel_counts: Mapping[Any, int] | None,
        head_id: int | None = None,
    ) -> TrainingRunInfo:
        """Record one training run (for the mIoU-vs-labelled-pixels plot)."""
        return heads.record_training_run(
            self._ctx, project_id, settings, seconds, loss, metrics, pixel_counts, head_id
        )

    def list_training_runs(self, project_id: int) -> list[TrainingRunInfo]:
        """All training runs, oldest first (x: labelled_pixels, y: metrics['miou'] for the progress plot)."""
        return heads.list_training_runs(self._ctx, project_id)

    # ------------------------------------------------------------------ import / export
    def import_uploads(
        self,
        project_id: int,
        files: Iterable[str | os.PathLike | tuple[str, bytes]],
        tiff: TiffOptions | None = None,
    ) -> ImportReport:
        """Import uploaded files (paths or (name, bytes)); zip files are expanded. TIFF files become one image
        per plane by the rules of `core.tiff` (`tiff` changes them); the report's notes say what was done."""
        return imports.import_uploads(self._ctx, project_id, files, tiff)

    def import_folder(
        self,
        project_id: int,
        folder: str | os.PathLike,
        recursive: bool = False,
        roots: Sequence[str | os.PathLike] | None = None,
        tiff: TiffOptions | None = None,
    ) -> ImportReport:
        """Import every image file in a folder (sub-folders too with recursive=True); others are skipped.
        With `roots` (see `resolve_import_path`), nothing outside those folders is read or named."""
        return imports.import_folder(self._ctx, project_id, folder, recursive, roots, tiff)

    def import_zip(
        self, project_id: int, source: str | os.PathLike | bytes, tiff: TiffOptions | None = None
    ) -> ImportReport:
        """Import the images in a zip (nested folders allowed; non-images skipped; zip-slip safe; size-limited)."""
        return imports.import_zip(self._ctx, project_id, source, tiff)

    def import_voc(
        self,
        project_id: int,
        root: str | os.PathLike,
        labels_dir: str | os.PathLike | None = None,
        roots: Sequence[str | os.PathLike] | None = None,
        zero_is_unlabelled: bool = False,
    ) -> ImportReport:
        """Import a VOC-layout dataset: JPEGImages/, SegmentationClass/ (ground truth), optional labels_dir of
        palette PNGs (255 = unlabelled) imported as annotations of kind mask, classes.txt (else the 21 VOC
        classes), ImageSets/Segmentation/{train,val}.txt -> split. Classes are matched by name (added if new).
        `zero_is_unlabelled`: the label PNGs use napari's and ilastik's convention (0 = unlabelled, k = class
        k - 1) instead of 255 = unlabelled."""
        return import_voc.import_voc(self._ctx, project_id, root, labels_dir, roots, zero_is_unlabelled)

    def export_voc(
        self, project_id: int, dest: str | os.PathLike, predictions: exports.Predictions | None = None
    ) -> Path:
        """A PASCAL VOC layout zip (images, labels/, SegmentationClass/, ImageSets/, classes.txt) of the
        labels (or `predictions`: image id -> HxW class indices, a mapping or a function called once per
        image, None leaving it out) that import_voc and `train` read back; written one image at a time."""
        return exports.export_voc(self._ctx, project_id, dest, predictions)

    def import_coco(
        self,
        project_id: int,
        coco_file: str | os.PathLike,
        images_dir: str | os.PathLike,
        as_ground_truth: bool = False,
        fill_background: bool = False,
        roots: Sequence[str | os.PathLike] | None = None,
    ) -> ImportReport:
        """Images of a COCO JSON file (RLE or polygon masks) with their masks as labels or ground truth;
        see `import_coco.import_coco`."""
        return import_coco.import_coco(
            self._ctx, project_id, coco_file, images_dir, as_ground_truth, fill_background, roots
        )

    def export_coco(
        self,
        project_id: int,
        dest: str | os.PathLike,
        predictions: exports.Predictions | None = None,
        include_background: bool = False,
    ) -> Path:
        """COCO JSON (one annotation per image and class, compressed RLE masks) of labels or predictions;
        the background class is a category only with `include_background`."""
        return exports.export_coco(self._ctx, project_id, dest, predictions, include_background)

    def export_head(self, head_id: int, dest_dir: str | os.PathLike) -> tuple[Path, Path]:
        """Write <dest_dir>/head-<id>.safetensors and head-<id>.json (backbone, classes, metrics, sha256)."""
        return exports.export_head(self._ctx, head_id, dest_dir)

    def export_project(self, project_id: int, dest: str | os.PathLike) -> Path:
        """Whole-project archive (zip: project.json with all rows incl. history, images, blobs, heads)."""
        return archive.export_project(self._ctx, project_id, dest)

    def zip_kind(self, source: str | os.PathLike) -> str | None:
        """`project` (a probeseg project archive), `voc` (a VOC-layout zip) or None (see storage.bundles)."""
        return bundles.zip_kind(source)

    def import_bundle(
        self,
        source: str | os.PathLike,
        name: str | None = None,
        into: int | None = None,
        zero_is_unlabelled: bool = False,
    ) -> tuple[ProjectInfo, ImportReport | None]:
        """A new project (`name`) from a project archive or a VOC zip, or a VOC zip merged `into` a project;
        returns the project and the VOC import's report (see storage.bundles)."""
        return bundles.import_bundle(self._ctx, source, name, into, zero_is_unlabelled)

    def import_project(self, archive_path: str | os.PathLike, name: str | None = None) -> ProjectInfo:
        """Recreate a project from `export_project` output (as `name`, default: its original name)."""
        return archive.import_project(self._ctx, archive_path, name)
