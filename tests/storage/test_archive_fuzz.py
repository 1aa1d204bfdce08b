"""Property-based: a valid project archive mutated in many ways (fields deleted, nulled, retyped, ids
pointed elsewhere, list items duplicated) is either imported as a whole project or refused with a clear
storage error naming the problem; never another exception, never a partial project."""

from __future__ import annotations

import itertools
import json
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.head_meta import HeadMeta
from storage import Repository, StorageError

from .test_exports import _labelled_project, _safetensors

_counter = itertools.count()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Repository, Path, dict]:
    root = tmp_path_factory.mktemp("fuzz")
    repo = Repository.open(root / "data", f"sqlite:///{root / 'data.db'}")
    p, _classes, _images = _labelled_project(repo)
    head = repo.save_head(p.id, _safetensors(), HeadMeta("dinov2_vits14", "w", ["a", "b"], 0), {"miou": 0.4})
    repo.record_training_run(p.id, {"lr": 0.01}, 2.0, 0.3, {"miou": 0.4}, {"cat": 3}, head_id=head.id)
    archive = repo.export_project(p.id, root / "good.zip")
    with zipfile.ZipFile(archive) as zf:
        doc = json.loads(zf.read("project.json"))
    yield repo, archive, doc
    repo.close()


def _paths(node, prefix=()):
    """Every (path to a container, key) in the JSON tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix, k
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix, i
            yield from _paths(v, (*prefix, i))


def _get(doc, path):
    for k in path:
        doc = doc[k]
    return doc


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(0, 5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(0, 3), max_size=2),
    st.sampled_from(
        ["", "2024-13-45T99:00", "scribble", "bogus-kind", "#zzzzzz", "images/none.png", "train", "x" * 300]
    ),
)
MUTATION = st.tuples(st.sampled_from(["delete", "set", "duplicate"]), st.integers(0, 10**6), VALUES)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_a_mutated_archive_is_imported_whole_or_refused_clearly(source, tmp_path_factory, mutations):
    repo, archive, original = source
    doc = json.loads(json.dumps(original))
    for action, pick, value in mutations:
        paths = list(_paths(doc))
        if not paths:
            break
        parent_path, key = paths[pick % len(paths)]
        parent = _get(doc, parent_path)
        if action == "delete":
            del parent[key]
        elif action == "set":
            parent[key] = value
        elif isinstance(parent, list):
            parent.append(json.loads(json.dumps(parent[key])))
    mutated = tmp_path_factory.mktemp("m") / "m.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(mutated, "w") as dst:
        for info in src.infolist():
            if info.filename != "project.json":
                dst.writestr(info, src.read(info))
        dst.writestr("project.json", json.dumps(doc))
    before = {p.name for p in repo.list_projects()}
    name = f"fuzz {next(_counter)}"
    try:
        info = repo.import_project(mutated, name=name)
    except StorageError as exc:
        msg = str(exc)
        assert msg and "Traceback" not in msg and "KeyError" not in msg
        assert {p.name for p in repo.list_projects()} == before  # nothing written
        return
    assert info.name == name and {p.name for p in repo.list_projects()} == before | {name}
    for im in repo.list_images(info.id):
        repo.label_map(im.id)  # the imported history replays
