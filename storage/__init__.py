"""probeseg storage: database models and the one repository API everything else uses.

    from storage import Repository
    repo = Repository.open("probeseg-data")            # or Repository.open(dir, "postgresql+psycopg://...")
    project = repo.create_project("cats")              # gets a 'background' class at index 0
    cat = repo.add_class(project.id, "cat")
    image = repo.add_image(project.id, data, "photo.jpg")
    repo.save_scribbles(image.id, raster)              # HxW uint8 class indices, 255 = none
    labels = repo.label_map(image.id)                  # HxW uint8 current class indices, 255 = unlabelled

Everything returns frozen records (`storage.records`) or numpy arrays; errors are `StorageError`
subclasses whose message says how to fix the problem.
"""

from .errors import (
    ConflictError,
    DatabaseBusyError,
    DatabaseUnusableError,
    ImportLimitError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from .files import sanitize_filename
from .imports import resolve_import_path
from .records import (
    SPLITS,
    AnnotationInfo,
    ClassInfo,
    ClassUsage,
    EditState,
    HeadInfo,
    ImageInfo,
    ImportReport,
    LabelDelta,
    OpResult,
    PointInfo,
    ProjectInfo,
    TrainingRunInfo,
)
from .repository import DEFAULT_DATA_DIR, Repository

__all__ = [
    "DEFAULT_DATA_DIR",
    "SPLITS",
    "AnnotationInfo",
    "ClassInfo",
    "ClassUsage",
    "ConflictError",
    "DatabaseBusyError",
    "DatabaseUnusableError",
    "EditState",
    "HeadInfo",
    "ImageInfo",
    "ImportLimitError",
    "ImportReport",
    "LabelDelta",
    "OpResult",
    "NotFoundError",
    "PointInfo",
    "ProjectInfo",
    "Repository",
    "StorageError",
    "TrainingRunInfo",
    "ValidationError",
    "resolve_import_path",
    "sanitize_filename",
]
