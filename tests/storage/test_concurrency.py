"""Concurrency: 8 writers (4 threads sharing one repository + 4 processes) for 20 s; 0 errors, 0 lost rows."""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from bench import writers
from storage import Repository

from .conftest import rgb_png

SECONDS = float(os.environ.get("PROBESEG_STRESS_SECONDS", "20"))


def test_eight_writers_threads_and_processes(repo, data_dir, db_url) -> None:  # type: ignore[no-untyped-def]
    p = repo.create_project("busy")
    classes = [c.id for c in repo.list_classes(p.id)] + [repo.add_class(p.id, n).id for n in ("a", "b", "c")]
    images = [repo.add_image(p.id, rgb_png(16, 16, seed=i), f"{i}.png").id for i in range(6)]
    start = time.time() + 4.0  # leave the processes time to start and open the database
    stop = start + SECONDS

    procs = [
        writers.spawn(
            "stress",
            str(data_dir),
            db_url or "",
            str(100 + w),
            str(start),
            str(stop),
            ",".join(map(str, images)),
            ",".join(map(str, classes)),
        )
        for w in range(4)
    ]
    results: dict[int, tuple[list[int], list[str]]] = {}

    def run(w: int) -> None:
        results[w] = writers.stress(str(data_dir), db_url or "", w, start, stop, images, classes, out=repo)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    acked: list[int] = []
    errors: list[str] = []
    for w in range(4):
        ids, errs = results[w]
        acked += ids
        errors += errs
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        lines = out.splitlines()
        assert lines and lines[-1].startswith("done"), err
        acked += [int(line.split()[1]) for line in lines if line.startswith("ann ")]
        errors += [line for line in lines if line.startswith("err ")]
        assert lines[-1] == f"done {sum(1 for x in lines if x.startswith('err '))}"

    assert errors == [], errors[:5]
    assert len(acked) == len(set(acked)) and len(acked) > 8  # every writer got through
    with Repository.open(data_dir, db_url) as fresh:  # a fresh process view: no in-memory cache
        stored: list[int] = []
        for image_id in images:
            history = fresh.history(image_id)
            assert [h.seq for h in history] == list(range(1, len(history) + 1))
            stored += [h.id for h in history]
            # cached counts and label maps agree with a full replay
            lm = fresh.label_map(image_id)
            np.testing.assert_array_equal(repo.label_map(image_id), lm)
            counts = {
                int(k): int(v) for k, v in zip(*np.unique(lm[lm != 255], return_counts=True), strict=True)
            }
            assert fresh.labelled_pixel_counts(image_id=image_id) == counts
        assert sorted(stored) == sorted(acked)  # 0 lost rows and no unacknowledged extras
