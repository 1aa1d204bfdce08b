"""Engine fixtures: a fresh repository and an engine on the shared random ViT-S/14 at a tiny input size."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import FeatureConfig
from engine import EngineSettings, ProjectEngine
from storage import Repository


def two_strokes(h: int = 84, w: int = 112, red: int = 1, blue: int = 2) -> np.ndarray:
    raster = np.full((h, w), 255, np.uint8)
    raster[h // 2 - 2 : h // 2 + 2, 4 : w // 2 - 6] = red
    raster[h // 3 : h // 3 + 3, w // 2 + 6 : w - 4] = blue
    return raster


@pytest.fixture
def repo(tmp_path):
    r = Repository.open(tmp_path / "data")
    yield r
    r.close()


@pytest.fixture
def project(repo):
    p = repo.create_project("test")
    repo.add_class(p.id, "red")
    repo.add_class(p.id, "blue")
    return p


@pytest.fixture
def engine(repo, random_backbone, tmp_path):
    eng = ProjectEngine.create(
        repo,
        random_backbone,
        tmp_path / "features",
        FeatureConfig(112),
        settings=EngineSettings(debounce_s=0.05),
    )
    yield eng
    eng.close()
