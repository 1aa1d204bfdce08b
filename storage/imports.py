"""Importing images: uploads, folders and zips (zip-slip safe, size-limited), TIFF planes, and the path and
project checks the VOC and COCO importers (import_voc, import_coco) share."""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from PIL import Image as PILImage
from sqlalchemy.orm import Session

from core.imageio import IMAGE_SUFFIXES, SNIFF_BYTES, sniff_image
from core.labels import voc_palette
from core.tiff import ScalingBuilder, TiffError, TiffOptions, is_tiff, read_tiff, to_rgb8
from core.tiff import planes_of as tiff_planes

from .classes import add_class_row
from .context import Ctx
from .convert import get_or_404, project_classes
from .errors import ImportLimitError, ValidationError
from .files import sanitize_filename
from .images import MAX_UPLOAD_BYTES, add_image
from .models import Project
from .records import ImageInfo, ImportReport, _ReportBuilder

log = logging.getLogger(__name__)

MAX_ZIP_MEMBERS = 50_000
MAX_ZIP_MEMBER_BYTES = MAX_UPLOAD_BYTES
MAX_ZIP_TOTAL_BYTES = 8 * 1024**3
MAX_COMPRESSION_RATIO = 1_000  # an image member that inflates more than this is a zip bomb


def _is_image_name(name: str) -> bool:
    return PurePosixPath(name.lower()).suffix in IMAGE_SUFFIXES


def _is_image(name: str, head: bytes) -> bool:
    """By content first (a JPEG without an extension is an image); an image name whose content is not
    recognised is still tried, so a corrupt .jpg gets a clear 'corrupt' answer rather than a silent skip."""
    return sniff_image(head) or _is_image_name(name)


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(SNIFF_BYTES)
    except OSError:
        return b""


