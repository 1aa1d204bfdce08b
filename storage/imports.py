"""Importing images: uploads, folders, zips (zip-slip safe, size-limited) and VOC-layout datasets."""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image as PILImage
from sqlalchemy.orm import Session

from core.imageio import IMAGE_SUFFIXES, SNIFF_BYTES, sniff_image
from core.labels import VOC_CLASSES, LabelError, read_label_png, voc_palette
from core.tiff import ScalingBuilder, TiffError, TiffOptions, is_tiff, read_tiff, to_rgb8
from core.tiff import planes_of as tiff_planes
from core.voc import read_class_file

from . import annotations as label_store
from .classes import add_class_row
from .context import Ctx
from .convert import get_or_404, parse_colour, project_classes
from .errors import ImportLimitError, StorageError, ValidationError
from .files import sanitize_filename
from .images import MAX_UPLOAD_BYTES, add_image, set_split
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


# ------------------------------------------------------------------ VOC layout
def _split_lists(root: Path, roots: list[Path] | None = None) -> tuple[list[str], dict[str, str]]:
    sets = root / "ImageSets" / "Segmentation"
    order: list[str] = []
    split: dict[str, str] = {}
    for fname, value in (("train.txt", "train"), ("val.txt", "val"), ("trainval.txt", "unassigned")):
        path = sets / fname
        if not path.is_file() or not _allowed(path, roots):
            continue
        for line in path.read_text(encoding="utf-8").split():
            stem = line.strip()
            if stem and stem not in split:
                split[stem] = value
                order.append(stem)
    return order, split


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


def _read_mask(path: Path, shape: tuple[int, int], what: str) -> np.ndarray:
    arr = read_label_png(path, f"{path.name} ({what})")
    if arr.shape != shape:
        raise ValidationError(
            f"{path.name} ({what}): mask is {arr.shape[1]}x{arr.shape[0]} but the image is "
            f"{shape[1]}x{shape[0]}; masks must match the image size"
        )
    return arr


