"""Alembic: a database created at the first revision, with data, upgrades to head with all data intact."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from core.labels import label_to_png_bytes
from storage import Repository
from storage.db import alembic_config, create_db_engine, head_revision, upgrade
from storage.models import Base

from .conftest import rgb_png

ROOT = Path(__file__).resolve().parents[2]


def _engine(data_dir: Path, db_url: str | None) -> sa.Engine:
    data_dir.mkdir(parents=True, exist_ok=True)
    return create_db_engine(db_url or f"sqlite:///{data_dir / 'probeseg.db'}")


def test_there_are_at_least_two_revisions() -> None:
    versions = sorted(p.name for p in (ROOT / "storage" / "migrations" / "versions").glob("0*.py"))
    assert len(versions) >= 3 and head_revision() == versions[-1].split("_")[0] == "0004"


def test_upgrade_from_first_revision_keeps_all_data(data_dir, db_url) -> None:  # type: ignore[no-untyped-def]
    engine = _engine(data_dir, db_url)
    upgrade(engine, "0001")
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0001"
        assert "uncertainty" not in {c["name"] for c in sa.inspect(conn).get_columns("images")}
    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables
    png = rgb_png(4, 5, seed=7)
    digest = hashlib.sha256(png).hexdigest()
    (data_dir / "images" / digest[:2]).mkdir(parents=True)
    (data_dir / "images" / digest[:2] / f"{digest}.png").write_bytes(png)
    scr = np.full((4, 5), 255, np.uint8)
    scr[1, :] = 1
    now = datetime(2026, 1, 2, 3, 4, 5)
    with engine.begin() as conn:
        conn.execute(
            t["projects"].insert(),
            [
                {
                    "id": 1,
                    "name": "old",
                    "description": "from rev 1",
                    "settings": {"k": "v"},
                    "created_at": now,
                }
            ],
        )
        conn.execute(
            t["label_classes"].insert(),
            [
                {
                    "id": 1,
                    "project_id": 1,
                    "name": "background",
                    "colour": "#000000",
                    "index": 0,
                    "created_at": now,
                },
                {"id": 2, "project_id": 1, "name": "cat", "colour": "#800000", "index": 1, "created_at": now},
            ],
        )
        conn.execute(
            t["images"].insert(),
            [
                {
                    "id": 1,
                    "project_id": 1,
                    "name": "a.png",
                    "content_hash": digest,
                    "pixel_hash": "",
                    "format": "PNG",
                    "file_path": f"{digest[:2]}/{digest}.png",
                    "file_size": len(png),
                    "width": 5,
                    "height": 4,
                    "split": "train",
                    "created_at": now,
                    "label_version": 1,
                    "history_seq": 2,
                    "label_counts": {"2": 5, "1": 1},
                    "labelled_pixels": 6,
                }
            ],
        )
        conn.execute(
            t["annotations"].insert(),
            {
                "id": 1,
                "image_id": 1,
                "seq": 1,
                "kind": "scribble",
                "raster": label_to_png_bytes(scr),
                "class_map": {"1": 2},
                "author": "old-user",
                "source": "",
                "created_at": now,
            },
        )
        conn.execute(
            t["annotations"].insert(),
            {
                "id": 2,
                "image_id": 1,
                "seq": 2,
                "kind": "point",
                "class_id": 1,
                "x": 0.0,
                "y": 3.0,
                "radius": 0.0,
                "class_map": {},
                "author": "old-user",
                "source": "",
                "created_at": now,
            },
        )
        conn.execute(
            t["ground_truths"].insert(),
            [
                {
                    "id": 1,
                    "image_id": 1,
                    "raster": label_to_png_bytes(np.ones((4, 5), np.uint8)),
                    "class_map": {"1": 2},
                    "source": "gt",
                    "created_at": now,
                }
            ],
        )
        conn.execute(
            t["heads"].insert(),
            [
                {
                    "id": 1,
                    "project_id": 1,
                    "backbone": "dinov2",
                    "backbone_weights": "w",
                    "weights_sha256": "0" * 64,
                    "size_bytes": 3,
                    "weights": b"abc",
                    "classes": [],
                    "meta": {},
                    "metrics": {"miou": 0.5},
                    "created_at": now,
                }
            ],
        )
        conn.execute(
            t["training_runs"].insert(),
            [
                {
                    "id": 1,
                    "project_id": 1,
                    "head_id": 1,
                    "settings": {"lr": 1},
                    "seconds": 1.5,
                    "loss": 0.2,
                    "metrics": {},
                    "pixel_counts": {"cat": 5},
                    "labelled_pixels": 5,
                    "created_at": now,
                }
            ],
        )
        if conn.dialect.name == "postgresql":  # we inserted explicit ids: move the sequences past them
            for table in t:
                if table != "alembic_version":
                    conn.execute(
                        sa.text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
                        )
                    )
    engine.dispose()

    with Repository.open(data_dir, db_url) as repo:  # upgrades on open
        with repo._ctx.db.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == head_revision()
        [p] = repo.list_projects()
        assert (p.name, p.description, p.settings, p.image_count, p.class_count) == (
            "old",
            "from rev 1",
            {"k": "v"},
            1,
            2,
        )
        assert p.created_at.replace(tzinfo=None) == now
        [im] = repo.list_images(p.id)
        assert (im.name, im.split, im.width, im.height, im.has_prediction, im.uncertainty) == (
            "a.png",
            "train",
            5,
            4,
            False,
            None,
        )
        assert repo.image_bytes(im.id) == png
        expected = scr.copy()
        expected[3, 0] = 0
        np.testing.assert_array_equal(repo.label_map(im.id), expected)
        assert [h.author for h in repo.history(im.id)] == ["old-user", "old-user"]
        assert (repo.ground_truth(im.id) == 1).all()
        assert repo.head_weights(1) == b"abc" and repo.latest_head(p.id).metrics == {"miou": 0.5}
        assert repo.list_training_runs(p.id)[0].settings == {"lr": 1}
        assert repo.set_image_stats(im.id, 0.5, True).uncertainty == 0.5  # the new columns work
        repo.add_point(im.id, 2, 4, 0, 0)
        assert repo.edit_state(im.id).version == 3
        # the operation protocol works on top of the old rows, and undoing it restores them exactly
        before = repo.label_map(im.id)
        repo.apply_op(
            im.id,
            {"op_id": "new-1", "kind": "stroke", "class_id": 1, "radius": 0.0, "points": [[0, 1], [4, 1]]},
        )
        assert (repo.label_map(im.id)[1] == 0).all()
        repo.apply_op(im.id, {"op_id": "new-2", "kind": "undo"})
        np.testing.assert_array_equal(repo.label_map(im.id), before)


def test_models_match_the_migrations_and_downgrade_works(data_dir, db_url) -> None:  # type: ignore[no-untyped-def]
    Repository.open(data_dir, db_url).close()
    engine = _engine(data_dir, db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0001"
    upgrade(engine)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
    engine.dispose()


def test_processes_opening_a_new_database_at_once_all_succeed(data_dir, db_url) -> None:  # type: ignore[no-untyped-def]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DATABASE_URL", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.writers", "open", str(data_dir), db_url or ""],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "ok", err
    with Repository.open(data_dir, db_url) as repo:
        assert repo.list_projects() == []


def test_json_columns_round_trip_unicode(repo) -> None:  # type: ignore[no-untyped-def]
    p = repo.create_project("ünïcødé ✓", settings={"name": "日本", "nested": {"a": [1, 2.5, None]}})
    assert repo.get_project(p.id).settings == json.loads(
        json.dumps({"name": "日本", "nested": {"a": [1, 2.5, None]}})
    )
