"""Part 3: stroke-to-overlay latency through the running app's API (gradio_client), not through core.

The bench starts the app (`python app.py serve --weights random --backbone dinov2_vits14 --port P
--data-dir D`) unless given `--app-url`, then, as one client session:

1. `/page_load`, `/quick_add` (until the project has `num_classes` classes), `/upload` of synthetic 512x512
   images; waits (`/render_view`) until the first image's features are computed, so strokes hit the cache.
2. Per stroke: a brush stroke inside one ground-truth region of the first image, painted in the class's
   colour into the editor layer (which, as in the browser, holds every stroke since the image was opened),
   sent with `/editor_input` (auto-train on). Then `/tick`, the call the page's timer makes, is polled
   back-to-back until it returns a new overlay image (it does so when a new head exists). Latency = from
   sending the stroke to having the overlay file: upload, storing, the engine's debounce, training,
   prediction, rendering and download.

The page itself polls `/tick` on a timer, so a browser sees on average half a timer period more; the report
states that figure next to the measured one. With `--app-url` the strokes and images go into that app's open
project.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from bench import synth
from bench.config import BenchConfig
from bench.report import Report, seconds
from bench.timing import percentile, rss_bytes

log = logging.getLogger("bench")

REPO_ROOT = Path(__file__).resolve().parents[1]
STROKE_TIMEOUT_S = 30.0
POLL_SLEEP_S = 0.02


class ApiUnavailable(RuntimeError):
    """The app's API lacks something this benchmark needs (named in the message)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reachable(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status < 500
    except OSError:
        return False


