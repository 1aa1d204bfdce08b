"""Web-app fixtures: an AppContext (real repository, engine on the random ViT-S/14 at long side 112) and
helpers that play the browser's part for the callbacks."""

from __future__ import annotations

import numpy as np
import pytest

from engine import EngineSettings, ProjectEngine
from storage import Repository
from tests.images import png_bytes, two_colour
from webapp import render
from webapp.context import AppContext, Session


@pytest.fixture
def ctx(tmp_path, random_backbone):
    repo = Repository.open(tmp_path / "data")
    project = repo.create_project("default")
    engine = ProjectEngine.create(repo, random_backbone, tmp_path / "features", long_side=112,
                                  settings=EngineSettings(debounce_s=0.05))
    yield AppContext(engine=engine, project_id=project.id, project_name=project.name,
                     export_dir=str(tmp_path / "exports"), import_roots=(str(tmp_path),))
    engine.close()
    repo.close()


@pytest.fixture
def sess():
    return Session()


@pytest.fixture
def labelled_ctx(ctx):
    """Classes red and blue, one two-colour image (open in no session yet)."""
    ctx.repo.add_class(ctx.project_id, "red")
    ctx.repo.add_class(ctx.project_id, "blue")
    ctx.repo.add_image(ctx.project_id, png_bytes(two_colour()), "two.png")
    return ctx


def editor_value(out: dict, strokes: list[tuple[str, tuple[slice, slice]]], alpha: float = render.LABEL_ALPHA) -> dict:
    """What the browser sends after painting `strokes` ((colour, (rows, cols)) in display pixels) on the
    editor value the server sent in `out`."""
    bg = out["editor"]["value"]["background"]
    layer = np.zeros((*bg.shape[:2], 4), np.uint8)
    for colour, (rows, cols) in strokes:
        layer[rows, cols, :3] = render.hex_to_rgb(colour)
        layer[rows, cols, 3] = round(alpha * 255)
    background = np.concatenate([bg, np.full((*bg.shape[:2], 1), 255, np.uint8)], axis=-1)
    return {"background": background, "layers": [layer], "composite": None}


def colour_of(ctx: AppContext, name: str) -> str:
    return next(c.colour for c in ctx.classes() if c.name == name)


def class_id(ctx: AppContext, name: str) -> int:
    return next(c.id for c in ctx.classes() if c.name == name)
