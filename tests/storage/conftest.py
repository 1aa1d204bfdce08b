"""Storage test fixtures: every `repo` test runs on SQLite and, when PROBESEG_TEST_POSTGRES_URL is set
(see .ci/postgres.sh), on PostgreSQL too, each test in a fresh schema."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storage import Repository

PG_URL = os.environ.get("PROBESEG_TEST_POSTGRES_URL", "")
PG_SKIP_REASON = 'PROBESEG_TEST_POSTGRES_URL is not set; start a server with: eval "$(.ci/postgres.sh start)"'

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=[pytest.mark.postgres, pytest.mark.skipif(not PG_URL, reason=PG_SKIP_REASON)],
    ),
]


def _pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """None for SQLite (the default file in the data folder), else a PostgreSQL URL with a fresh schema."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    if request.param == "sqlite":
        yield None
        return
    import sqlalchemy as sa

    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def repo(data_dir: Path, db_url: str | None) -> Iterator[Repository]:
    r = Repository.open(data_dir, db_url)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def reopen(data_dir: Path, db_url: str | None):  # type: ignore[no-untyped-def]
    """Open another Repository on the same data (a 'restart')."""
    opened: list[Repository] = []

    def _open() -> Repository:
        r = Repository.open(data_dir, db_url)
        opened.append(r)
        return r

    yield _open
    for r in opened:
        r.close()


def png_bytes(arr: np.ndarray, **save_kwargs: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **save_kwargs)
    return buf.getvalue()


def rgb_png(h: int, w: int, seed: int = 0) -> bytes:
    return png_bytes(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture
def project(repo: Repository):  # type: ignore[no-untyped-def]
    """A project with classes background (0), cat (1), dog (2)."""
    p = repo.create_project("demo")
    repo.add_class(p.id, "cat")
    repo.add_class(p.id, "dog")
    return p


@pytest.fixture
def image(repo: Repository, project):  # type: ignore[no-untyped-def]
    """A 6x8 (HxW) image in `project`."""
    return repo.add_image(project.id, rgb_png(6, 8), "img.png")


def class_ids(repo: Repository, project_id: int) -> dict[str, int]:
    return {c.name: c.id for c in repo.list_classes(project_id)}
