"""probeseg storage: database models and the one repository API everything else uses."""

from .errors import (
    ConflictError,
    DatabaseBusyError,
    ImportLimitError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from .files import sanitize_filename
from .records import (
    SPLITS,
    AnnotationInfo,
    ClassInfo,
    ClassUsage,
    EditState,
    HeadInfo,
    ImageInfo,
    ImportReport,
    PointInfo,
    ProjectInfo,
    TrainingRunInfo,
)
from .repository import Repository

__all__ = [
    "SPLITS", "AnnotationInfo", "ClassInfo", "ClassUsage", "ConflictError", "DatabaseBusyError", "EditState",
    "HeadInfo", "ImageInfo", "ImportLimitError", "ImportReport", "NotFoundError", "PointInfo", "ProjectInfo",
    "Repository", "StorageError", "TrainingRunInfo", "ValidationError", "sanitize_filename",
]
