"""The annotation canvas in a real browser (Debian's chromium via Playwright): what only a browser shows.

Two tests, because a server start and software-rendered drawing are slow: (1) one page: class keys,
strokes stored in the right class, the overlay follows, toggles repaint without the server, undo and
redo keys, a refused save shown as not saved, an idle page sends nothing; (2) two pages stroking one
image at once, then the server killed with SIGKILL mid-session and restarted: nothing acknowledged is
lost, and the stroke drawn while it was down is sent after the restart. Screenshots go to tmp_path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from storage import Repository
from tests.webapp.browser_support import (
    CHROMIUM,
    browser,
    canvas_state,
    draw_stroke,
    free_port,
    open_canvas,
    reload_canvas,
    start_server,
    stop_server,
    two_colour_png,
    wait_saved,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing (apt-get install chromium)"),
]
WAIT = 180_000


def prepare(data: Path, tmp_path: Path) -> tuple[int, dict[str, int]]:
    """Project 'default' with classes red and blue and a 320x240 image (red left half, blue right), then
    two smaller ones to page to (the last one labelled)."""
    with Repository.open(data) as repo:
        p = repo.create_project("default")
        ids = {n: repo.add_class(p.id, n).id for n in ("red", "blue")}
        im = repo.add_image(p.id, two_colour_png(tmp_path / "two.png").read_bytes(), "two.png")
        for name, (w, h) in (("b.png", (200, 150)), ("c.png", (150, 200))):
            other = repo.add_image(p.id, two_colour_png(tmp_path / name, w, h).read_bytes(), name)
        scribbles = np.full((200, 150), 255, np.uint8)
        scribbles[20:40, 10:60] = 1  # red (index 0 is the project's background class), in the red half
        repo.save_scribbles(other.id, scribbles)
    return im.id, ids


def app_predictions(data: Path, image_id: int, backbone) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """The stored head's prediction of the image as the app makes it (engine.prediction, the server's
    default resolution), with and without the boundary rule."""
    from core.config import FeatureConfig
    from engine import EngineSettings, ProjectEngine

    out = {}
    with Repository.open(data) as repo:
        pid = repo.find_project("default").id
        for name, edges in (("edges", EngineSettings().edges), ("bilinear", None)):
            engine = ProjectEngine.create(
                repo, backbone, data / "features", FeatureConfig.parse("auto"), EngineSettings(edges=edges)
            )
            try:
                out[name] = engine.prediction(pid, image_id, wait=120).labels
            finally:
                engine.close()
    return out


def labels(data: Path, image_id: int) -> np.ndarray:
    with Repository.open(data) as repo:
        return repo.label_map(image_id)


def test_keys_strokes_overlay_undo_refusal_and_a_quiet_idle_page(tmp_path: Path, random_backbone):
    data = tmp_path / "data"
    image_id, ids = prepare(data, tmp_path)
    proc = start_server(data, tmp_path / "server.log", free_port())
    url = f"http://127.0.0.1:{proc.args[proc.args.index('--port') + 1]}"
    try:
        with browser(tmp_path / "profile", 1366, 768) as ctx:
            page = ctx.new_page()
            open_canvas(page, url)
            box = page.locator(".ps-view").bounding_box()
            assert box["y"] + 300 < 768, box  # the canvas is above the fold at 1366x768

            # a stroke drawn right after a class key is stored in that class
            page.keyboard.press("2")
            draw_stroke(page, [(20, 60), (140, 60)])
            page.keyboard.press("3")
            draw_stroke(page, [(180, 160), (300, 160)])
            wait_saved(page)
            stored = labels(data, image_id)
            assert (stored[60, 25:135] == 1).all() and (stored[160, 185:295] == 2).all()
            assert (stored[60, 180:] == 255).all() and (stored[160, :140] == 255).all()

            # the overlay follows the colours (computed in the page from the patch-grid scores)
            page.wait_for_function(
                "() => window.__probeseg.strokes.length === 2 && "
                "window.__probeseg.strokes.every((s) => s.t_paint)",
                timeout=WAIT,
            )
            pred = np.array(page.evaluate("() => window.__probeseg.predictionLabels()"), np.uint8).reshape(
                240, 320
            )
            assert (pred[:, :130] == 1).mean() > 0.9 and (pred[:, 190:] == 2).mean() > 0.9
            page.screenshot(path=str(tmp_path / "1-overlay.png"))

            # the overlay is the app's own prediction at the layer's size, following the image's edges, or
            # with "follow edges" off the bilinear rule (computed here by the same engine on the same data)
            page.wait_for_timeout(4000)  # the last fit stored and shown, its boundary layer fetched
            page.wait_for_function(
                "() => { const P = window.__probeseg.state.pred; return P && !P.interim && P.edgeArg; }",
                timeout=WAIT,
            )
            expected = app_predictions(data, image_id, random_backbone)
            shown = np.array(page.evaluate("() => window.__probeseg.predictionLabels()"), np.uint8)
            assert (shown.reshape(240, 320) == expected["edges"]).mean() >= 0.999
            page.locator(".ps-edges").uncheck()
            shown = np.array(page.evaluate("() => window.__probeseg.predictionLabels()"), np.uint8)
            assert (shown.reshape(240, 320) == expected["bilinear"]).mean() >= 0.999
            page.locator(".ps-edges").check()

            # toggles repaint in the page without a server call (after the page's own refresh has settled)
            page.wait_for_timeout(3000)
            sent: list = []
            page.on(
                "request",
                lambda r: sent.append(r.url) if "/api/" in r.url or "/gradio_api/" in r.url else None,
            )
            page.locator(".ps-class .ps-eye").nth(2).click()
            page.locator(".ps-opacity").fill("80")
            page.locator(".ps-mode").select_option("uncertainty")
            page.wait_for_timeout(500)
            assert [u for u in sent if "/prediction" not in u] == []
            assert len(page.evaluate("() => window.__probeseg.toggleMs")) >= 3

            # undo and redo from the keyboard; their answers patch the page's label layer (nothing fetched)
            alpha = "() => window.__probeseg.state.labelCanvas.getContext('2d').getImageData(240, 160, 1, 1).data[3]"
            fetches = page.evaluate("() => window.__probeseg.labelFetches")
            assert page.evaluate(alpha) == 255
            page.keyboard.press("Control+z")
            wait_saved(page)
            assert (labels(data, image_id)[160] == 255).all()
            page.wait_for_function(f"() => ({alpha})() === 0", timeout=WAIT)
            page.keyboard.press("Control+Shift+z")
            wait_saved(page)
            assert (labels(data, image_id)[160, 185:295] == 2).all()
            page.wait_for_function(f"() => ({alpha})() === 255", timeout=WAIT)
            assert page.evaluate("() => window.__probeseg.labelFetches") == fetches

            # a refused action (a class name taken) says why and breaks nothing: no "Error" pill over any
            # component, and Undo right after it is clickable and works
            page.locator("#quick-class-name textarea, #quick-class-name input").first.fill("red")
            page.locator("#quick-add-btn").click()
            page.get_by_text("already has a class").first.wait_for(timeout=WAIT)
            page.wait_for_timeout(1000)
            assert page.get_by_text("Error", exact=True).count() == 0
            undo = page.locator(".ps-undo").bounding_box()
            hit = page.evaluate(
                f"() => document.elementFromPoint({undo['x'] + undo['width'] / 2}, "
                f"{undo['y'] + undo['height'] / 2}).className"
            )
            assert "ps-undo" in hit, hit
            page.screenshot(path=str(tmp_path / "1b-refused-class.png"))
            page.locator(".ps-undo").click()
            wait_saved(page)
            assert (labels(data, image_id)[160] == 255).all()

            # a save the server refuses (the class was deleted meanwhile) is shown as not saved
            with Repository.open(data) as repo:
                repo.delete_class(ids["blue"], "delete_labels")
            page.keyboard.press("3")
            draw_stroke(page, [(180, 200), (300, 200)])
            page.wait_for_function("() => window.__probeseg.state.edits.refused.length === 1", timeout=WAIT)
            status = page.locator(".ps-status").inner_text()
            assert "NOT saved" in status and "class" in status
            assert (labels(data, image_id)[200] == 255).all()
            page.screenshot(path=str(tmp_path / "2-refused.png"))

            # a reload restores the image, tool, class, zoom and the auto-train setting (from the URL)
            page.keyboard.press("2")
            page.locator("[data-tool='point']").click()
            page.locator(".ps-auto").uncheck()
            box = page.locator(".ps-view").bounding_box()
            page.mouse.move(box["x"] + 100, box["y"] + 100)
            page.mouse.wheel(0, -300)
            page.wait_for_function("() => location.search.includes('view=')", timeout=WAIT)  # once it stops
            before = canvas_state(page)
            assert before["tool"] == "point" and before["classId"] == ids["red"]
            reload_canvas(page)
            after = canvas_state(page)
            assert (after["tool"], after["classId"], after["image"]) == ("point", ids["red"], image_id)
            assert after["view"] == pytest.approx(before["view"], rel=1e-3, abs=0.2)
            assert page.evaluate("() => window.__probeseg.state.autoTrain") is False
            assert not page.locator(".ps-auto").is_checked()
            page.locator(".ps-auto").check()

            # n / p open the neighbour at once (picture and labels fetched ahead); the server follows
            second, third = image_id + 1, image_id + 2
            page.evaluate(
                "async (id) => { await window.__probeseg.state.ahead.pictures.get(`${id}:screen`); }", second
            )
            page.keyboard.press("n")
            assert canvas_state(page)["image"] == second  # before any reply from the server
            page.wait_for_function(f"() => window.__probeseg.state.labelsFor === {second}", timeout=WAIT)
            page.locator("#title").get_by_text("b.png").wait_for(timeout=WAIT)  # the server follows
            page.keyboard.press("n")
            assert canvas_state(page)["image"] == third
            page.wait_for_function(
                f"() => window.__probeseg.state.labelsFor === {third} && window.__probeseg.state.img",
                timeout=WAIT,
            )
            shown = page.evaluate("() => Array.from(window.__probeseg.state.labelIdx)")
            assert (np.array(shown, np.uint8).reshape(200, 150) == labels(data, third)).all()
            page.screenshot(path=str(tmp_path / "3-paged.png"))
            page.keyboard.press("p")  # twice, quicker than the server's replies: nothing moves back
            page.keyboard.press("p")
            assert canvas_state(page)["image"] == image_id
            page.locator("#title").get_by_text("two.png").wait_for(timeout=WAIT)
            page.wait_for_function(
                f"() => window.__probeseg.state.labelsFor === {image_id} && "
                f"window.__probeseg.state.cfg.image.id === {image_id}",
                timeout=WAIT,
            )

            # a project archive uploaded through the page comes back as a project, never as loose images
            with Repository.open(data) as repo:
                archive = repo.export_project(
                    repo.find_project("default").id, tmp_path / "default-project.zip"
                )
            page.get_by_role("tab", name="Images").click()
            page.locator("#upload-files input[type=file]").set_input_files(str(archive))
            page.locator("#bundle-md").get_by_text("is a probeseg project archive").wait_for(timeout=WAIT)
            page.locator("#bundle-name textarea, #bundle-name input").first.fill("restored")
            page.locator("#bundle-new").click()
            page.locator("#import-report").get_by_text("Project restored created").wait_for(timeout=WAIT)
            page.screenshot(path=str(tmp_path / "4-archive-imported.png"))
            with Repository.open(data) as repo:
                restored = repo.find_project("restored")
                assert restored is not None and restored.image_count == 3
                assert len(repo.list_images(repo.find_project("default").id)) == 3  # nothing added here
            page.get_by_role("tab", name="Annotate").click()

            # an idle page uploads nothing (only its one waiting prediction request, renewed every 20 s, and
            # its event stream, renewed every 25 s), once the refresh that follows the last prediction is done
            page.wait_for_timeout(4000)
            traffic: list = []
            page.on("request", lambda r: traffic.append((r.method, r.url, len(r.post_data_buffer or b""))))
            page.wait_for_timeout(30_000)
            assert [t for t in traffic if t[0] != "GET"] == [], traffic
            assert all("/prediction" in t[1] or "/events" in t[1] for t in traffic), traffic
            assert len(traffic) <= 6, traffic
        # views, galleries and toasts came inline, the archive upload was deleted once imported: the uploads
        # folder holds no file but Gradio's empty part file of that upload (swept at the next upload a minute on)
        left = [p for p in (data / "uploads").rglob("*") if p.is_file()]
        assert [p for p in left if not (p.name.startswith("tmp") and p.stat().st_size == 0)] == []
    finally:
        stop_server(proc)


def test_two_pages_and_a_killed_server_lose_no_acknowledged_stroke(tmp_path: Path):
    data = tmp_path / "data"
    image_id, ids = prepare(data, tmp_path)
    port = free_port()
    log = tmp_path / "server.log"
    proc = start_server(data, log, port)
    url = f"http://127.0.0.1:{port}"
    try:
        with browser(tmp_path / "profile", 1366, 900) as ctx:
            a, b = ctx.new_page(), ctx.new_page()
            open_canvas(a, url, image_id)
            open_canvas(b, url, image_id)
            # a class added elsewhere (here through the REST API) reaches both palettes without a reload
            added = httpx.post(f"{url}/api/v1/projects/default/classes", json={"name": "later"}, timeout=60)
            assert added.status_code == 201, added.text
            for page in (a, b):
                page.locator(".ps-class").filter(has_text="later").wait_for(timeout=WAIT)
            a.keyboard.press("2")
            b.keyboard.press("3")
            rows_a, rows_b = [10 + 12 * i for i in range(5)], [130 + 12 * i for i in range(5)]
            for ra, rb in zip(rows_a, rows_b, strict=True):  # interleaved, nobody waits for the other
                draw_stroke(a, [(10, ra), (150, ra)], steps=3)
                draw_stroke(b, [(170, rb), (310, rb)], steps=3)
            wait_saved(a)
            wait_saved(b)
            stored = labels(data, image_id)
            assert all((stored[r, 15:145] == 1).all() for r in rows_a)
            assert all((stored[r, 175:305] == 2).all() for r in rows_b)
            # each page shows the other's strokes without doing anything (the project's event stream)
            shown = "(p) => window.__probeseg.state.labelIdx[p] === "
            w = int(canvas_state(a)["W"])
            b.wait_for_function(f"{shown}1", arg=rows_a[-1] * w + 80, timeout=WAIT)
            a.wait_for_function(f"{shown}2", arg=rows_b[-1] * w + 240, timeout=WAIT)

            # undo is yours: A's Ctrl+Z takes back A's newest stroke although B drew after it; redo returns it
            a.keyboard.press("Control+z")
            wait_saved(a)
            stored = labels(data, image_id)
            assert (stored[rows_a[-1] + 4, 15:145] == 255).all() and (stored[rows_a[-2], 15:145] == 1).all()
            assert all((stored[r, 175:305] == 2).all() for r in rows_b)
            a.keyboard.press("Control+Shift+z")
            wait_saved(a)
            assert (labels(data, image_id)[rows_a[-1] + 4, 15:145] == 1).all()
            # a stroke drawn while the other page is idle appears there within seconds, trained on or not
            draw_stroke(a, [(10, 110), (150, 110)], steps=3)
            wait_saved(a)
            t0 = time.monotonic()
            b.wait_for_function(f"{shown}1", arg=110 * w + 80, timeout=WAIT)
            print(f"another page's stroke shown {time.monotonic() - t0:.2f} s after A saw it saved")

            proc.kill()  # SIGKILL: no shutdown of any kind
            proc.wait(30)
            draw_stroke(a, [(10, 220), (150, 220)], steps=3)
            a.wait_for_function("() => window.__probeseg.state.edits.failures > 0", timeout=WAIT)
            assert canvas_state(a)["unsaved"] == 1
            assert "unsaved" in a.locator(".ps-status").inner_text()
            proc = start_server(data, log, port)
            wait_saved(a)  # retried with the same op_id after the restart
            reload_canvas(a)  # (the URL holds the image: no ?image= given here)
            shown = np.array(a.evaluate("() => Array.from(window.__probeseg.state.labelIdx)"), np.uint8)
            stored = labels(data, image_id)
            assert np.array_equal(shown.reshape(stored.shape), stored)
            assert all((stored[r, 15:145] == 1).all() for r in rows_a + [220])
            assert all((stored[r, 175:305] == 2).all() for r in rows_b)
            assert canvas_state(a)["image"] == image_id  # a reload returns to the same image
    finally:
        stop_server(proc)