def _find(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    for suffix in suffixes:
        cand = folder / f"{stem}{suffix}"
        if cand.is_file():
            return cand
    return None


def import_voc(
    ctx: Ctx,
    project_id: int,
    root: str | os.PathLike,
    labels_dir: str | os.PathLike | None,
    roots: Roots = None,
    zero_is_unlabelled: bool = False,
) -> ImportReport:
    """With `roots`, every file read (images, masks, lists, classes.txt) must resolve inside them."""
    _check_project(ctx, project_id)
    roots = None if roots is None else _resolved(roots)
    base = Path(root)
    images_dir, gt_dir, lab_dir = _voc_folders(base, labels_dir, roots)
    class_file = base / "classes.txt"
    use_file = class_file.is_file() and _allowed(class_file, roots)
    names: list[tuple[str, str | None]] = (
        read_class_file(class_file) if use_file else [(n, None) for n in VOC_CLASSES]
    )
    if not names:
        raise ValidationError(f"{class_file}: no class names in it; write one class name per line")
    rb = _ReportBuilder()
    mapping = _ensure_classes(ctx, project_id, names, rb)

    order, split = _split_lists(base, roots)
    if order:
        stems = order
    else:
        stems = sorted({p.stem for p in images_dir.iterdir() if p.is_file() and _is_image_name(p.name)})
    for stem in stems:
        added = _voc_image(ctx, project_id, images_dir, stem, split, roots, rb)
        if added is None:
            continue
        info, created = added
        for folder, what in ((gt_dir, "ground truth"), (lab_dir, "labels")):
            if folder is None or not folder.is_dir() or (what == "labels" and not created):
                continue  # (re-importing a dataset must not stack its label masks twice)
            mask_path = _find(folder, stem, (".png", ".PNG"))
            if mask_path is not None and _allowed(mask_path, roots):
                _voc_mask(ctx, info, mask_path, what, mapping, zero_is_unlabelled, rb)
    return rb.build()


def _voc_folders(
    base: Path, labels_dir: str | os.PathLike | None, roots: list[Path] | None
) -> tuple[Path, Path, Path | None]:
    """JPEGImages/, SegmentationClass/ and the labels folder (given, or labels/ when present), checked."""
    if roots is not None and not _allowed(base, roots):
        raise ValidationError("only folders inside the server's import folders can be imported")
    images_dir = base / "JPEGImages"
    if not images_dir.is_dir():
        raise ValidationError(
            f"{base}: no JPEGImages folder; a VOC-layout dataset has JPEGImages/, "
            "SegmentationClass/ and optionally ImageSets/Segmentation/{train,val}.txt"
        )
    lab_dir: Path | None = None
    if labels_dir is not None:
        lab_dir = Path(labels_dir) if Path(labels_dir).is_absolute() else base / labels_dir
        if roots is not None and not _allowed(lab_dir, roots):
            raise ValidationError("the labels folder must be inside the server's import folders")
        if not lab_dir.is_dir():
            raise ValidationError(f"{lab_dir}: labels folder not found")
    elif (base / "labels").is_dir():
        lab_dir = base / "labels"
    return images_dir, base / "SegmentationClass", lab_dir


def _voc_image(
    ctx: Ctx,
    project_id: int,
    images_dir: Path,
    stem: str,
    split: dict[str, str],
    roots: list[Path] | None,
    rb: _ReportBuilder,
) -> tuple[ImageInfo, bool] | None:
    """Import one listed image (its split too); None when it was refused (the report says why)."""
    name = sanitize_filename(stem)
    if stem != name or "/" in stem:
        rb.failed.append((name, "unsafe name in the ImageSets list; skipped"))
        return None
    path = _find(images_dir, stem, (".jpg", ".jpeg", ".JPG", ".JPEG", ".png", ".PNG"))
    if path is not None and not _allowed(path, roots):
        rb.failed.append((name, "links outside the import folders; not read"))
        return None
    if path is None:
        rb.failed.append((name, "listed in ImageSets but not found in JPEGImages"))
        return None
    data = _read_file(path, rb)
    added = (
        None
        if data is None
        else _add_one(ctx, project_id, path.name, data, rb, split.get(stem, "unassigned"))
    )
    if added is not None and stem in split and added[0].split != split[stem]:
        set_split(ctx, added[0].id, split[stem])
    return added


def _voc_mask(
    ctx: Ctx,
    info: ImageInfo,
    mask_path: Path,
    what: str,
    mapping: dict,
    zero_is_unlabelled: bool,
    rb: _ReportBuilder,
) -> None:
    """Store one mask as the image's ground truth or as imported labels; a bad mask goes into the report."""
    try:
        mask = _read_mask(mask_path, (info.height, info.width), what)
        if what == "ground truth":
            label_store.set_ground_truth(ctx, info.id, mask, f"voc:{mask_path.name}", mapping)
            rb.ground_truths += 1
            return
        if zero_is_unlabelled:  # napari / ilastik: 0 = unlabelled, k = class k - 1
            if (mask == 255).any():
                raise ValidationError("value 255 in a mask read with 0 = unlabelled (classes are 1..254)")
            mask = np.where(mask == 0, 255, mask - 1).astype(np.uint8)
        if (mask != 255).any():
            label_store.add_mask(ctx, info.id, mask, "import", f"voc:{mask_path.name}", mapping)
            rb.annotations += 1
    except (LabelError, StorageError) as exc:
        rb.failed.append((f"{sanitize_filename(mask_path.name)} ({what})", str(exc)))


# ------------------------------------------------------------------ COCO
MAX_COCO_JSON_BYTES = 2 * 1024**3


def _coco_document(path: Path) -> dict:
    import json

    if not path.is_file():
        raise ValidationError(f"{path.name}: COCO file not found")
    if path.stat().st_size > MAX_COCO_JSON_BYTES:
        raise ImportLimitError(f"{path.name}: larger than {MAX_COCO_JSON_BYTES >> 30} GiB")
    try:
        doc = json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValidationError(f"{path.name}: not a JSON file ({exc})") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "categories")):
        raise ValidationError(f"{path.name}: not a COCO file (it needs 'images' and 'categories' lists)")
    try:
        cats = sorted((int(c["id"]), str(c["name"]).strip(), c.get("color")) for c in doc["categories"])
        images = [
            (int(im["id"]), str(im["file_name"]), int(im["height"]), int(im["width"])) for im in doc["images"]
        ]
        anns = [a for a in doc.get("annotations", []) if isinstance(a, dict)]
        for a in anns:
            int(a["image_id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(
            f"{path.name}: a category, image or annotation lacks a field COCO requires ({exc})"
        ) from None
    return {"categories": cats, "images": images, "annotations": anns}


def _colour_or_none(value: object) -> str | None:
    try:
        return parse_colour(value) if isinstance(value, str) else None
    except ValidationError:
        return None


def import_coco(
    ctx: Ctx,
    project_id: int,
    coco_file: str | os.PathLike,
    images_dir: str | os.PathLike,
    as_ground_truth: bool = False,
    fill_background: bool = False,
    roots: Roots = None,
) -> ImportReport:
    """Images listed in a COCO JSON file (found under `images_dir` by their file_name) with their masks
    (RLE or polygons) as labels, or as ground truth. Categories become classes (matched by name).
    Pixels of no annotation stay unlabelled, or become the background class with `fill_background`.
    With `roots`, every file read must resolve inside them; a file_name never leads outside `images_dir`."""
    from core import coco

    _check_project(ctx, project_id)
    roots = None if roots is None else _resolved(roots)
    path, folder = Path(coco_file), Path(images_dir)
    if roots is not None and not (_allowed(path, roots) and _allowed(folder, roots)):
        raise ValidationError("only files inside the server's import folders can be imported")
    if not folder.is_dir():
        raise ValidationError(f"{folder}: images folder not found")
    doc = _coco_document(path)
    names = [(name, _colour_or_none(col)) for _, name, col in doc["categories"]]
    background = next((i for i, (n, _) in enumerate(names) if coco.is_background(n)), None)
    if fill_background and background is None:
        names.append(("background", None))
        background = len(names) - 1
    rb = _ReportBuilder()
    mapping = _ensure_classes(ctx, project_id, names, rb)  # local index -> class id
    local = {cat_id: i for i, (cat_id, _, _) in enumerate(doc["categories"])}  # category id -> local index
    by_image: dict[int, list[dict]] = {}
    for ann in doc["annotations"]:
        by_image.setdefault(int(ann["image_id"]), []).append(ann)
    base = folder.resolve()
    for coco_id, file_name, height, width in doc["images"]:
        shown = sanitize_filename(file_name)
        candidate = (base / file_name).resolve()
        if not candidate.is_relative_to(base) or not _allowed(candidate, roots):
            rb.failed.append((shown, "its file_name leads outside the images folder; not read"))
            continue
        if not candidate.is_file():
            rb.failed.append((shown, f"listed in {path.name} but not found in the images folder"))
            continue
        data = _read_file(candidate, rb)
        added = None if data is None else _add_one(ctx, project_id, candidate.name, data, rb)
        if added is None:
            continue
        info, created = added
        if (info.height, info.width) != (height, width):
            rb.failed.append(
                (
                    shown,
                    f"the file is {info.width}x{info.height} but {path.name} says {width}x{height}; "
                    "its masks were not imported",
                )
            )
            continue
        if not as_ground_truth and not created:
            continue  # re-importing must not stack the same masks twice
        try:
            labels = coco.label_map(
                by_image.get(coco_id, []),
                height,
                width,
                local,
                fill=background if fill_background and background is not None else 255,
            )
            if as_ground_truth:
                label_store.set_ground_truth(ctx, info.id, labels, f"coco:{path.name}", mapping)
                rb.ground_truths += 1
            elif (labels != 255).any():
                label_store.add_mask(ctx, info.id, labels, "import", f"coco:{path.name}", mapping)
                rb.annotations += 1
        except (coco.CocoError, StorageError) as exc:
            rb.failed.append((f"{shown} (masks)", str(exc)))
    return rb.build()