def _hidden(parts: Iterable[str]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _add_image_or_tiff(
    ctx: Ctx,
    project_id: int,
    name: str,
    data: bytes,
    rb: _ReportBuilder,
    reread: Callable[[], bytes] | None = None,
) -> None:
    """TIFF files wait for the end of the import (`_add_tiffs`): their intensity rule spans all of them.
    `reread` gets the bytes again then (a file is read twice rather than held in memory)."""
    if is_tiff(data[:4]):
        rb.tiffs.append((name, reread or (lambda: data), "unassigned"))
    else:
        _add_one(ctx, project_id, name, data, rb)


def _add_tiffs(ctx: Ctx, project_id: int, rb: _ReportBuilder, options: TiffOptions | None) -> None:
    """Every TIFF of the import: one image per plane (or the chosen plane), channels and intensities mapped
    to 8-bit RGB by one rule for all of them (core.tiff), stored as PNG; the rule goes into the report.
    Two passes, one decoded stack in memory at a time: the first samples intensities, the second converts."""
    if not rb.tiffs:
        return
    options = options or TiffOptions()
    builder, readable = ScalingBuilder(options), []
    for name, read, split in rb.tiffs:
        safe = sanitize_filename(name)
        try:
            builder.add(read_tiff(read(), safe))
            readable.append((name, read, split))
        except (TiffError, OSError) as exc:
            rb.failed.append((safe, str(exc).removeprefix(f"{safe}: ")))
    rb.tiffs.clear()
    if not readable:
        return
    try:
        scale = builder.build()
    except TiffError as exc:
        rb.failed.extend((sanitize_filename(n), str(exc)) for n, _, _ in readable)
        return
    for name, read, split in readable:
        safe = sanitize_filename(name)
        try:
            stack = read_tiff(read(), safe)
            planes = tiff_planes(stack, options)
            stem = safe.rsplit(".", 1)[0] or "image"
            for k in planes:
                buf = io.BytesIO()
                PILImage.fromarray(to_rgb8(stack.planes[k], scale)).save(buf, format="PNG")
                _add_one(
                    ctx,
                    project_id,
                    f"{stem}_plane{k:03d}.png" if stack.planes.shape[0] > 1 else f"{stem}.png",
                    buf.getvalue(),
                    rb,
                    split,
                )
        except (TiffError, OSError) as exc:
            rb.failed.append((safe, str(exc)))
            continue
        if stack.planes.shape[0] > 1:
            rb.notes.append(
                f"{safe}: {stack.planes.shape[0]} planes (axes {stack.axes}); "
                + (
                    f"imported plane {options.plane}"
                    if options.plane is not None
                    else f"each imported as an image of its own ({len(planes)})"
                )
            )
    rb.notes.append(scale.describe())


def _add_one(
    ctx: Ctx, project_id: int, name: str, data: bytes, rb: _ReportBuilder, split: str = "unassigned"
) -> tuple[ImageInfo, bool] | None:
    safe = sanitize_filename(name)
    try:
        info, created = add_image(ctx, project_id, data, safe, split)
    except ValidationError as exc:
        rb.failed.append((safe, str(exc).removeprefix(f"{safe}: ")))  # the report names the file already
        return None
    (rb.imported if created else rb.duplicates).append(safe)
    rb.image_ids.append(info.id)
    return info, created


def _check_project(ctx: Ctx, project_id: int) -> None:
    ctx.db.read(lambda s: get_or_404(s, Project, project_id, "project"))


# ------------------------------------------------------------------ zips
def _zip_members(zf: zipfile.ZipFile, rb: _ReportBuilder) -> Iterator[tuple[str, zipfile.ZipInfo]]:
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise ImportLimitError(
            f"the zip has {len(infos):,} members; the limit is {MAX_ZIP_MEMBERS:,} - split it"
        )
    total = sum(i.file_size for i in infos if not i.is_dir())
    if total > MAX_ZIP_TOTAL_BYTES:
        raise ImportLimitError(
            f"the zip would unpack to {total:,} bytes; the limit is {MAX_ZIP_TOTAL_BYTES:,} - "
            "split it into smaller zips"
        )
    for info in infos:
        if info.is_dir():
            continue
        raw = info.filename.replace("\\", "/")
        parts = [p for p in raw.split("/") if p not in ("", ".", "..")]  # never used as a path anyway
        shown = sanitize_filename(raw)
        if not parts:
            continue
        if _hidden(parts):
            rb.skipped.append((shown, "hidden or system file"))
            continue
        if not _is_image_name(parts[-1]):
            try:
                with zf.open(info) as fh:
                    head = fh.read(SNIFF_BYTES)
            except (RuntimeError, OSError, zipfile.BadZipFile, NotImplementedError):  # encrypted, broken
                head = b""
            if not sniff_image(head):
                rb.skipped.append((shown, "not an image"))
                continue
        yield shown, info


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> bytes:
    if info.file_size > MAX_ZIP_MEMBER_BYTES:
        raise ImportLimitError(
            f"{name}: {info.file_size:,} bytes unpacked; the limit is {MAX_ZIP_MEMBER_BYTES:,}"
        )
    if (
        info.compress_size
        and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO
        and info.file_size > 2**24
    ):
        raise ImportLimitError(
            f"{name}: compression ratio {info.file_size / info.compress_size:.0f}:1 looks like a "
            "zip bomb; not unpacked"
        )
    with zf.open(info) as fh:
        data = fh.read(MAX_ZIP_MEMBER_BYTES + 1)  # never trust the declared size alone
    if len(data) > MAX_ZIP_MEMBER_BYTES:
        raise ImportLimitError(f"{name}: larger than the {MAX_ZIP_MEMBER_BYTES:,}-byte limit")
    return data


def _import_zip_into(
    ctx: Ctx, project_id: int, source: str | os.PathLike | bytes, rb: _ReportBuilder, label: str
) -> None:
    try:
        zf = zipfile.ZipFile(
            io.BytesIO(source) if isinstance(source, bytes | bytearray) else os.fspath(source)
        )
    except (zipfile.BadZipFile, OSError) as exc:
        rb.failed.append((label, f"not a readable zip file ({exc})"))
        return
    with zf:
        skipped = len(rb.skipped)
        try:
            members = list(_zip_members(zf, rb))
        except ImportLimitError as exc:
            rb.failed.append((label, str(exc)))
            return
        if not members:  # said, not dropped: an empty upload must not look like a success of nothing
            others = len(rb.skipped) - skipped
            rb.failed.append(
                (
                    label,
                    f"no images in this zip ({others} other file(s) skipped)"
                    if others
                    else "the zip is empty",
                )
            )
        for name, info in members:
            try:
                data = read_member(zf, info, name)
            except ImportLimitError as exc:
                rb.failed.append((name, str(exc)))
                continue
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
                rb.failed.append((name, f"cannot unpack this zip member ({exc})"))
                continue
            _add_image_or_tiff(ctx, project_id, name, data, rb)


def import_zip(
    ctx: Ctx, project_id: int, source: str | os.PathLike | bytes, tiff: TiffOptions | None = None
) -> ImportReport:
    _check_project(ctx, project_id)
    rb = _ReportBuilder()
    label = "<zip>" if isinstance(source, bytes | bytearray) else sanitize_filename(os.fspath(source))
    _import_zip_into(ctx, project_id, source, rb, label)
    _add_tiffs(ctx, project_id, rb, tiff)
    return rb.build()


# ------------------------------------------------------------------ files and folders
Roots = Sequence[str | os.PathLike] | None  # folders every read must stay inside; None: no confinement


def _resolved(folders: Iterable[str | os.PathLike]) -> list[Path]:
    return [Path(f).expanduser().resolve() for f in folders]


def resolve_import_path(
    text: str | os.PathLike, roots: Sequence[str | os.PathLike], forbidden: Sequence[str | os.PathLike] = ()
) -> Path:
    """The folder `text` names (absolute, or relative to the first root), with `..` and symlinks resolved,
    if it lies inside one of `roots` and outside every `forbidden` folder (e.g. the data folder). Otherwise
    a ValidationError that names only where imports are allowed, never whether the path exists."""
    real_roots = _resolved(roots)
    if not real_roots:
        raise ValidationError(
            "importing folders on the server is off; start the server with --import-root DIR "
            "(repeatable) to allow folders inside DIR, or upload the files"
        )
    path = Path(text).expanduser()
    real = (path if path.is_absolute() else real_roots[0] / path).resolve()
    blocked = _resolved(forbidden)
    if not _within(real, real_roots) or _within(real, blocked) or any(_within(b, [real]) for b in blocked):
        raise ValidationError(
            "only folders inside the server's import folders can be imported: "
            + ", ".join(str(r) for r in real_roots)
        )
    return real


def _within(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def _allowed(path: Path, roots: list[Path] | None) -> bool:
    """Whether reading `path` stays inside the (resolved) roots once symlinks are followed."""
    return roots is None or _within(path.resolve(), roots)


def _read_file(path: Path, rb: _ReportBuilder) -> bytes | None:
    name = sanitize_filename(path.name)
    try:
        size = path.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            rb.failed.append((name, f"{size:,} bytes is larger than the {MAX_UPLOAD_BYTES:,}-byte limit"))
            return None
        return path.read_bytes()
    except OSError as exc:
        rb.failed.append((name, f"cannot read the file ({exc.strerror or exc})"))
        return None


def import_uploads(
    ctx: Ctx,
    project_id: int,
    files: Iterable[str | os.PathLike | tuple[str, bytes]],
    tiff: TiffOptions | None = None,
) -> ImportReport:
    _check_project(ctx, project_id)
    rb = _ReportBuilder()
    for item in files:
        if isinstance(item, tuple):
            name, data = str(item[0]), item[1]
        else:
            path = Path(item)
            name = path.name
            if name.lower().endswith(".zip"):
                _import_zip_into(ctx, project_id, path, rb, sanitize_filename(name))
                continue
            read = _read_file(path, rb)
            if read is None:
                continue
            data = read
            if is_tiff(data[:4]):
                rb.tiffs.append((name, path.read_bytes, "unassigned"))  # read again when converted
                continue
        if name.lower().endswith(".zip"):
            _import_zip_into(ctx, project_id, bytes(data), rb, sanitize_filename(name))
        elif not _is_image(name, bytes(data[:SNIFF_BYTES])):
            rb.skipped.append((sanitize_filename(name), "not an image"))
        else:
            _add_image_or_tiff(ctx, project_id, name, bytes(data), rb)
    _add_tiffs(ctx, project_id, rb, tiff)
    return rb.build()


def import_folder(
    ctx: Ctx,
    project_id: int,
    folder: str | os.PathLike,
    recursive: bool,
    roots: Roots = None,
    tiff: TiffOptions | None = None,
) -> ImportReport:
    """With `roots`, nothing outside them is read or named: symlinked folders are not entered, and files
    whose target lies outside are counted without their names."""
    _check_project(ctx, project_id)
    roots = None if roots is None else _resolved(roots)
    root = Path(folder)
    if roots is not None and not _allowed(root, roots):
        raise ValidationError("only folders inside the server's import folders can be imported")
    if not root.is_dir():
        raise ValidationError(f"{root}: not a folder; give the folder that contains the images")
    rb = _ReportBuilder()
    outside = 0
    for path in _listing(root, recursive):
        rel = path.relative_to(root).parts
        if not path.is_file() or _hidden(rel):
            continue
        if not _allowed(path, roots):
            outside += 1
            continue
        if not _is_image(path.name, _head(path)):
            rb.skipped.append((sanitize_filename(path.name), "not an image"))
            continue
        data = _read_file(path, rb)
        if data is not None:
            _add_image_or_tiff(ctx, project_id, path.name, data, rb, path.read_bytes)
    _add_tiffs(ctx, project_id, rb, tiff)
    if outside:
        rb.skipped.append((f"{outside} link(s)", "point outside the import folders; not read"))
    return rb.build()


def _listing(root: Path, recursive: bool) -> list[Path]:
    """Files below root, sorted; symlinked folders are never entered (they may lead anywhere)."""
    if not recursive:
        return sorted(root.iterdir())
    out = []
    for folder, _dirs, files in os.walk(root, followlinks=False):
        out += [Path(folder) / f for f in files]
    return sorted(out)


def _ensure_classes(
    ctx: Ctx, project_id: int, names: list[tuple[str, str | None]], rb: _ReportBuilder
) -> dict[int, int]:
    pal = voc_palette()

    def fn(s: Session) -> tuple[dict[int, int], list[str]]:
        existing = {c.name.lower(): c.id for c in project_classes(s, project_id)}
        mapping: dict[int, int] = {}
        added: list[str] = []
        for i, (name, colour) in enumerate(names):
            cid = existing.get(name.strip().lower())
            if cid is None:
                col = colour or "#{:02x}{:02x}{:02x}".format(*map(int, pal[i % 255]))
                row = add_class_row(s, project_id, name, col)
                cid = row.id
                existing[row.name.lower()] = cid
                added.append(row.name)
            mapping[i] = cid
        return mapping, added

    mapping, added = ctx.db.write(fn)
    rb.classes_added.extend(added)
    return mapping
