"""Zips that are a whole project, not loose images: a probeseg project archive (`project.json`, written by
`export_project`) or a PASCAL VOC layout (`JPEGImages/`, as `export_voc` writes it). Told apart by their
content, never by their name, and imported as a project (new, or a VOC zip merged into an existing one) so
that what is exported comes back."""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from pathlib import Path

from .archive import FORMAT, import_project
from .context import Ctx
from .errors import ConflictError, ImportLimitError, ValidationError
from .import_voc import import_voc
from .imports import MAX_ZIP_MEMBERS, MAX_ZIP_TOTAL_BYTES, read_member
from .projects import create_project, delete_project, find_project
from .records import ImportReport, ProjectInfo

PROJECT, VOC = "project", "voc"
_VOC_IMAGE = re.compile(r"(^|/)JPEGImages/[^/]+$")


def zip_kind(source: str | os.PathLike) -> str | None:
    """`project` (a probeseg project archive), `voc` (a VOC-layout dataset) or None (loose images, or no
    zip at all)."""
    try:
        with zipfile.ZipFile(os.fspath(source)) as zf:
            names = zf.namelist()
            if "project.json" in names:
                info = zf.getinfo("project.json")
                if info.file_size < 2**30:
                    try:
                        with zf.open(info) as fh:
                            if json.load(fh).get("format") == FORMAT:
                                return PROJECT
                    except (ValueError, AttributeError, OSError, zipfile.BadZipFile):
                        pass
            if any(_VOC_IMAGE.search(n.replace("\\", "/")) for n in names):
                return VOC
    except (zipfile.BadZipFile, OSError):
        return None
    return None


def _unpack(zf: zipfile.ZipFile, dest: Path) -> None:
    """Every member under dest, with the limits of image zips (members, total and member size, zip bombs)
    and no way out of dest (`..`, absolute paths and empty parts are dropped; nothing is linked)."""
    infos = [i for i in zf.infolist() if not i.is_dir()]
    if len(infos) > MAX_ZIP_MEMBERS:
        raise ImportLimitError(f"the zip has {len(infos):,} members; the limit is {MAX_ZIP_MEMBERS:,}")
    if sum(i.file_size for i in infos) > MAX_ZIP_TOTAL_BYTES:
        raise ImportLimitError(f"the zip would unpack to more than {MAX_ZIP_TOTAL_BYTES:,} bytes; split it")
    for info in infos:
        parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".", "..")]
        if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        target = dest.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read_member(zf, info, "/".join(parts)))


def import_voc_zip(
    ctx: Ctx, project_id: int, source: str | os.PathLike, zero_is_unlabelled: bool = False
) -> ImportReport:
    """Import a VOC-layout zip into a project, as `import_voc` imports the folder (its labels/ as labels,
    SegmentationClass/ as ground truth, ImageSets/ as splits, classes.txt as classes)."""
    with tempfile.TemporaryDirectory(prefix="probeseg-voc-") as tmp:
        try:
            with zipfile.ZipFile(os.fspath(source)) as zf:
                _unpack(zf, Path(tmp))
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValidationError(f"not a readable zip file ({exc})") from None
        found = sorted(Path(tmp).rglob("JPEGImages"), key=lambda p: len(p.parts))
        if not found:
            raise ValidationError("not a VOC-layout zip: it has no JPEGImages/ folder")
        return import_voc(ctx, project_id, found[0].parent, None, None, zero_is_unlabelled)


def import_bundle(
    ctx: Ctx,
    source: str | os.PathLike,
    name: str | None = None,
    into: int | None = None,
    zero_is_unlabelled: bool = False,
) -> tuple[ProjectInfo, ImportReport | None]:
    """A project from a project archive or a VOC zip (`name`: the new project's, default the archive's or
    the file's); with `into`, a VOC zip is merged into that project instead (classes matched by name).
    Returns the project and, for a VOC zip, the import report."""
    kind = zip_kind(source)
    if kind is None:
        raise ValidationError(
            f"{Path(source).name} is neither a probeseg project archive (project.json) nor a VOC-layout zip "
            "(JPEGImages/); upload loose images or a zip of images to add them to a project"
        )
    if kind == PROJECT:
        if into is not None:
            raise ValidationError(
                "a project archive becomes a project of its own; import it under a new name (merging "
                "works for VOC zips)"
            )
        return import_project(ctx, source, name), None
    if into is not None:
        from .projects import get_project

        return get_project(ctx, into), import_voc_zip(ctx, into, source, zero_is_unlabelled)
    target = name or Path(source).stem
    if find_project(ctx, target) is not None:
        raise ConflictError(f"a project named {target!r} already exists; import with another name")
    project = create_project(ctx, target, "", None, with_background=False)  # classes.txt says them all
    try:
        return project, import_voc_zip(ctx, project.id, source, zero_is_unlabelled)
    except BaseException:
        delete_project(ctx, project.id)
        raise
