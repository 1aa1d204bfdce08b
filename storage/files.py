"""Files on disk: safe display names and the content-addressed image store."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import threading
import unicodedata
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

from core.atomic import atomic_write

_MAX_NAME_BYTES = 200
_UNSAFE = re.compile(r'[<>:"|?*]')


def sanitize_filename(name: str, default: str = "image") -> str:
    """A safe single path component from any user-supplied name (upload, zip member, export).

    Directories are dropped (both / and \\ separators), control and reserved characters removed,
    leading dots and spaces stripped (no hidden files, no '..'), length capped; never empty.
    """
    text = unicodedata.normalize("NFC", str(name or ""))
    text = "".join(ch for ch in text if ch not in "\x00").replace("\\", "/")
    base = PurePosixPath(text).name if "/" in text else text
    base = PureWindowsPath(base).name  # drops a drive prefix such as 'C:'
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")  # control / format characters
    base = _UNSAFE.sub("_", base)
    base = base.strip().lstrip(". ").rstrip(". ")
    if base in ("", ".", ".."):
        base = default
    while len(base.encode("utf-8")) > _MAX_NAME_BYTES:
        stem, dot, ext = base.rpartition(".")
        if dot and 0 < len(ext) <= 10 and stem:
            base = stem[: max(1, len(stem) - 8)] + "." + ext
        else:
            base = base[:-8]
    return base


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or 'stem_2.ext', 'stem_3.ext', ... so that it is not in `taken` (which it is added to)."""
    candidate, n = name, 1
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    while candidate.lower() in taken:
        n += 1
        candidate = f"{stem}_{n}.{ext}" if ext else f"{stem}_{n}"
    taken.add(candidate.lower())
    return candidate


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ImageStore:
    """Original image files under `<root>/<hash[:2]>/<hash><ext>`; shared by all projects of a data folder.

    Adding and removing files is done under `lock()` (a thread lock plus an flock on `<root>/.lock`), so
    that a file is never removed while another process is about to reference it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread_lock = threading.RLock()
        self._lock_path = self.root / ".lock"

    def relpath(self, content_hash: str, ext: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", content_hash) or not re.fullmatch(r"\.[a-z0-9]{1,5}", ext):
            raise ValueError(f"bad content hash or extension: {content_hash!r} {ext!r}")
        return f"{content_hash[:2]}/{content_hash}{ext}"

    def path(self, relpath: str) -> Path:
        rel = PurePosixPath(relpath)
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"unsafe stored path {relpath!r}")
        return self.root / rel

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with self._thread_lock:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def put(self, relpath: str, data: bytes) -> bool:
        """Store `data` at relpath unless an intact copy is already there. Returns True if written."""
        target = self.path(relpath)
        if target.is_file() and target.stat().st_size == len(data):
            return False
        atomic_write(target, data)
        return True

    def remove(self, relpath: str) -> None:
        target = self.path(relpath)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        with contextlib.suppress(OSError):
            target.parent.rmdir()  # only succeeds when empty

    def read(self, relpath: str) -> bytes:
        return self.path(relpath).read_bytes()
