"""Durability: a writer killed with SIGKILL loses no acknowledged write; the database stays intact."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import sqlalchemy as sa

from bench import writers
from storage import Repository

from .conftest import class_ids, rgb_png


@pytest.mark.parametrize("kill_after", [3, 60, 150])  # three moments: at once, mid-run, after a long run
def test_sigkill_after_acknowledged_writes(repo, data_dir, db_url, kill_after) -> None:  # type: ignore[no-untyped-def]
    p = repo.create_project("durable")
    repo.add_class(p.id, "cat")
    image = repo.add_image(p.id, rgb_png(16, 16), "a.png")
    cat = class_ids(repo, p.id)["cat"]
    proc = writers.spawn("write-forever", str(data_dir), db_url or "", str(p.id), str(image.id), str(cat))
    acked, err = writers.kill_after(proc, kill_after)
    assert proc.returncode == -signal.SIGKILL, err
    assert len(acked) >= kill_after, err
    ann_ids = {int(line.split()[1]) for line in acked if line.startswith("ann")}
    img_ids = {int(line.split()[1]) for line in acked if line.startswith("img")}

    repo.close()
    with Repository.open(data_dir, db_url) as again:
        history = {h.id for h in again.history(image.id)}
        assert ann_ids <= history, f"lost acknowledged annotations: {sorted(ann_ids - history)}"
        images = {i.id: i for i in again.list_images(p.id)}
        assert img_ids <= set(images)
        for im in images.values():  # every row has its complete file
            assert again.image_bytes(im.id) and again.image_rgb(im.id).shape == (im.height, im.width, 3)
        lm = again.label_map(image.id)
        assert lm.shape == (16, 16) and (lm == 1).any()
        assert again.labelled_pixel_counts(image_id=image.id) == {
            k: int(v) for k, v in zip(*np.unique(lm[lm != 255], return_counts=True), strict=True)
        }
        again.collect_garbage()  # a file whose row was never committed is removed, nothing else
        assert all(again.image_bytes(i) for i in images)
        if again.dialect == "sqlite":
            with sa.create_engine(f"sqlite:///{data_dir / 'probeseg.db'}").connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
