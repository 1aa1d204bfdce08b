"""The REST API over HTTP, on the real app (Gradio + the API routes) served in this process."""

from __future__ import annotations

import base64
import io
import json
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from core.features import upsample_rows
from core.predict import Predictor
from tests.images import png_bytes, two_colour
from tests.webapp.test_server import free_port
from webapp import server
from webapp.config import ServeConfig


@pytest.fixture
def app(tmp_path, random_backbone):
    """(base URL of project 'demo', context) of a running app; with `request.param` as its login."""

    def start(auth: str | None = None):
        cfg = ServeConfig(
            port=free_port(),
            data_dir=str(tmp_path / "data"),
            weights="random",
            resolution="112",
            project="demo",
            auth=auth,
        )
        ctx = server.create_context(cfg, backbone=random_backbone)
        demo = server.build_app(cfg, ctx)
        demo.launch(prevent_thread_lock=True, **server.launch_kwargs(cfg, ctx))
        started.append((demo, ctx))
        return cfg.url, ctx

    started: list = []
    yield start
    for demo, ctx in started:
        demo.close()
        ctx.engine.close()


def upload(client: httpx.Client, base: str, files: list[tuple[str, bytes]]) -> httpx.Response:
    return client.post(
        f"{base}/images", files=[("files", f) for f in files], headers={"X-Requested-With": "test"}
    )


def test_classes_images_ops_labels_points(app):
    url, ctx = app()
    base = f"{url}/api/v1/projects/demo"
    with httpx.Client(timeout=120) as c:
        assert c.get(f"{base}/classes").json() == [
            {"id": 1, "name": "background", "color": "#000000", "index": 0}
        ]
        red = c.post(f"{base}/classes", json={"name": "red"})
        assert red.status_code == 201 and red.json()["index"] == 1
        blue = c.post(f"{base}/classes", json={"name": "blue", "color": "#0000ff"}).json()
        assert blue["color"] == "#0000ff"
        r = upload(c, base, [("two.png", png_bytes(two_colour())), ("notes.png", b"not an image")])
        assert r.status_code == 200
        body = r.json()
        assert [i["name"] for i in body["imported"]] == ["two.png"] and body["rejected"][0][
            "name"
        ] == "notes.png"
        assert "not" in body["rejected"][0]["reason"] and "Traceback" not in r.text
        [im] = c.get(f"{base}/images").json()
        assert (im["width"], im["height"]) == (112, 84)
        f = c.get(f"{base}/images/{im['id']}/file")
        assert Image.open(io.BytesIO(f.content)).size == (112, 84)
        assert (
            c.get(f"{base}/images/{im['id']}/file", headers={"If-None-Match": f.headers["etag"]}).status_code
            == 304
        )

        op = {
            "op_id": "s-1",
            "kind": "stroke",
            "class_id": red.json()["id"],
            "radius": 2,
            "points": [[5, 40], [40, 40]],
        }
        ack = c.post(f"{base}/images/{im['id']}/ops", json=op).json()
        assert ack["seq"] == 1 and ack["duplicate"] is False and ack["applied"] is True
        again = c.post(f"{base}/images/{im['id']}/ops", json=op).json()
        assert again["duplicate"] is True and again["seq"] == 1
        c.post(
            f"{base}/images/{im['id']}/ops",
            json={
                "op_id": "p-1",
                "kind": "point",
                "class_id": blue["id"],
                "radius": 1,
                "points": [[100, 10]],
            },
        )
        stored = ctx.engine.repo.label_map(im["id"])
        assert (stored[40, 5:41] == 1).all() and stored[10, 100] == 2
        labels = c.get(f"{base}/images/{im['id']}/labels")
        palette = Image.open(io.BytesIO(labels.content))
        assert palette.mode == "P" and np.array_equal(np.asarray(palette), stored)
        gray = c.get(f"{base}/images/{im['id']}/labels?mode=gray")
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(gray.content))), stored)
        etag = labels.headers["etag"]
        assert c.get(f"{base}/images/{im['id']}/labels", headers={"If-None-Match": etag}).status_code == 304
        [pt] = c.get(f"{base}/images/{im['id']}/points").json()
        assert (pt["x"], pt["y"], pt["index"]) == (100, 10, 2)
        assert "delta" not in ack  # (a stroke: the client drew it)
        undone = c.post(f"{base}/images/{im['id']}/ops", json={"op_id": "u-1", "kind": "undo"}).json()
        assert c.get(f"{base}/images/{im['id']}/points").json() == [] == undone["points"]
        # the undo answers with what changed: the point's disc, and the labels there now (unlabelled)
        x0, y0, x1, y1 = undone["delta"]["box"]
        patch = np.asarray(Image.open(io.BytesIO(base64.b64decode(undone["delta"]["png"]))))
        assert x0 <= 100 < x1 and y0 <= 10 < y1 and x1 - x0 <= 4 and patch.shape == (y1 - y0, x1 - x0)
        after = stored.copy()
        after[y0:y1, x0:x1] = patch
        np.testing.assert_array_equal(after, ctx.engine.repo.label_map(im["id"]))
        assert c.get(f"{base}/images/{im['id']}/labels", headers={"If-None-Match": etag}).status_code == 200


