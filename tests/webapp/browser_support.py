"""Helpers for the real-browser tests: a server subprocess on a free port and a locked-down chromium."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import Error as PlaywrightError

from bench.canvas import (  # the one Chromium and its flags, for the bench and these tests
    CANVAS_READY,
    CHROMIUM,
    FLAGS,
)

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    data_dir: Path, log_path: Path, port: int, extra: tuple[str, ...] = (), timeout: float = 180.0
) -> subprocess.Popen:
    """`python app.py serve --weights random` on 127.0.0.1:port; returns once the page answers."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable,
        "app.py",
        *(["-v"] if os.environ.get("PROBESEG_TEST_VERBOSE") else []),
        "serve",
        "--weights",
        "random",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *extra,
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"server did not start in {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def app_server(data_dir: Path, log_path: Path, extra: tuple[str, ...] = (), timeout: float = 180.0):
    """`python app.py serve --weights random` on a free 127.0.0.1 port; yields its URL, stops it after."""
    port = free_port()
    proc = start_server(data_dir, log_path, port, extra, timeout)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


ACTION_TIMEOUT_MS = 180_000


@contextlib.contextmanager
def browser(profile_dir: Path, width: int = 1500, height: int = 1100):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile_dir),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": width, "height": height},
        )
        # Every action waits as long as a busy 2-core machine needs (Playwright's default is 30 s).
        ctx.set_default_timeout(ACTION_TIMEOUT_MS)
        ctx.set_default_navigation_timeout(ACTION_TIMEOUT_MS)
        # Nothing but the app: block every request that is not to 127.0.0.1 (fonts, CDNs, telemetry).
        ctx.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith(("http://127.0.0.1", "data:", "blob:"))
                else route.abort()
            ),
        )
        try:
            yield ctx
        finally:
            ctx.close()


def fetch_image(ctx, url: str) -> np.ndarray:
    """Download an image the page shows (through the browser context) as an RGB array."""
    resp = ctx.request.get(url)
    assert resp.ok, f"GET {url} -> {resp.status}"
    return np.asarray(Image.open(io.BytesIO(resp.body())).convert("RGB"))


def two_colour_png(path: Path, w: int = 320, h: int = 240) -> Path:
    """Left half red, right half blue, with a little texture so the backbone sees more than flat colour."""
    rng = np.random.default_rng(0)
    img = np.zeros((h, w, 3), np.float32)
    img[:, : w // 2] = (210, 40, 40)
    img[:, w // 2 :] = (40, 70, 210)
    img += rng.normal(0, 6, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


# ------------------------------------------------------------------ the annotation canvas
def open_canvas(page, url: str, image_id: int | None = None) -> None:
    """Open the page and wait until the canvas shows an image with its labels loaded."""
    page.goto(url + (f"/?image={image_id}" if image_id else ""), wait_until="load")
    wait_canvas(page)


def wait_canvas(page) -> None:
    page.wait_for_function(CANVAS_READY, timeout=ACTION_TIMEOUT_MS)


def reload_canvas(page) -> None:
    """Reload the page and wait for the canvas as `open_canvas` does. After a server restart Gradio reloads
    the page by itself once it reconnects (its "Connection lost" handler), which can abort this reload: the
    page is reloaded either way."""
    for attempt in range(3):
        try:
            page.reload(wait_until="load", timeout=ACTION_TIMEOUT_MS)
            break
        except PlaywrightError as exc:
            if "ERR_ABORTED" not in str(exc) or attempt == 2:
                raise
            page.wait_for_load_state("load", timeout=ACTION_TIMEOUT_MS)
    wait_canvas(page)


def canvas_state(page) -> dict:
    return page.evaluate(
        "() => { const s = window.__probeseg.state; return {view: s.view, W: s.W, H: s.H, "
        "classId: s.classId, tool: s.tool, unsaved: s.edits.items.length, refused: s.edits.refused, "
        "image: s.cfg.image && s.cfg.image.id, version: s.headVersion}; }"
    )


def draw_stroke(page, pts: list[tuple[float, float]], steps: int = 6) -> None:
    """Drag the mouse along image-pixel coordinates on the canvas."""
    box = page.locator(".ps-view").bounding_box()
    view = canvas_state(page)["view"]

    def screen(x: float, y: float) -> tuple[float, float]:
        return box["x"] + view["x"] + (x + 0.5) * view["s"], box["y"] + view["y"] + (y + 0.5) * view["s"]

    page.mouse.move(*screen(*pts[0]))
    page.mouse.down()
    for p in pts[1:]:
        page.mouse.move(*screen(*p), steps=steps)
    page.mouse.up()


def wait_saved(page, timeout: int = ACTION_TIMEOUT_MS) -> None:
    """Until the canvas has no unsaved edit (the page may have reloaded meanwhile: Gradio reloads it when
    its server comes back; the unsaved edits survive in the tab's sessionStorage)."""
    page.wait_for_function(
        "() => window.__probeseg && window.__probeseg.state.cfg && "
        "window.__probeseg.state.cfg.api && window.__probeseg.state.edits.items.length === 0",
        timeout=timeout,
    )