class AppProcess:
    """The app started by the bench, in its own process; stopped by its pid only."""

    def __init__(self, cfg: BenchConfig, data_dir: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = data_dir.parent / "app.log"
        cmd = [
            sys.executable, "app.py", "serve", "--weights", "random", "--backbone", cfg.backbone,
            "--port", str(self.port), "--data-dir", str(data_dir), "--long-side", str(cfg.long_side),
        ]
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.command = " ".join(cmd[1:])

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ApiUnavailable(f"the app exited with code {self.proc.returncode}: {self.tail()}")
            if _reachable(self.url):
                return
            time.sleep(0.5)
        raise ApiUnavailable(f"the app did not answer on {self.url} within {timeout_s:.0f} s: {self.tail()}")

    def tail(self, n: int = 400) -> str:
        try:
            return self.log_path.read_text()[-n:].strip().replace("\n", " | ")
        except OSError:
            return ""

    def peak_rss(self) -> int | None:
        return rss_bytes(self.proc.pid)[1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


# -- the client session ------------------------------------------------------------------------------


def _is_update(x) -> bool:
    return isinstance(x, dict) and x.get("__type__") == "update" and "value" not in x


class Session:
    """The endpoints this benchmark uses, checked against the app's API description up front."""

    NEEDED = ("/page_load", "/quick_add", "/upload", "/render_view", "/editor_input", "/tick")

    def __init__(self, url: str, download_dir: Path):
        from gradio_client import Client

        self.client = Client(url, verbose=False, download_files=str(download_dir))
        api = self.client.view_api(return_format="dict", print_info=False)
        self.endpoints = api.get("named_endpoints", {})
        missing = [e for e in self.NEEDED if e not in self.endpoints]
        if missing:
            raise ApiUnavailable(f"endpoints {', '.join(missing)} not found (the app names {len(self.endpoints)})")

    def _index(self, endpoint: str, component: str, label: str | None = None) -> int:
        returns = self.endpoints[endpoint]["returns"]
        for i, r in enumerate(returns):
            if r.get("component", "").lower() == component.lower() and (label is None or r.get("label") == label):
                return i
        raise ApiUnavailable(f"{endpoint} returns no {component}{f' {label!r}' if label else ''}")

    def call(self, endpoint: str, *args):
        return self.client.predict(*args, api_name=endpoint)


def _colours(style_html: str) -> list[str]:
    """Class colours in class order from the page's class-style CSS."""
    found = re.findall(r"nth-of-type\((\d+)\)\{border-left:\d+px solid (#[0-9a-fA-F]{6})", style_html or "")
    return [c for _, c in sorted(((int(n), c) for n, c in found), key=lambda t: t[0])]


def _find_colours(outputs) -> list[str]:
    for x in outputs if isinstance(outputs, list | tuple) else [outputs]:
        if isinstance(x, str) and (found := _colours(x)):
            return found
    raise ApiUnavailable("no class colours in the response (expected the class-style CSS with nth-of-type rules)")


def _hex(c: str) -> tuple[int, int, int]:
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


def stroke_mask(gt: np.ndarray, cls: int, rng: np.random.Generator, radius: int = 4, steps: int = 40) -> np.ndarray:
    """One brush stroke (random walk, round brush) inside the eroded region of class `cls`."""
    inside = ndimage.binary_erosion(gt == cls, iterations=radius + 2)
    if not inside.any():
        inside = gt == cls
    ys, xs = np.nonzero(inside)
    k = rng.integers(ys.size)
    y, x, angle = float(ys[k]), float(xs[k]), rng.uniform(0, 2 * np.pi)
    centres = np.zeros(gt.shape, bool)
    h, w = gt.shape
    for _ in range(steps):
        iy, ix = int(round(y)), int(round(x))
        if not (0 <= iy < h and 0 <= ix < w) or not inside[iy, ix]:
            break
        centres[iy, ix] = True
        angle += rng.normal(0, 0.3)
        y, x = y + 2 * np.sin(angle), x + 2 * np.cos(angle)
    return (ndimage.distance_transform_edt(~centres) <= radius) & (gt == cls)


def run_latency(cfg: BenchConfig, report: Report, app_url: str | None = None) -> None:
    section = report.section(
        "latency",
        f"3. Stroke-to-overlay latency through the app's API ({cfg.backbone}, random weights, "
        f"{cfg.latency_size}x{cfg.latency_size} images, features cached)",
        ["quantity", "value"],
    )
    try:
        import gradio_client  # noqa: F401
    except ImportError:
        section.skipped = "app API not available: gradio_client is not installed"
        report.target("stroke-to-overlay p50 / p95", "< 0.5 s / < 1 s", "-", None, section.skipped)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    app = None
    try:
        if app_url is None:
            (work / "data").mkdir()
            app = AppProcess(cfg, work / "data")
            log.info("latency: starting the app: %s", app.command)
            app.wait_ready(cfg.app_start_timeout_s)
            url = app.url
        else:
            url = app_url if app_url.endswith("/") else app_url + "/"
            if not _reachable(url):
                raise ApiUnavailable(f"no app answers at {url}")
        result = _session(cfg, url, work)
        if app is not None:
            result["app_peak_rss"] = app.peak_rss()
    except ApiUnavailable as exc:
        section.skipped = f"app API not available: {exc}"
        report.target("stroke-to-overlay p50 / p95", "< 0.5 s / < 1 s", "-", None, section.skipped)
        return
    finally:
        if app is not None:
            app.stop()
        shutil.rmtree(work, ignore_errors=True)
    _report(cfg, report, section, result, started=app is not None)


def _session(cfg: BenchConfig, url: str, work: Path) -> dict:
    from gradio_client import handle_file

    (work / "dl").mkdir(exist_ok=True)
    s = Session(url, work / "dl")
    k = cfg.num_classes if cfg.num_classes <= 3 else 3
    colours = _find_colours(s.call("/page_load", "Upload order"))
    n = 0
    while len(colours) < k:
        n += 1
        if n > 10:
            raise ApiUnavailable("could not add classes with /quick_add")
        colours = _find_colours(s.call("/quick_add", f"bench class {n}"))
    # Images: scenes with k ground-truth classes; GT class j is the project's class j.
    scenes = [synth.make_scene(cfg.latency_size, cfg.latency_size, k, cfg.seed + 700 + i) for i in range(cfg.latency_images)]
    paths = []
    for i, sc in enumerate(scenes):
        p = work / f"bench-latency-{cfg.seed}-{i}.png"
        Image.fromarray(sc.rgb).save(p)
        paths.append(p)
    t0 = time.perf_counter()
    up = s.call("/upload", [handle_file(str(p)) for p in paths], "Upload order")
    upload_s = time.perf_counter() - t0
    editor = up[s._index("/upload", "Imageeditor")]
    value = editor.get("value") if isinstance(editor, dict) else None
    if not value or not value.get("background"):
        raise ApiUnavailable("/upload did not open an image in the editor")
    bg_path = value["background"]
    bg = np.asarray(Image.open(bg_path))
    gt = scenes[0].gt
    if bg.shape[:2] != gt.shape:  # the editor shows a scaled copy: draw on the display grid
        gt = np.asarray(Image.fromarray(gt).resize((bg.shape[1], bg.shape[0]), Image.Resampling.NEAREST))
    # Wait for the features of the image being annotated (strokes must hit the cache).
    t0 = time.perf_counter()
    while True:
        img, note = s.call("/render_view", "Prediction", 0.55, [], 5)[:2]
        if not str(note).startswith("Computing features"):
            break
        if time.perf_counter() - t0 > 600:
            raise ApiUnavailable("features were not computed within 600 s")
        time.sleep(0.5)
    features_s = time.perf_counter() - t0
    tick_status = s._index("/tick", "Markdown")
    tick_image = s._index("/tick", "Image")
    rng = np.random.default_rng(cfg.seed)
    layer = np.zeros((*gt.shape, 4), np.uint8)
    layer_path = work / "layer.png"
    strokes = []
    total = cfg.latency_warmup_strokes + cfg.latency_strokes
    for i in range(total):
        cls = i % k
        mask = stroke_mask(gt, cls, rng)
        layer[mask, :3] = _hex(colours[cls])
        layer[mask, 3] = 255
        Image.fromarray(layer).save(layer_path, compress_level=1)
        value = {"background": handle_file(bg_path), "layers": [handle_file(str(layer_path))], "composite": None}
        t0 = time.perf_counter()
        s.call("/editor_input", value, True)
        t_sent = time.perf_counter() - t0
        polls, got, status, idle = 0, None, "", []
        # A head needs two labelled classes: after the very first stroke there is nothing to wait for.
        can_train = i >= 1
        while can_train and time.perf_counter() - t0 < STROKE_TIMEOUT_S:
            tp = time.perf_counter()
            out = s.call("/tick", "Prediction", 0.55, [], 5, "Upload order")
            polls += 1
            idle.append(time.perf_counter() - tp)
            if isinstance(out[tick_image], str) and not _is_update(out[tick_image]):
                got = time.perf_counter() - t0
                status = out[tick_status] if isinstance(out[tick_status], str) else ""
                break
            time.sleep(POLL_SLEEP_S)
        trained = re.search(r"Last training: ([0-9.]+) s", status)
        rec = {"stroke": i, "class": cls, "pixels": int(mask.sum()), "latency_s": got, "editor_input_s": t_sent,
               "polls": polls, "idle_tick_s": idle[:-1] if got is not None else idle, "server_train_s": float(trained.group(1)) if trained else None,
               "warmup": i < cfg.latency_warmup_strokes}
        strokes.append(rec)
        if got is None and can_train:
            log.warning("latency: stroke %d got no overlay within %.0f s", i, STROKE_TIMEOUT_S)
    return {"url": url, "strokes": strokes, "upload_s": upload_s, "features_wait_s": features_s,
            "classes": k, "images": len(scenes), "display_size": list(bg.shape[:2])}


def _ui_constants() -> tuple[float | None, float | None]:
    """The page's timer period and the engine's auto-train debounce, if this checkout has them."""
    tick = debounce = None
    try:
        from webapp.layout import TICK_SECONDS

        tick = float(TICK_SECONDS)
    except Exception:  # the app may be absent or reorganised; the numbers above do not depend on it
        pass
    try:
        from engine.settings import EngineSettings

        debounce = float(EngineSettings().debounce_s)
    except Exception:
        pass
    return tick, debounce


def _report(cfg: BenchConfig, report: Report, section, result: dict, started: bool) -> None:
    measured = [r for r in result["strokes"] if not r["warmup"]]
    ok = [r["latency_s"] for r in measured if r["latency_s"] is not None]
    sent = [r["editor_input_s"] for r in measured]
    train = [r["server_train_s"] for r in measured if r["server_train_s"] is not None]
    p50, p95 = percentile(ok, 50), percentile(ok, 95)
    tick, debounce = _ui_constants()
    idle = [t for r in measured for t in r["idle_tick_s"]]
    rest = [r["latency_s"] - r["editor_input_s"] - (debounce or 0.0) - r["server_train_s"]
            for r in measured if r["latency_s"] is not None and r["server_train_s"] is not None]
    rows = [
        ("strokes measured (after warm-up strokes)", f"{len(ok)} of {len(measured)} ({cfg.latency_warmup_strokes} warm-up)"),
        ("stroke-to-overlay p50", seconds(p50)),
        ("stroke-to-overlay p95", seconds(p95)),
        ("stroke-to-overlay min / max", f"{seconds(min(ok)) if ok else '-'} / {seconds(max(ok)) if ok else '-'}"),
        ("of which /editor_input round trip, p50", seconds(percentile(sent, 50))),
        ("of which training in the engine (its status line), p50", seconds(percentile(train, 50))),
        ("of which the engine's auto-train debounce (EngineSettings.debounce_s)",
         seconds(debounce) if debounce is not None else "-"),
        ("of which the rest (queueing, prediction, rendering, /tick round trips, download), p50",
         seconds(percentile(rest, 50))),
        ("/tick round trip when nothing changed, p50", seconds(percentile(idle, 50))),
        ("page timer period (/tick)", seconds(tick) if tick is not None else "-"),
        ("expected in a browser, p50 (measured + half a timer period)",
         seconds(p50 + tick / 2) if tick is not None and ok else "-"),
        ("images in the project / classes", f"{result['images']} / {result['classes']}"),
        ("editor display size", "x".join(map(str, result["display_size"]))),
        ("upload of the images (/upload)", seconds(result["upload_s"])),
        ("app server peak RSS (VmHWM)", f"{result['app_peak_rss'] / 2**20:,.0f} MiB" if result.get("app_peak_rss") else "-"),
    ]
    for name, value in rows:
        section.add_row([name, value])
    section.records.append(result)
    section.notes.append(
        ("The bench started the app itself (random weights, its own data folder). " if started else
         f"Against the running app at {result['url']}. ")
        + "One gradio_client session: strokes alternate between classes inside the ground-truth regions of the "
        "first image, each sent with /editor_input (auto-train on) after the previous overlay arrived; /tick is "
        f"then polled back-to-back ({POLL_SLEEP_S * 1000:.0f} ms apart) until it returns a new overlay. Figures "
        "are over the strokes after the warm-up ones (the first strokes label too few classes to train)."
    )
    met = bool(ok) and p50 < 0.5 and p95 < 1.0
    detail = []
    if ok and p50 >= 0.5:
        detail.append(f"p50 over by {p50 - 0.5:.2f} s")
    if ok and p95 >= 1.0:
        detail.append(f"p95 over by {p95 - 1.0:.2f} s")
    if debounce is not None and debounce >= 0.5:
        detail.append(f"the engine waits {debounce:.2f} s after each edit before training, more than the p50 target")
    if len(ok) < len(measured):
        detail.append(f"{len(measured) - len(ok)} stroke(s) got no overlay within {STROKE_TIMEOUT_S:.0f} s")
    report.target("stroke-to-overlay p50 / p95", "< 0.5 s / < 1 s", f"{seconds(p50)} / {seconds(p95)}",
                  met if ok else None, "; ".join(detail))