def test_prediction_travels_small_and_matches_core(app):
    url, ctx = app()
    base = f"{url}/api/v1/projects/demo"
    with httpx.Client(timeout=120) as c:
        red, blue = (c.post(f"{base}/classes", json={"name": n}).json()["id"] for n in ("red", "blue"))
        [im] = upload(c, base, [("two.png", png_bytes(two_colour()))]).json()["imported"]
        assert c.get(f"{base}/images/{im['id']}/prediction").status_code == 204  # no head yet
        ctx.engine.features(im["id"], wait=120)
        ops = [
            {"op_id": "a", "kind": "stroke", "class_id": red, "radius": 3, "points": [[5, 40], [45, 40]]},
            {"op_id": "b", "kind": "stroke", "class_id": blue, "radius": 3, "points": [[65, 20], [105, 20]]},
        ]
        gens = [c.post(f"{base}/images/{im['id']}/ops", json=op).json()["train_generation"] for op in ops]
        assert gens[1] > gens[0] > 0  # every committed edit asks for a fit at once
        deadline, p = time.monotonic() + 120, None
        while time.monotonic() < deadline:  # interim heads come first; wait for the final one
            r = c.get(
                f"{base}/images/{im['id']}/prediction",
                params={"wait": 20} | ({"after": p["version"]} if p else {}),
            )
            if r.status_code == 200:
                p = r.json()
                if not p["interim"] and p["generation"] >= gens[1]:
                    break
        assert p is not None and not p["interim"]
        assert len(r.content) < 20_000 and p["grid"] == [6, 8] and p["classes"] == [0, 1, 2]
        assert r.headers["content-encoding"] == "gzip"  # (httpx asks for it, as browsers do, and unpacks it)
        plain_json = c.get(f"{base}/images/{im['id']}/prediction", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain_json.headers and plain_json.json() == p
        logits = np.frombuffer(base64.b64decode(p["logits"]), "<f4").reshape(p["channels"], *p["grid"])
        # the client's rule (bilinear, align_corners=False, argmax) gives core's full-size bilinear prediction
        H, W = p["size"]
        up = upsample_rows(torch.from_numpy(logits.copy()), (H, W), slice(0, H)).argmax(0).numpy()
        plain = Predictor(edges=None)
        plain.set_features(ctx.engine.features(im["id"]))
        assert (up == plain.predict(ctx.engine.head(ctx.project_id).head).labels).mean() > 0.999
        # ?dtype=float16: the same scores in half the bytes; anything else is refused saying what is valid
        half = c.get(f"{base}/images/{im['id']}/prediction", params={"dtype": "float16"}).json()
        assert half["dtype"] == "float16" and half["version"] == p["version"]
        assert len(base64.b64decode(half["logits"])) * 2 == len(base64.b64decode(p["logits"]))
        h16 = np.frombuffer(base64.b64decode(half["logits"]), "<f2").reshape(logits.shape).astype(np.float32)
        assert np.allclose(h16, logits, rtol=1e-3, atol=1e-3)
        bad = c.get(f"{base}/images/{im['id']}/prediction", params={"dtype": "int8"})
        assert bad.status_code == 422 and "float32, float16" in bad.json()["detail"]
        # and the edge layer at the image's size is the app's prediction (boundaries following the image)
        r = c.get(f"{base}/images/{im['id']}/edges", params={"size": f"{H}x{W}"})
        assert r.json()["version"] == p["version"]
        shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["png"]))))
        assert (shown == ctx.engine.prediction(ctx.project_id, im["id"]).labels).mean() > 0.999
        # nothing newer: a waiting request returns 204 when its time is up
        start = time.monotonic()
        r = c.get(f"{base}/images/{im['id']}/prediction", params={"after": p["version"], "wait": 0.5})
        assert r.status_code == 204 and time.monotonic() - start >= 0.45


