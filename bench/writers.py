"""Writer processes for the durability and concurrency tests and the soak: `python -m bench.writers CMD ...`.

Every acknowledged write (the repository call returned) is printed as one line and flushed, so the
parent knows exactly what was acknowledged even if it kills this process.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def png(seed: int, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
        buf, "PNG"
    )
    return buf.getvalue()


def write_forever(data_dir: str, db_url: str, project_id: int, image_id: int, class_id: int) -> None:
    """Annotation (and some image) writes until killed; prints 'ann <id>' / 'img <id>' after each commit."""
    from storage import Repository

    repo = Repository.open(data_dir, db_url or None)
    info = repo.get_image(image_id)
    i = 0
    while True:
        i += 1
        if i % 5 == 0:
            raster = np.full((info.height, info.width), 255, np.uint8)
            raster[i % info.height, :] = 1
            ack = f"ann {repo.save_scribbles(image_id, raster, author=f'w{i}').id}"
        elif i % 7 == 0:
            ack = f"img {repo.add_image(project_id, png(1000 + i), f'k{i}.png').id}"
        else:
            x, y = i % info.width, (i // info.width) % info.height
            ack = f"ann {repo.add_point(image_id, class_id, x, y, 1, author=f'w{i}').id}"
        print(ack, flush=True)


def stress(
    data_dir: str,
    db_url: str,
    worker: int,
    start: float,
    stop: float,
    image_ids: list[int],
    class_ids: list[int],
    out: object = None,
) -> tuple[list[int], list[str]]:
    """Add annotations from `start` to `stop` (wall clock). Returns (acknowledged annotation ids, errors)."""
    from storage import Repository

    repo = Repository.open(data_dir, db_url or None) if out is None or isinstance(out, io.TextIOBase) else out
    rng = np.random.default_rng(worker)
    acked: list[int] = []
    errors: list[str] = []
    while time.time() < start:
        time.sleep(0.01)
    n = 0
    while time.time() < stop:
        n += 1
        image_id = int(rng.choice(image_ids))
        try:
            if n % 10 == 0:
                raster = np.full((16, 16), 255, np.uint8)
                raster[rng.integers(2, 16), :] = int(rng.integers(0, len(class_ids)))
                k = len(class_ids)  # rows 0 and 1 spell (n, worker) in base k: every layer is new
                raster[0, :] = [(n // k**i) % k for i in range(16)]
                raster[1, :] = [(worker // k**i) % k for i in range(16)]
                ann = repo.save_scribbles(image_id, raster, author=f"stress{worker}")
            else:
                ann = repo.add_point(
                    image_id,
                    int(rng.choice(class_ids)),
                    float(rng.integers(0, 16)),
                    float(rng.integers(0, 16)),
                    float(rng.integers(0, 3)),
                    author=f"stress{worker}",
                )
            acked.append(ann.id)
            if isinstance(out, io.TextIOBase):
                print(f"ann {ann.id}", file=out, flush=True)
            if n % 7 == 0:
                repo.label_map(image_id)
        except Exception as exc:  # noqa: BLE001 - the test counts every error
            errors.append(f"{type(exc).__name__}: {exc}")
            if isinstance(out, io.TextIOBase):
                print(f"err {type(exc).__name__}: {exc}".replace("\n", " "), file=out, flush=True)
    return acked, errors


def open_only(data_dir: str, db_url: str) -> None:
    from storage import Repository

    with Repository.open(data_dir, db_url or None) as repo:
        repo.list_projects()
    print("ok", flush=True)


ROOT = Path(__file__).resolve().parents[1]


def spawn(*args: str) -> subprocess.Popen[str]:
    """`python -m bench.writers ARGS` in a child process (its own database connection, no DATABASE_URL)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DATABASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "bench.writers", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_after(proc: subprocess.Popen[str], n: int, timeout_s: float = 120.0) -> tuple[list[str], str]:
    """SIGKILL `proc` once it acknowledged n writes; (every acknowledged line, stderr). A line cut by the kill
    was not acknowledged."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while len(lines) < n and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    os.kill(proc.pid, signal.SIGKILL)
    rest, err = proc.communicate(timeout=30)
    return [x.strip() for x in lines + rest.splitlines(keepends=True) if x.endswith("\n")], err


def main(argv: list[str]) -> None:
    cmd, args = argv[0], argv[1:]
    if cmd == "write-forever":
        write_forever(args[0], args[1], int(args[2]), int(args[3]), int(args[4]))
    elif cmd == "stress":
        ids = [int(x) for x in args[5].split(",")]
        classes = [int(x) for x in args[6].split(",")]
        _acked, errors = stress(
            args[0], args[1], int(args[2]), float(args[3]), float(args[4]), ids, classes, out=sys.stdout
        )
        print(f"done {len(errors)}", flush=True)
    elif cmd == "open":
        open_only(args[0], args[1])
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])
