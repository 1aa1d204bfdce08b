"""End-to-end in a real browser (Debian's chromium via Playwright): the app as a user sees it.

One test walks the whole loop, because starting the server and drawing are slow on software rendering:
classes -> upload a two-colour image -> scribble each colour -> train -> the overlay follows the colours
-> reload and find the scribbles -> add and remove a point -> K-means view. A screenshot of each step goes
to <tmp_path>/screens (pytest keeps the last runs' tmp folders, so they survive a failure).
"""

from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.webapp.browser_support import CHROMIUM, app_server, browser, fetch_image, two_colour_png

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing (apt-get install chromium)"),
]

RED, BLUE = (128, 0, 0), (0, 128, 0)  # the colours the app gives the 2nd and 3rd class (VOC palette)
IMG_LEFT, IMG_RIGHT = (210, 40, 40), (40, 70, 210)
WAIT = 90_000


class Steps:
    def __init__(self, page, folder: Path):
        self.page, self.folder, self.n = page, folder, 0

    def shot(self, name: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(self.folder / f"{self.n:02d}-{name}.png"), full_page=True)


def text_of(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def wait_text(page, selector: str, text: str, timeout: int = WAIT) -> None:
    page.locator(selector).filter(has_text=text).first.wait_for(timeout=timeout)


def editor_pixels(page, selector: str = "#editor") -> tuple[np.ndarray, dict]:
    box = page.locator(selector).bounding_box()
    shot = Image.open(BytesIO(page.locator(selector).screenshot())).convert("RGB")
    return np.asarray(shot).astype(np.float32), box


def image_rect(page, selector: str = "#editor") -> tuple[float, float, float, float]:
    """Where the image is drawn on screen (x0, y0, x1, y1), once the editor's zoom animation has settled."""
    page.locator(selector).scroll_into_view_if_needed()
    last = None
    for _ in range(20):
        rect = _image_rect(page, selector)
        if last is not None and np.abs(np.subtract(rect, last)).max() <= 1:
            return rect
        last = rect
        page.wait_for_timeout(500)
    raise AssertionError("the editor image did not settle")


def _image_rect(page, selector: str) -> tuple[float, float, float, float]:
    px, box = editor_pixels(page, selector)
    close = nearest(px, [IMG_LEFT, IMG_RIGHT, (255, 255, 255)]) < 2
    close &= np.abs(px - np.where(px[..., :1] > 120, IMG_LEFT, IMG_RIGHT)).max(-1) < 40
    ys, xs = np.nonzero(close)
    assert xs.size > 1000, "the image is not visible in the editor"
    return box["x"] + xs.min(), box["y"] + ys.min(), box["x"] + xs.max(), box["y"] + ys.max()


def stroke(page, x0: float, y0: float, x1: float, y1: float) -> None:
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=8)
    page.mouse.up()


def pick_class(page, key: str, name: str, rgb: tuple[int, int, int]) -> None:
    """Press a class key and wait until the editor's brush has the class colour."""
    page.keyboard.press(key)
    page.locator("#active-class label.selected").filter(has_text=name).wait_for(timeout=WAIT)
    page.wait_for_function(
        "(c) => { const b = document.querySelector(\"#editor button[aria-label='Color']\");"
        " return b && b.style.color === c; }", arg="rgb({}, {}, {})".format(*rgb), timeout=WAIT)


def nearest(pixels: np.ndarray, colours: list[tuple[float, float, float]]) -> np.ndarray:
    c = np.asarray(colours, np.float32)
    return ((pixels[..., None, :].astype(np.float32) - c) ** 2).sum(-1).argmin(-1)