def test_refine_labels_confident_pixels_and_only_its_client_undoes_it(app):
    url, ctx = app()
    base = f"{url}/api/v1/projects/demo"
    with httpx.Client(timeout=120) as c:
        red, blue = (c.post(f"{base}/classes", json={"name": n}).json()["id"] for n in ("red", "blue"))
        [im] = upload(c, base, [("two.png", png_bytes(two_colour()))]).json()["imported"]
        ctx.engine.features(im["id"], wait=120)
        for op_id, cid, y in (("a", red, 40), ("b", blue, 20)):
            x0 = 5 if cid == red else 65
            op = {
                "op_id": op_id,
                "kind": "stroke",
                "class_id": cid,
                "radius": 3,
                "points": [[x0, y], [x0 + 40, y]],
            }
            c.post(f"{base}/images/{im['id']}/ops", json=op | {"client": "tab-a"})
        ctx.engine.train_now(ctx.project_id, timeout=120)
        before = ctx.engine.repo.label_map(im["id"])
        refine = f"{base}/images/{im['id']}/refine"
        r = c.post(refine, json={"threshold": 0.5, "classes": [blue], "client": "tab-a"}).json()
        after = ctx.engine.repo.label_map(im["id"])
        assert r["added"] == int(((after != 255) & (before == 255)).sum()) > 0
        assert set(np.unique(after[(after != 255) & (before == 255)])) == {2}  # blue's pixels only
        undo = {"kind": "undo", "client": "tab-b"}
        assert not c.post(f"{base}/images/{im['id']}/ops", json=undo | {"op_id": "u1"}).json()["applied"]
        assert c.post(f"{base}/images/{im['id']}/ops", json=undo | {"op_id": "u2", "client": "tab-a"}).json()[
            "applied"
        ]
        assert (ctx.engine.repo.label_map(im["id"]) == before).all()
        for body, status, words in (
            ({"threshold": 1.5}, 400, "threshold"),
            ({"threshold": "high"}, 422, "threshold"),
            ({"threshold": 0.5, "classes": ["red"]}, 422, "class ids"),
            ({"threshold": 0.5, "client": "a tab"}, 422, "client"),
        ):
            r = c.post(refine, json=body)
            assert r.status_code == status and words in r.json()["detail"], (body, r.text)


