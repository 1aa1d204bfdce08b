"""The RandomForest baseline fitted in a child process, so a fit that runs far past its budget can be stopped
and its threads never meet torch's in one process. (HistGradientBoosting was dropped: on hundreds of feature
channels it never finished within the budget on this 2-core machine.)

Deliberately imports no torch: the spawned child only needs numpy and scikit-learn."""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import numpy as np


def _make(kind: str, trees: int, seed: int, jobs: int):
    from sklearn.ensemble import RandomForestClassifier

    if kind == "rf":
        return RandomForestClassifier(n_estimators=trees, n_jobs=jobs, random_state=seed)
    raise ValueError(f"unknown tree baseline {kind!r}")


def _child(folder: str, kind: str, trees: int, seed: int, jobs: int, conn) -> None:
    try:
        d = Path(folder)
        x, y, xv = np.load(d / "x.npy"), np.load(d / "y.npy"), np.load(d / "xv.npy")
        model = _make(kind, trees, seed, jobs)
        conn.send({"ready": True})
        start, cpu0 = time.perf_counter(), time.process_time()
        model.fit(x, y)
        fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu0
        pred = model.predict(xv).astype(np.uint8)
        conn.send({"fit_s": fit_s, "fit_cpu_s": fit_cpu_s, "pred": pred})
    except Exception as exc:  # reported by the parent as this baseline's error
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


def fit_and_predict(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    trees: int,
    seed: int,
    timeout_s: float,
    jobs: int = -1,
) -> dict:
    """Fit `kind` on (x, y) in a spawned process (`jobs` workers) and predict x_val. Returns {"fit_s",
    "fit_cpu_s", "pred"}, or {"timeout_s"} when the fit did not finish in time (the child is then
    terminated), or {"error"}."""
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-forest-") as folder:
        np.save(Path(folder) / "x.npy", np.ascontiguousarray(x, dtype=np.float32))
        np.save(Path(folder) / "y.npy", np.asarray(y))
        np.save(Path(folder) / "xv.npy", np.ascontiguousarray(x_val, dtype=np.float32))
        recv, send = ctx.Pipe(duplex=False)
        # Not a daemon: joblib runs loky/threads only outside daemonic processes (else n_jobs=1).
        proc = ctx.Process(target=_child, args=(folder, kind, trees, seed, jobs, send), daemon=False)
        proc.start()
        send.close()
        try:
            # Starting the interpreter and importing scikit-learn is not part of the fit's budget.
            result = recv.recv() if recv.poll(120.0) else {"error": "the baseline process did not start"}
            if result.get("ready"):
                result = recv.recv() if recv.poll(timeout_s) else {"timeout_s": timeout_s}
        except EOFError:
            result = {"error": "the baseline process died (out of memory?)"}
        finally:
            if proc.is_alive():
                proc.terminate()
            proc.join(10)
            recv.close()
    return result
