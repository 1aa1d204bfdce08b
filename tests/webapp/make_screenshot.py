"""Regenerate webapp/screenshot.png: `python -m tests.webapp.make_screenshot webapp/screenshot.png`.

Starts the app with random weights, loads the sample images, scribbles three classes on the astronaut in the
canvas and photographs the page once the head has trained. Not a test (pytest does not collect it).
"""

import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image

from tests.webapp.browser_support import app_server, browser, draw_stroke, open_canvas

tmp = Path(tempfile.mkdtemp(prefix="probeseg-shot-"))
OUT = sys.argv[1] if len(sys.argv) > 1 else "webapp/screenshot.png"

with app_server(tmp / "data", tmp / "server.log") as url, browser(tmp / "profile", 1366, 768) as ctx:
    page = ctx.new_page()
    page.goto(url, wait_until="load")
    for name in ("astronaut", "flag"):
        page.locator("#quick-class-name").locator("textarea, input").first.fill(name)
        page.click("#quick-add-btn")
        page.locator(".ps-class").filter(has_text=name).wait_for(timeout=90000)
    page.get_by_role("tab", name="Images").click()
    page.click("#samples-btn")
    page.locator("#import-report").filter(has_text="imported").wait_for(timeout=90000)
    page.get_by_role("tab", name="Annotate").click()
    open_canvas(page, url)
    st = page.evaluate("() => [window.__probeseg.state.W, window.__probeseg.state.H]")
    W, H = st

    def P(fx, fy):
        return fx * W, fy * H

    page.keyboard.press("2")
    draw_stroke(page, [P(0.3, 0.95), P(0.35, 0.7), P(0.45, 0.62), P(0.6, 0.7), P(0.62, 0.9)])
    draw_stroke(page, [P(0.45, 0.25), P(0.5, 0.35), P(0.55, 0.25)])
    page.keyboard.press("3")
    draw_stroke(page, [P(0.03, 0.1), P(0.15, 0.2), P(0.05, 0.4), P(0.15, 0.5)])
    page.keyboard.press("1")
    draw_stroke(page, [P(0.88, 0.05), P(0.95, 0.3), P(0.9, 0.55)])
    draw_stroke(page, [P(0.25, 0.05), P(0.35, 0.08)])
    draw_stroke(page, [P(0.7, 0.15), P(0.72, 0.45)])
    page.wait_for_function("() => window.__probeseg.strokes.every((s) => s.t_paint)", timeout=120000)
    page.wait_for_timeout(6000)
    page.mouse.move(10, 10)
    page.screenshot(path=str(tmp / "shot.png"))
shot = Image.open(tmp / "shot.png").convert("RGB")
shot.resize((1200, round(shot.height * 1200 / shot.width)), Image.Resampling.LANCZOS).save(OUT, optimize=True)
shutil.rmtree(tmp, ignore_errors=True)
print(f"wrote {OUT}")
