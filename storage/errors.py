"""Storage errors. Every message says what went wrong and how to fix it."""

from __future__ import annotations

from core.errors import UserError


class StorageError(UserError):
    """Base class of every error raised by `storage` for the user (see core.errors)."""


class NotFoundError(StorageError, LookupError):
    """A project, class, image, head or annotation id does not exist (any more)."""


class ConflictError(StorageError):
    """The request clashes with existing data (duplicate name, class still in use, ...)."""


class ValidationError(StorageError, ValueError):
    """An argument or an input file is invalid (bad raster shape, unknown class index, unreadable image, ...)."""


class ImportLimitError(ValidationError):
    """An archive or upload exceeds a size or count limit."""


class DatabaseBusyError(StorageError):
    """The database stayed locked or busy for longer than the retry budget (should not happen in practice)."""


class DatabaseUnusableError(StorageError):
    """The database cannot be used as it is (not a database, corrupt, read-only, from a newer release,
    unreachable); checked before anything is written, so the database is left untouched."""
