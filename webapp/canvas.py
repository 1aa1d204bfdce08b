"""The annotation canvas: a `gr.HTML` whose value is the JSON the browser needs (API base, image, classes);
the browser draws and edits everything itself through the REST API, in the ES modules of
webapp/static/canvas/ (no build step: served as they are, under a path named by their content's hash, so a
browser never mixes an old module with a new one)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from urllib.parse import quote

import gradio as gr
from fastapi import APIRouter, HTTPException, Response

from storage import ClassInfo, ImageInfo

MODULE_DIR = Path(__file__).parent / "static" / "canvas"
MODULE_PATH = "/static/canvas"


@cache
def modules() -> tuple[str, dict[str, bytes]]:
    """(version, {file name: source}) of the canvas's modules; the version hashes them all."""
    files = {p.name: p.read_bytes() for p in sorted(MODULE_DIR.glob("*.js"))}
    digest = hashlib.sha256(b"".join(name.encode() + b"\0" + src for name, src in files.items()))
    return digest.hexdigest()[:12], files


def module_router() -> APIRouter:
    """GET /static/canvas/{version}/{name}.js: a module by its name (only the files of MODULE_DIR, so no path
    reaches anything else), cached for good under the current version."""
    r = APIRouter()

    @r.get(MODULE_PATH + "/{version}/{name}")
    def get_module(version: str, name: str) -> Response:
        current, files = modules()
        if name not in files:
            raise HTTPException(404, f"no canvas module {name!r}")
        cache_control = "public, max-age=31536000, immutable" if version == current else "no-cache"
        return Response(files[name], media_type="text/javascript", headers={"Cache-Control": cache_control})

    return r


def loader_js() -> str:
    """gr.HTML's js_on_load: import the canvas's entry module and mount it on this element. (Gradio finds the
    custom events a component fires by their quoted names in this text: 'navigated' and 'refresh'.)"""
    version, _ = modules()
    return f"""
import('{MODULE_PATH}/{version}/main.js').then(({{ mount }}) => mount({{
  element, props, watch,
  events: {{ navigated: (data) => trigger('navigated', data), refresh: () => trigger('refresh') }},
}})).catch((e) => {{  // (the server went away between the page and its modules: say so where edits are reported)
  const el = element.querySelector('.ps-status');
  el.textContent = `The canvas could not be loaded (${{e.message}}): reload the page.`;
  el.className = 'ps-status bad';
}});
"""


TEMPLATE = """
<div class="ps-root" data-unsaved="0" data-refused="0">
  <div class="ps-bar">
    <span class="ps-group">
      <button type="button" data-tool="brush" title="Brush (b)">✎ Brush</button>
      <button type="button" data-tool="eraser" title="Eraser (e)">⌫ Erase</button>
      <button type="button" data-tool="point"
        title="Points (o): a click adds one, a click on one removes it">• Point</button>
      <button type="button" data-tool="pan"
        title="Pan (h; or drag with space or the middle button; wheel zooms)">✥ Pan</button>
    </span>
    <label class="ps-group"><span class="ps-size-label">Brush size</span>
      <input class="ps-size" type="range" min="1" max="60" value="8"></label>
    <span class="ps-group">
      <button type="button" class="ps-undo" title="Undo (Ctrl+Z)">↶ Undo</button>
      <button type="button" class="ps-redo" title="Redo (Ctrl+Shift+Z)">↷ Redo</button>
      <button type="button" class="ps-clear" title="Clear every label of this image">Clear</button>
      <button type="button" class="ps-fit" title="Fit the image (f)">Fit</button>
    </span>
    <span class="ps-group">
      <label><input class="ps-show-labels" type="checkbox" checked> labels</label>
      <label><input class="ps-show-pred" type="checkbox" checked> prediction</label>
      <label title="class boundaries follow the image's edges (off: the plain upsampled patch grid)"><input
        class="ps-edges" type="checkbox" checked> follow edges</label>
      <input class="ps-opacity" type="range" min="0" max="100" value="50" title="prediction opacity">
      <select class="ps-mode" title="what the prediction layer shows">
        <option value="classes">classes</option><option value="confidence">confidence</option>
        <option value="uncertainty">uncertainty</option></select>
      <label title="retrain the head after every edit"><input class="ps-auto" type="checkbox" checked>
        auto-train</label>
    </span>
  </div>
  <div class="ps-classes"></div>
  <div class="ps-stage"><canvas class="ps-view"></canvas></div>
  <div class="ps-status ok" role="status" aria-live="polite"></div>
</div>
"""

