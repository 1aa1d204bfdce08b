"""Regenerate webapp/screenshot.png: `python -m tests.webapp.make_screenshot webapp/screenshot.png`.

Starts the app with random weights, loads the sample images, scribbles three classes on the astronaut and
photographs the page once the head has trained. Not a test (pytest does not collect it).
"""

import shutil
import sys
import tempfile
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from tests.webapp.browser_support import app_server, browser

tmp = Path(tempfile.mkdtemp(prefix="probeseg-shot-"))
OUT = sys.argv[1] if len(sys.argv) > 1 else "webapp/screenshot.png"

def rect(page):
    box = page.locator("#editor").bounding_box()
    px = np.asarray(Image.open(BytesIO(page.locator("#editor").screenshot())).convert("RGB")).astype(int)
    bg = px[px.shape[0] // 2, 5]
    diff = np.abs(px - bg).sum(-1) > 40
    diff[:, :12] = diff[:, -12:] = False
    diff[:50] = diff[-12:] = False
    cols = np.nonzero(diff.mean(0) > 0.4)[0]
    rows = np.nonzero(diff.mean(1) > 0.4)[0]
    return box["x"] + cols.min(), box["y"] + rows.min(), box["x"] + cols.max(), box["y"] + rows.max()

def stroke(page, pts):
    page.mouse.move(*pts[0])
    page.mouse.down()
    for p in pts[1:]:
        page.mouse.move(*p, steps=6)
    page.mouse.up()

with app_server(tmp / "data", tmp / "server.log") as url, browser(tmp / "profile", 1500, 1240) as ctx:
    page = ctx.new_page()
    page.goto(url, wait_until="load")
    page.wait_for_selector("#editor", timeout=90000)
    page.locator("#active-class").filter(has_text="background").wait_for(timeout=90000)
    for name in ("astronaut", "flag"):
        page.locator("#quick-class-name").locator("textarea, input").first.fill(name)
        page.click("#quick-add-btn")
        page.locator("#active-class").filter(has_text=name).wait_for(timeout=90000)
    page.get_by_role("tab", name="Images").click()
    page.click("#samples-btn")
    page.locator("#import-report").filter(has_text="imported").wait_for(timeout=90000)
    page.get_by_role("tab", name="Annotate").click()
    page.locator("#title").filter(has_text="astronaut").wait_for(timeout=90000)
    page.wait_for_timeout(4000)
    page.locator("#editor").scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    x0, y0, x1, y1 = rect(page)
    W, H = x1 - x0, y1 - y0

    def P(fx, fy):
        return x0 + fx * W, y0 + fy * H

    def pick(key, rgb):
        page.keyboard.press(key)
        page.wait_for_function(
            "(c) => { const b = document.querySelector(\"#editor button[aria-label='Color']\");"
            " return b && b.style.color === c; }", arg="rgb({}, {}, {})".format(*rgb), timeout=90000)
    pick("2", (128, 0, 0))
    stroke(page, [P(0.3, 0.95), P(0.35, 0.7), P(0.45, 0.62), P(0.6, 0.7), P(0.62, 0.9)])
    stroke(page, [P(0.45, 0.25), P(0.5, 0.35), P(0.55, 0.25)])
    pick("3", (0, 128, 0))
    stroke(page, [P(0.03, 0.1), P(0.15, 0.2), P(0.05, 0.4), P(0.15, 0.5)])
    pick("1", (0, 0, 0))
    stroke(page, [P(0.88, 0.05), P(0.95, 0.3), P(0.9, 0.55)])
    stroke(page, [P(0.25, 0.05), P(0.35, 0.08)])
    stroke(page, [P(0.7, 0.15), P(0.72, 0.45)])
    page.locator("#status-line").filter(has_text="Last training").wait_for(timeout=120000)
    page.wait_for_timeout(6000)
    page.mouse.move(10, 10)
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(500)
    page.screenshot(path=str(tmp / "shot.png"))
shot = Image.open(tmp / "shot.png").convert("RGB")
shot.resize((1200, round(shot.height * 1200 / shot.width)), Image.Resampling.LANCZOS).save(OUT, optimize=True)
shutil.rmtree(tmp, ignore_errors=True)
print(f"wrote {OUT}")