@pytest.mark.parametrize(
    "method, path, kwargs, status, words",
    [
        ("post", "/images/1/ops", {"json": {"op_id": "x", "kind": "paint"}}, 422, "unknown kind"),
        (
            "post",
            "/images/1/ops",
            {"json": {"op_id": "x", "kind": "stroke", "radius": 1, "points": [[1, 1]]}},
            422,
            "class_id",
        ),
        (
            "post",
            "/images/1/ops",
            {"json": {"op_id": "x", "kind": "stroke", "class_id": 999, "radius": 1, "points": [[1, 1]]}},
            404,
            "class 999",
        ),
        (
            "post",
            "/images/1/ops",
            {"json": {"op_id": "x", "kind": "point", "class_id": 1, "radius": 1, "points": [[1e9, 1]]}},
            422,
            "outside",
        ),
        (
            "post",
            "/images/1/ops",
            {"json": {"op_id": "x", "kind": "stroke", "class_id": 1, "radius": 1, "points": [["a", 1]]}},
            422,
            "number",
        ),
        (
            "post",
            "/images/1/ops",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "not valid JSON",
        ),
        (
            "post",
            "/images/1/ops",
            {"content": b"kind=stroke", "headers": {"Content-Type": "text/plain"}},
            415,
            "JSON",
        ),
        ("post", "/images/99/ops", {"json": {"op_id": "x", "kind": "undo"}}, 404, "image 99"),
        ("get", "/images/99/labels", {}, 404, "image 99"),
        ("get", "/images/abc/labels", {}, 422, ""),
        ("get", "/images/1/labels?mode=rgb", {}, 422, "mode"),
        ("post", "/classes", {"json": {"colour": "#ffffff"}}, 422, "name"),
        ("post", "/classes", {"json": {"name": "background"}}, 409, "already"),
        ("post", "/images", {"files": [("files", ("a.png", b"x"))]}, 400, "X-Requested-With"),
    ],
)
def test_malformed_requests_get_a_4xx_with_a_message(app, method, path, kwargs, status, words):
    url, ctx = app()
    ctx.engine.repo.add_image(ctx.project_id, png_bytes(two_colour()), "two.png")
    with httpx.Client(timeout=120) as c:
        r = getattr(c, method)(f"{url}/api/v1/projects/demo{path}", **kwargs)
        assert r.status_code == status, r.text
        assert words in str(r.json()["detail"]) and "Traceback" not in r.text
        assert not re.search(r"\w\(\w*\)", str(r.json()["detail"]))  # names no code (a function call)
        assert c.get(f"{url}/api/v1/projects/nope/classes").status_code == 404
    assert ctx.engine.repo.history(1) == []  # nothing was stored by any of them


def test_the_api_needs_the_login_when_auth_is_on(app):
    url, _ctx = app("ann:s3cret")
    base = f"{url}/api/v1/projects/demo"
    with httpx.Client(timeout=120) as c:
        r = c.get(f"{base}/classes")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert c.post(f"{base}/images/1/ops", json={"op_id": "x", "kind": "undo"}).status_code == 401
        assert c.get(f"{base}/classes", auth=("ann", "wrong")).status_code == 401
        assert c.get(f"{base}/classes", auth=("ann", "s3cret")).status_code == 200
        # the page's session cookie works too (what the canvas uses)
        assert c.post(f"{url}/login", data={"username": "ann", "password": "s3cret"}).status_code == 200
        assert c.get(f"{base}/classes").status_code == 200


