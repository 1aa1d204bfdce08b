"""`python app.py export-project` and `import-project`: a project to a file and back, without the server (the
same files as the page's Export tab and the REST API's /export and /import)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.commands import help_of
from core.errors import InputError
from webapp.config import ServeConfig


def _common(p: argparse.ArgumentParser) -> None:
    d = ServeConfig()
    p.add_argument("--data-dir", default=d.data_dir, help=f"the server's data folder (default {d.data_dir})")
    p.add_argument("--db", default=None, help="SQLAlchemy database URL (default: SQLite in --data-dir)")


def register(subparsers) -> None:
    e = subparsers.add_parser(
        "export-project",
        help=help_of("export-project"),
        description="Write a project as a probeseg archive (everything: images, classes, label history, "
        "ground truth, splits, heads), a PASCAL VOC zip or COCO JSON of its labels.",
    )
    e.add_argument(
        "--project", default=ServeConfig().project, help="the project's name (default %(default)s)"
    )
    e.add_argument(
        "--format",
        choices=["archive", "voc", "coco"],
        default="archive",
        help="the kind of file (default archive)",
    )
    e.add_argument("--out", required=True, type=Path, help="the file to write")
    _common(e)
    e.set_defaults(func=run_export)

    i = subparsers.add_parser(
        "import-project",
        help=help_of("import-project"),
        description="Make a project from a probeseg archive or a PASCAL VOC zip (told apart by their content), "
        "or merge a VOC zip into an existing project with --into. Features are computed when the server "
        "next starts.",
    )
    i.add_argument("--file", required=True, type=Path, help="the archive or VOC zip")
    i.add_argument(
        "--name", default=None, help="the new project's name (default: the archive's, or the file's)"
    )
    i.add_argument("--into", default=None, help="merge a VOC zip into this existing project instead")
    i.add_argument(
        "--zero-is-unlabelled",
        action="store_true",
        help="the VOC label PNGs use 0 = unlabelled and k = class k - 1 (napari, ilastik)",
    )
    _common(i)
    i.set_defaults(func=run_import)


def _project(repo, name: str) -> int:  # type: ignore[no-untyped-def]
    found = repo.find_project(name)
    if found is None:
        names = ", ".join(p.name for p in repo.list_projects()) or "none"
        raise InputError(f"no project named {name!r} in this data folder (projects: {names})")
    return int(found.id)


def run_export(args: argparse.Namespace) -> int:
    from storage import Repository

    with Repository.open(args.data_dir, args.db) as repo:
        pid = _project(repo, args.project)
        if args.format == "archive":
            path = repo.export_project(pid, args.out)
        elif args.format == "voc":
            path = repo.export_voc(pid, args.out)
        else:
            path = repo.export_coco(pid, args.out)
    print(f"wrote {path}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from storage import Repository

    if not args.file.is_file():
        raise InputError(f"{args.file}: file not found")
    with Repository.open(args.data_dir, args.db) as repo:
        into = _project(repo, args.into) if args.into else None
        project, report = repo.import_bundle(args.file, args.name, into, args.zero_is_unlabelled)
        project = repo.get_project(project.id)
    what = f"{project.image_count} images, {project.class_count} classes"
    if report is not None and report.failed:
        what += f"; {len(report.failed)} refused (first: {report.failed[0][0]}: {report.failed[0][1]})"
    print(f"project {project.name!r}: {what}")
    return 0
