"""The canvas's ES modules: their unit tests (tests/webapp/js, run with node's built-in test runner) and the
route that serves them as they are."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from webapp.canvas import MODULE_DIR, MODULE_PATH, loader_js, module_router, modules

JS_TESTS = Path(__file__).parent / "js"
NODE = shutil.which("node") or shutil.which("nodejs")


def test_every_module_but_the_dom_glue_has_unit_tests():
    names = {p.stem for p in MODULE_DIR.glob("*.js")}
    tested = {p.name.removesuffix(".test.mjs") for p in JS_TESTS.glob("*.test.mjs")}
    assert names - tested == {"main"}, "a canvas module without tests/webapp/js/<name>.test.mjs"
    assert tested <= names


@pytest.mark.skipif(NODE is None, reason="needs Node.js (Debian: apt install nodejs); .ci/run installs it")
def test_module_unit_tests_pass():
    files = sorted(str(p) for p in JS_TESTS.glob("*.test.mjs"))
    res = subprocess.run([NODE, "--test", *files], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    assert "# fail 0" in res.stdout and "# pass 0" not in res.stdout


@pytest.mark.skipif(NODE is None, reason="needs Node.js (Debian: apt install nodejs); .ci/run installs it")
def test_the_entry_module_and_its_imports_load():
    # main.js touches the DOM only when mounted: importing it checks every import resolves to an export
    code = f"import('{(MODULE_DIR / 'main.js').as_uri()}').then((m) => console.log(typeof m.mount))"
    res = subprocess.run([NODE, "-e", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "function", res.stderr[-2000:]


def test_modules_are_served_by_name_under_their_version():
    app = FastAPI()
    app.include_router(module_router())
    client = TestClient(app)
    version, files = modules()
    res = client.get(f"{MODULE_PATH}/{version}/main.js")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/javascript")
    assert "immutable" in res.headers["cache-control"]
    assert res.content == (MODULE_DIR / "main.js").read_bytes()
    # an old page's version: the current files, but not cached for good
    assert "no-cache" in client.get(f"{MODULE_PATH}/0ld/state.js").headers["cache-control"]
    for bad in ("package.json", "..%2Fcanvas.py", "nope.js", "%2E%2E%2F%2E%2E%2Fapi.py"):
        assert client.get(f"{MODULE_PATH}/{version}/{bad}").status_code == 404, bad
    assert "package.json" not in files
    # the loader imports this version's entry and names the events the page listens to
    js = loader_js()
    assert f"{MODULE_PATH}/{version}/main.js" in js
    assert "trigger('navigated'" in js and "trigger('refresh')" in js