CSS = """
.ps-root { display: flex; flex-direction: column; gap: 4px; }
.ps-bar { display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: center; font-size: 12px; }
.ps-bar select { font-size: 12px; padding: 0 4px; height: 22px; }
.ps-group { display: inline-flex; gap: 4px; align-items: center; }
.ps-bar button, .ps-class { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 1px 7px;
  background: var(--button-secondary-background-fill); color: var(--body-text-color); cursor: pointer;
  font-size: 12px; }
.ps-bar button.active { background: var(--color-accent); color: white; }
.ps-classes { display: flex; flex-wrap: nowrap; gap: 4px; height: 28px; padding: 2px; overflow-x: auto;
  overflow-y: hidden; scrollbar-width: thin; }
.ps-class { flex: none; }
.ps-class { display: inline-flex; align-items: center; gap: 4px; }
.ps-class.active { outline: 3px solid var(--color-accent); font-weight: 600; }
.ps-sw { width: 14px; height: 14px; border-radius: 3px; display: inline-block; border: 1px solid #0006; }
.ps-eye { margin-left: 4px; }
.ps-stage { position: relative; height: 480px; min-height: 320px; background: #2b2b2b;
  border-radius: 6px; overflow: hidden; touch-action: none; }
.ps-view { position: absolute; inset: 0; width: 100%; height: 100%; touch-action: none; }
.ps-status { font-size: 13px; padding: 2px 6px; border-radius: 4px; height: 18px; line-height: 18px;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.ps-status.warn { background: #fff4ce; color: #5c4400; }
.ps-status.busy { color: var(--body-text-color-subdued); }
.ps-status.bad { background: #fde7e9; color: #8a1020; cursor: pointer; }
"""


def api_base(project_name: str) -> str:
    return f"/api/v1/projects/{quote(project_name, safe='')}"


def canvas_value(
    project_name: str,
    image: ImageInfo | None,
    classes: list[ClassInfo],
    nonce: int = 0,
    select: int | None = None,
    focus: tuple[int, int, int, int] | None = None,
    window: Sequence[ImageInfo] = (),
    nav: int = 0,
) -> str:
    """What the browser needs to show an image: the API base, the image, the class table. `nonce`
    changes force a reload of the same image's labels (after a refine, an import of masks, ...);
    `select` is a class id the brush switches to (a class just added); `focus` a box (x0, y0, x1, y1,
    image pixels) the view zooms to (a suggested region); `window` the images around it in the gallery's
    order, which the browser pages through with p / n by itself (fetching the next ones ahead); `nav` the
    browser's last page turn the server has followed (an older reply does not move the canvas back)."""
    return json.dumps(
        {
            "api": api_base(project_name),
            "image": None if image is None else _image(image),
            "window": [_image(i) for i in window],
            "nav": nav,
            "classes": [{"id": c.id, "name": c.name, "color": c.colour, "index": c.index} for c in classes],
            "nonce": nonce,
            "select": select,
            "focus": None if focus is None else [int(v) for v in focus],
        }
    )


def _image(image: ImageInfo) -> dict:
    return {
        "id": image.id,
        "name": image.name,
        "width": image.width,
        "height": image.height,
        "labelled": image.labelled_pixels > 0,  # an unlabelled image's empty map is not fetched
        "label_version": image.label_version,
    }


def build_canvas() -> gr.HTML:
    return gr.HTML(
        value="{}",
        html_template=TEMPLATE,
        css_template=CSS,
        js_on_load=loader_js(),
        elem_id="canvas",
        padding=False,
        container=False,
    )
