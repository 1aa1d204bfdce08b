"""Projects: create, list, rename, settings, delete."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from .classes import add_class_row
from .context import Ctx
from .convert import clean_text, get_or_404, project_info
from .errors import ConflictError, ValidationError
from .images import remove_unreferenced_files
from .models import Image, LabelClass, Project
from .records import ProjectInfo


def _check_json(value: Any, what: str) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{what} must be JSON-serialisable ({exc}); pass plain numbers, strings, lists, dicts"
        ) from None


def _name_taken(s: Session, name: str, exclude_id: int | None = None) -> bool:
    stmt = select(Project.id).where(func.lower(Project.name) == name.lower())
    if exclude_id is not None:
        stmt = stmt.where(Project.id != exclude_id)
    return s.scalars(stmt).first() is not None


def info(s: Session, p: Project) -> ProjectInfo:
    n_img = s.scalar(select(func.count(Image.id)).where(Image.project_id == p.id)) or 0
    n_cls = s.scalar(select(func.count(LabelClass.id)).where(LabelClass.project_id == p.id)) or 0
    return project_info(p, int(n_img), int(n_cls))


def create_project_row(
    s: Session,
    name: str,
    description: str = "",
    settings: Mapping[str, Any] | None = None,
    with_background: bool = True,
) -> Project:
    name = clean_text(name, "project name", 200)
    if _name_taken(s, name):
        raise ConflictError(
            f"a project named {name!r} already exists; choose another name or open that project"
        )
    p = Project(
        name=name,
        description=clean_text(description, "description", 10_000, allow_empty=True),
        settings=_check_json(settings or {}, "project settings"),
    )
    s.add(p)
    s.flush()
    if with_background:
        add_class_row(s, p.id, "background", None)
    return p


def create_project(
    ctx: Ctx, name: str, description: str, settings: Mapping[str, Any] | None, with_background: bool
) -> ProjectInfo:
    return ctx.db.write(
        lambda s: info(s, create_project_row(s, name, description, settings, with_background))
    )


def list_projects(ctx: Ctx) -> list[ProjectInfo]:
    def fn(s: Session) -> list[ProjectInfo]:
        n_img = {
            pid: int(n)
            for pid, n in s.execute(select(Image.project_id, func.count(Image.id)).group_by(Image.project_id))
        }
        n_cls = {
            pid: int(n)
            for pid, n in s.execute(
                select(LabelClass.project_id, func.count(LabelClass.id)).group_by(LabelClass.project_id)
            )
        }
        return [
            project_info(p, n_img.get(p.id, 0), n_cls.get(p.id, 0))
            for p in s.scalars(select(Project).order_by(Project.id))
        ]

    return ctx.db.read(fn)


def get_project(ctx: Ctx, project_id: int) -> ProjectInfo:
    return ctx.db.read(lambda s: info(s, get_or_404(s, Project, project_id, "project")))


def find_project(ctx: Ctx, name: str) -> ProjectInfo | None:
    def fn(s: Session) -> ProjectInfo | None:
        p = s.scalars(select(Project).where(Project.name == name)).first()
        if p is None:
            p = s.scalars(select(Project).where(func.lower(Project.name) == str(name).lower())).first()
        return None if p is None else info(s, p)

    return ctx.db.read(fn)


def rename_project(ctx: Ctx, project_id: int, name: str) -> ProjectInfo:
    def fn(s: Session) -> ProjectInfo:
        p = get_or_404(s, Project, project_id, "project", for_update=True)
        new = clean_text(name, "project name", 200)
        if _name_taken(s, new, exclude_id=p.id):
            raise ConflictError(f"a project named {new!r} already exists; choose another name")
        p.name = new
        s.flush()
        return info(s, p)

    return ctx.db.write(fn)


def update_settings(ctx: Ctx, project_id: int, settings: Mapping[str, Any]) -> ProjectInfo:
    def fn(s: Session) -> ProjectInfo:
        p = get_or_404(s, Project, project_id, "project", for_update=True)
        merged = dict(p.settings or {})
        for key, value in _check_json(settings, "project settings").items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        p.settings = merged
        s.flush()
        return info(s, p)

    return ctx.db.write(fn)


def delete_project(ctx: Ctx, project_id: int) -> None:
    with ctx.store.lock():

        def fn(s: Session) -> list[str]:
            get_or_404(s, Project, project_id, "project", for_update=True)
            paths = list(s.scalars(select(Image.file_path).where(Image.project_id == project_id)))
            s.execute(delete(Project).where(Project.id == project_id))
            return paths

        paths = ctx.db.write(fn)
        remove_unreferenced_files(ctx, paths)