def documented_keys() -> dict[str, set[str]]:
    """README's REST table: route -> the top-level keys of the JSON it documents as the response (the part
    after the arrow, else the whole cell); routes documenting no JSON object are left out."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## REST API", 1)[1].split("\n## ", 1)[0]
    out = {}
    for match in re.finditer(r"^\| `(GET|POST|PUT) ([^`]+)` \| (.+) \|$", table, re.M):
        method, route, what = match.groups()
        response = what.split("→", 1)[1] if "→" in what else what
        start = response.find("{")
        if start < 0:
            continue
        keys, depth, i = set(), 0, start
        while i < len(response):
            ch = response[i]
            if ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    break
            elif ch == '"':
                end = response.index('"', i + 1)
                if depth == 1 and response[:i].rstrip()[-1] in "{,":  # a key, not a value after ':'
                    keys.add(response[i + 1 : end])
                i = end
            i += 1
        out[f"{method} {route}"] = keys
    return out


def test_the_readme_rest_table_matches_the_responses(app):
    documented = documented_keys()
    assert len(documented) >= 6, documented
    url, ctx = app()
    base = f"{url}/api/v1/projects/demo"
    seen: dict[str, set[str]] = {}
    with httpx.Client(timeout=120) as c:
        seen["GET /classes"] = set(c.get(f"{base}/classes").json()[0])
        red = c.post(f"{base}/classes", json={"name": "red"}).json()
        blue = c.post(f"{base}/classes", json={"name": "blue"}).json()
        up = upload(c, base, [("two.png", png_bytes(two_colour())), ("x.png", b"no image")]).json()
        seen["POST /images"] = set(up)
        seen["GET /images"] = set(c.get(f"{base}/images").json()[0])
        seen["GET /features"] = set(c.get(f"{base}/features").json())
        image = up["imported"][0]["id"]
        ctx.engine.features(image, wait=120)
        ops = [
            {
                "op_id": "a",
                "kind": "stroke",
                "class_id": red["id"],
                "radius": 3,
                "points": [[5, 40], [45, 40]],
            },
            {"op_id": "b", "kind": "point", "class_id": blue["id"], "radius": 3, "points": [[90, 20]]},
        ]
        acks = [c.post(f"{base}/images/{image}/ops", json=op).json() for op in ops]
        seen["POST /images/{id}/ops"] = set(acks[0])
        seen["GET /images/{id}/points"] = set(c.get(f"{base}/images/{image}/points").json()[0])
        r = c.get(f"{base}/images/{image}/prediction", params={"wait": 25})
        for _ in range(4):  # the first fit may take a while on a loaded machine
            if r.status_code == 200:
                break
            r = c.get(f"{base}/images/{image}/prediction", params={"wait": 25})
        assert r.status_code == 200
        seen["GET /images/{id}/prediction"] = set(r.json())
        ctx.engine.train_now(
            ctx.project_id, timeout=120
        )  # a stored head (the prediction may be an interim one)
        refined = c.post(f"{base}/images/{image}/refine", json={"threshold": 0.99, "client": "docs"})
        assert refined.status_code == 200, refined.text
        seen["POST /images/{id}/refine"] = set(refined.json())
        h, w = r.json()["size"]
        layer = c.get(f"{base}/images/{image}/edges", params={"size": f"{h // 2}x{w // 2}"})
        seen["GET /images/{id}/edges"] = set(layer.json())
        channels = np.asarray(Image.open(io.BytesIO(base64.b64decode(layer.json()["png"]))))
        assert channels.shape == (h // 2, w // 2) == tuple(layer.json()["size"])
        assert set(np.unique(channels)) <= set(range(r.json()["channels"]))
        for bad in ("0x5", f"{h + 1}x{w}", "big"):
            refused = c.get(f"{base}/images/{image}/edges", params={"size": bad})
            assert refused.status_code == 422 and "HEIGHTxWIDTH" in refused.json()["detail"]
        seen["GET /resolution"] = set(c.get(f"{base}/resolution").json())
        put = c.put(f"{base}/resolution", json={"resolution": "7px"})
        assert put.status_code == 200 and put.json()["resolution"] == "7px", put.text
        seen["PUT /resolution"] = set(put.json())
        assert ctx.engine.features(image, wait=120).grid == (12, 16)  # recomputed at 7 px a token
        for body, status in (({"resolution": "fine"}, 400), ({"resolution": 7}, 422), ({}, 422)):
            refused = c.put(f"{base}/resolution", json=body)
            assert refused.status_code == status and "auto" in refused.json()["detail"], refused.text
        assert c.put(f"{base}/resolution", json={"resolution": None}).json()["resolution"] == "112"
        archive = c.get(f"{base}/export", params={"format": "archive"}).content
        made = c.post(
            f"{url}/api/v1/projects/docs/import",
            files={"file": ("a.zip", archive)},
            headers={"X-Requested-With": "test"},
        )
        seen["POST /import"] = set(made.json())
    for route, keys in seen.items():
        assert documented.get(route) == keys, (
            f"README's row {route}: documents {documented.get(route)}, got {keys}"
        )
    assert set(documented) <= set(seen), f"documented but not checked: {set(documented) - set(seen)}"


def test_exports_stream_and_leave_nothing_behind(app):
    url, ctx = app()
    base = f"{url}/api/v1/projects/demo"
    with httpx.Client(timeout=300) as c:
        red = c.post(f"{base}/classes", json={"name": "red"}).json()["id"]
        blue = c.post(f"{base}/classes", json={"name": "blue"}).json()["id"]
        [im] = upload(c, base, [("two.png", png_bytes(two_colour()))]).json()["imported"]
        ctx.engine.features(im["id"], wait=120)
        for op in (
            {"op_id": "a", "kind": "stroke", "class_id": red, "radius": 3, "points": [[5, 40], [45, 40]]},
            {"op_id": "b", "kind": "stroke", "class_id": blue, "radius": 3, "points": [[65, 20], [105, 20]]},
        ):
            c.post(f"{base}/images/{im['id']}/ops", json=op)
        ctx.engine.wait_settled(ctx.project_id, timeout=120)
        voc = c.get(f"{base}/export", params={"format": "voc"})
        assert voc.status_code == 200 and "demo-labels-voc.zip" in voc.headers["content-disposition"]
        with zipfile.ZipFile(io.BytesIO(voc.content)) as zf:
            labels = np.asarray(Image.open(io.BytesIO(zf.read("labels/two.png"))))
        assert np.array_equal(labels, ctx.engine.repo.label_map(im["id"]))
        pred = c.get(f"{base}/export", params={"format": "voc", "predictions": "true"})
        with zipfile.ZipFile(io.BytesIO(pred.content)) as zf:
            predicted = np.asarray(Image.open(io.BytesIO(zf.read("labels/two.png"))))
        assert np.array_equal(predicted, ctx.engine.prediction(ctx.project_id, im["id"]).labels)
        coco = c.get(f"{base}/export", params={"format": "coco"}).json()
        assert len(coco["images"]) == 1 and coco["annotations"]
        archive = c.get(f"{base}/export", params={"format": "archive"})
        assert zipfile.is_zipfile(io.BytesIO(archive.content))
        bad = c.get(f"{base}/export", params={"format": "tar"})
        assert bad.status_code == 422 and "archive, voc, coco" in bad.json()["detail"]
        refused = c.get(f"{base}/export", params={"format": "archive", "predictions": "true"})
        assert refused.status_code in (400, 422) and "voc or coco" in refused.json()["detail"]
    # each file was deleted once sent (by a task that runs just after the last byte): the folder empties
    deadline = time.monotonic() + 30
    while [p for p in Path(ctx.export_dir).rglob("*") if p.is_file()] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in Path(ctx.export_dir).rglob("*") if p.is_file()] == []


def test_exports_come_back_through_the_import_route(app):
    """Archive -> import -> archive gives the same project; a VOC zip gives the same label maps, ground truth,
    splits and classes; a name in use is 409; a zip of loose images is refused with what to do instead."""
    from tests.storage.test_exports import _snapshot

    url, ctx = app()
    api = f"{url}/api/v1/projects"
    base = f"{api}/demo"
    with httpx.Client(timeout=300, headers={"X-Requested-With": "test"}) as c:
        red = c.post(f"{base}/classes", json={"name": "red", "color": "#aa0000"}).json()["id"]
        blue = c.post(f"{base}/classes", json={"name": "blue"}).json()["id"]
        up = upload(
            c, base, [("two.png", png_bytes(two_colour())), ("other.png", png_bytes(two_colour(seed=3)))]
        )
        first, second = (i["id"] for i in up.json()["imported"])
        for n, (cid, y) in enumerate(((red, 40), (blue, 20))):
            op = {
                "op_id": f"s{n}",
                "kind": "stroke",
                "class_id": cid,
                "radius": 2,
                "points": [[5, y], [60, y]],
            }
            c.post(f"{base}/images/{first}/ops?train=false", json=op)
        c.post(f"{base}/images/{first}/ops?train=false", json={"op_id": "u", "kind": "undo"})  # history kept
        ctx.engine.repo.set_ground_truth(
            second, np.where(np.arange(112)[None, :] < 56, 1, 2).repeat(84, 0).astype(np.uint8)
        )
        ctx.engine.repo.set_split(second, "val")

        archive = c.get(f"{base}/export", params={"format": "archive"}).content
        made = c.post(f"{api}/copy/import", files={"file": ("demo.zip", archive)})
        assert made.status_code == 201, made.text
        assert (made.json()["project"], made.json()["images"], made.json()["classes"]) == ("copy", 2, 3)
        copy = ctx.engine.repo.find_project("copy")
        one, two = _snapshot(ctx.engine.repo, ctx.project_id), _snapshot(ctx.engine.repo, copy.id)
        assert {k: v for k, v in one.items() if k != "project"} == {
            k: v for k, v in two.items() if k != "project"
        }
        again = c.get(f"{api}/copy/export", params={"format": "archive"}).content
        taken = c.post(f"{api}/copy/import", files={"file": ("again.zip", again)})
        assert taken.status_code == 409 and "already exists" in taken.json()["detail"]

        voc = c.get(f"{base}/export", params={"format": "voc"}).content
        made = c.post(f"{api}/fromvoc/import", files={"file": ("demo-voc.zip", voc)})
        assert made.status_code == 201, made.text
        pv = ctx.engine.repo.find_project("fromvoc")
        assert [(k.name, k.colour, k.index) for k in ctx.engine.repo.list_classes(pv.id)] == [
            (k.name, k.colour, k.index) for k in ctx.engine.repo.list_classes(ctx.project_id)
        ]
        by_name = {i.name.rsplit(".", 1)[0]: i for i in ctx.engine.repo.list_images(pv.id)}
        for im in ctx.engine.repo.list_images(ctx.project_id):
            got = by_name[im.name.rsplit(".", 1)[0]]
            assert got.split == im.split
            assert np.array_equal(ctx.engine.repo.label_map(got.id), ctx.engine.repo.label_map(im.id))
            gt, gt_back = ctx.engine.repo.ground_truth(im.id), ctx.engine.repo.ground_truth(got.id)
            assert (gt is None and gt_back is None) or np.array_equal(gt, gt_back)

        loose = io.BytesIO()
        with zipfile.ZipFile(loose, "w") as zf:
            zf.writestr("a.png", png_bytes(two_colour()))
        refused = c.post(f"{api}/loose/import", files={"file": ("loose.zip", loose.getvalue())})
        assert refused.status_code == 422 and "neither a probeseg project archive" in refused.json()["detail"]
        assert ctx.engine.repo.find_project("loose") is None


def _read_events(client: httpx.Client, url: str, want: Callable[[list[dict]], bool]) -> list[dict]:
    """Server-sent events from `url` until `want(events so far)` holds or the stream ends."""
    events: list[dict] = []
    kind = None
    with client.stream("GET", url) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append({"kind": kind, **json.loads(line[6:])})
                if want(events):
                    break
    return events


def test_one_event_stream_tells_every_client_what_another_changed(app):
    """Two HTTP clients: B follows the project's stream; A's class, upload and stroke reach B as events, with
    A's client id on the label change (a tab ignores its own), and a first head once the fit is done."""
    import threading

    url, ctx = app()
    base = f"{url}/api/v1/projects/demo"
    start = ctx.engine.events.last
    got: list[dict] = []

    def follow() -> None:
        with httpx.Client(timeout=120) as b:
            got.extend(
                _read_events(
                    b,
                    f"{base}/events?after={start}&wait=25",
                    lambda ev: any(e["kind"] == "head" and not e["interim"] for e in ev),
                )
            )

    follower = threading.Thread(target=follow)
    follower.start()
    with httpx.Client(timeout=120) as a:
        red = a.post(f"{base}/classes", json={"name": "red"}).json()["id"]
        blue = a.post(f"{base}/classes", json={"name": "blue"}).json()["id"]
        [im] = upload(a, base, [("two.png", png_bytes(two_colour()))]).json()["imported"]
        ctx.engine.features(im["id"], wait=120)
        for op_id, cid, x0 in (("s1", red, 5), ("s2", blue, 65)):
            op = {
                "op_id": op_id,
                "kind": "stroke",
                "class_id": cid,
                "radius": 3,
                "points": [[x0, 40], [x0 + 40, 40]],
            }
            assert a.post(f"{base}/images/{im['id']}/ops", json=op | {"client": "tab-a"}).json()["applied"]
    follower.join(150)
    kinds = [e["kind"] for e in got]
    assert kinds.count("classes") == 2 and "images" in kinds and "features" in kinds, kinds
    labels = [e for e in got if e["kind"] == "labels"]
    assert [(e["image_id"], e["client"], e["op"]) for e in labels] == [(im["id"], "tab-a", "stroke")] * 2
    assert labels[1]["label_version"] > labels[0]["label_version"]
    assert any(e["kind"] == "head" and not e["interim"] for e in got)
    # a client that resumes (Last-Event-ID) gets what came after, and only its project's events
    with httpx.Client(timeout=120) as c:
        later = _read_events(c, f"{base}/events?after={start}&wait=0.5", lambda ev: len(ev) >= len(got))
        assert [e["kind"] for e in later][: len(kinds)] == kinds
        assert c.get(f"{url}/api/v1/projects/nope/events?wait=0").status_code == 404