def test_annotate_train_reload_points_kmeans(tmp_path: Path):
    screens = tmp_path / "screens"
    screens.mkdir()
    image = two_colour_png(tmp_path / "two.png")
    print(f"screenshots: {screens}")
    with app_server(tmp_path / "data", tmp_path / "server.log", ("--long-side", "224")) as url, \
            browser(tmp_path / "profile") as ctx:
        page = ctx.new_page()
        steps = Steps(page, screens)
        page.goto(url, wait_until="load")
        page.wait_for_selector("#editor", timeout=WAIT)
        wait_text(page, "#active-class", "background")
        steps.shot("start")

        for name in ("red", "blue"):
            page.locator("#quick-class-name").locator("textarea, input").first.fill(name)
            page.click("#quick-add-btn")
            wait_text(page, "#active-class", name)
        page.get_by_role("tab", name="Images").click()
        page.set_input_files("#upload-files input[type=file]", str(image))
        wait_text(page, "#import-report", "1 imported")
        steps.shot("uploaded")
        page.get_by_role("tab", name="Annotate").click()
        wait_text(page, "#title", "two.png")
        page.locator("#editor canvas").first.wait_for(timeout=WAIT)
        page.wait_for_timeout(1500)

        # One stroke per colour region.
        x0, y0, x1, y1 = image_rect(page)
        iw, ih = x1 - x0, y1 - y0
        red_at = (x0 + 0.25 * iw, y0 + 0.5 * ih)
        blue_at = (x0 + 0.75 * iw, y0 + 0.5 * ih)
        pick_class(page, "2", "red", RED)
        stroke(page, x0 + 0.1 * iw, y0 + 0.45 * ih, x0 + 0.4 * iw, y0 + 0.55 * ih)
        pick_class(page, "3", "blue", BLUE)
        stroke(page, x0 + 0.6 * iw, y0 + 0.45 * ih, x0 + 0.9 * iw, y0 + 0.55 * ih)
        wait_text(page, "#image-info", "blue:")
        assert "red:" in text_of(page, "#image-info")
        steps.shot("scribbled")

        page.click("#train-btn")
        wait_text(page, "#status-line", "Last training")
        wait_text(page, "#view-note", "Prediction overlay")
        page.wait_for_timeout(1000)
        steps.shot("trained")
        overlay = fetch_image(ctx, page.locator("#view-img img").get_attribute("src"))
        h, w = overlay.shape[:2]
        a = 0.55  # default overlay opacity
        left_c = tuple((1 - a) * np.array(IMG_LEFT) + a * np.array(RED))
        right_c = tuple((1 - a) * np.array(IMG_RIGHT) + a * np.array(BLUE))
        left = nearest(overlay[:, : int(w * 0.4)], [left_c, right_c])
        right = nearest(overlay[:, int(w * 0.6) :], [left_c, right_c])
        assert (left == 0).mean() > 0.95, f"left half predicted red on {(left == 0).mean():.0%} of pixels"
        assert (right == 1).mean() > 0.95, f"right half predicted blue on {(right == 1).mean():.0%} of pixels"

        # Reload: the scribbles come back from storage into the editor.
        page.reload(wait_until="load")
        wait_text(page, "#title", "two.png")
        page.locator("#editor canvas").first.wait_for(timeout=WAIT)
        page.wait_for_timeout(2500)
        steps.shot("reloaded")
        image_rect(page)  # settled
        ed, box = editor_pixels(page)

        def at(x: float, y: float) -> np.ndarray:
            return ed[int(y - box["y"]), int(x - box["x"])]

        alpha = 0.6
        want_red = (1 - alpha) * np.array(IMG_LEFT) + alpha * np.array(RED)
        want_blue = (1 - alpha) * np.array(IMG_RIGHT) + alpha * np.array(BLUE)
        assert np.abs(at(*red_at) - want_red).max() < 30, at(*red_at)
        assert np.abs(at(*blue_at) - want_blue).max() < 30, at(*blue_at)
        assert np.abs(at(red_at[0], y0 + 0.1 * ih) - np.array(IMG_LEFT)).max() < 30  # unlabelled: the image

        # Points: a click adds one, a click on it removes it.
        page.locator("#mode label").filter(has_text="Point").click()
        page.locator("#points-img img").wait_for(timeout=WAIT)
        page.wait_for_timeout(1500)
        x0, y0, x1, y1 = image_rect(page, "#points-img")
        px, py = x0 + 0.25 * (x1 - x0), y0 + 0.85 * (y1 - y0)
        page.mouse.click(px, py)
        wait_text(page, "#image-info", "1 point")
        steps.shot("point-added")
        page.wait_for_timeout(1500)
        page.mouse.click(px, py)
        page.wait_for_function(
            "() => !document.querySelector('#image-info').innerText.includes('point')", timeout=WAIT)
        steps.shot("point-removed")

        # The shape prior: K-means of the patch features.
        page.locator("#view-mode label").filter(has_text="K-means (image)").click()
        wait_text(page, "#view-note", "K-means with k = 5")
        page.wait_for_timeout(1000)
        steps.shot("kmeans")
        clusters = fetch_image(ctx, page.locator("#view-img img").get_attribute("src"))
        assert clusters.shape[:2] == (h, w)
