"""Web-app fixtures: an AppContext (real repository, engine on the random ViT-S/14 at long side 112) and
helpers that play the browser's part for the callbacks."""

from __future__ import annotations

import pytest

from core.config import FeatureConfig
from engine import EngineSettings, ProjectEngine
from storage import Repository
from tests.images import png_bytes, two_colour
from webapp.context import AppContext, Session


@pytest.fixture
def ctx(tmp_path, random_backbone):
    repo = Repository.open(tmp_path / "data")
    project = repo.create_project("default")
    engine = ProjectEngine.create(
        repo,
        random_backbone,
        tmp_path / "features",
        FeatureConfig(112),
        settings=EngineSettings(debounce_s=0.05),
    )
    yield AppContext(
        engine=engine,
        project_id=project.id,
        project_name=project.name,
        export_dir=str(tmp_path / "exports"),
        import_roots=(str(tmp_path),),
    )
    engine.close()
    repo.close()


@pytest.fixture
def sess():
    return Session()


@pytest.fixture
def labelled_ctx(ctx):
    """Classes red and blue, one two-colour image (open in no session yet)."""
    ctx.engine.repo.add_class(ctx.project_id, "red")
    ctx.engine.repo.add_class(ctx.project_id, "blue")
    ctx.engine.repo.add_image(ctx.project_id, png_bytes(two_colour()), "two.png")
    return ctx


def paint(ctx: AppContext, image_id: int, name: str, rows: slice, cols: slice) -> None:
    """What the canvas sends for a filled rectangle: horizontal radius-0 strokes, one per row."""
    cid = class_id(ctx, name)
    for r in range(rows.start, rows.stop):
        ctx.engine.repo.apply_op(
            image_id,
            {
                "op_id": f"{name}-{r}-{cols.start}-{rows.start}",
                "kind": "stroke",
                "class_id": cid,
                "radius": 0,
                "points": [[cols.start, r], [cols.stop - 1, r]],
            },
        )


def colour_of(ctx: AppContext, name: str) -> str:
    return next(c.colour for c in ctx.classes() if c.name == name)


def class_id(ctx: AppContext, name: str) -> int:
    return next(c.id for c in ctx.classes() if c.name == name)
