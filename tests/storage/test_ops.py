"""The operation log: exactly-once, arrival order, rasterisation of every kind, undo/redo across kinds."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from storage import NotFoundError, Repository, ValidationError
from storage.rasterize import stroke_mask

from .conftest import class_ids, rgb_png

N = 255


def op(op_id: str, kind: str, **fields) -> dict:  # type: ignore[no-untyped-def]
    return {"op_id": op_id, "kind": kind, **fields}


def stroke(op_id: str, class_id: int, pts, radius: float = 1.0, kind: str = "stroke") -> dict:  # type: ignore[no-untyped-def]
    return op(op_id, kind, class_id=class_id, radius=radius, points=[list(p) for p in pts])


def mask_of(shape, pts, radius) -> np.ndarray:  # type: ignore[no-untyped-def]
    rows, cols, m = stroke_mask(shape, pts, radius)
    full = np.zeros(shape, bool)
    full[rows, cols] = m
    return full


def test_every_kind_is_rasterised_by_the_server(repo: Repository, project, image) -> None:  # type: ignore[no-untyped-def]
    ids = class_ids(repo, project.id)
    cat, dog = ids["cat"], ids["dog"]
    r1 = repo.apply_op(image.id, stroke("a", cat, [(0, 1), (7, 1)], 1.0))
    assert (r1.seq, r1.duplicate, r1.applied) == (1, False, True)
    expected = np.full((6, 8), N, np.uint8)
    expected[mask_of((6, 8), [(0, 1), (7, 1)], 1.0)] = 1
    np.testing.assert_array_equal(repo.label_map(image.id), expected)

    repo.apply_op(image.id, stroke("b", dog, [(3, 0), (3, 5)], 0.5))
    expected[mask_of((6, 8), [(3, 0), (3, 5)], 0.5)] = 2
    np.testing.assert_array_equal(repo.label_map(image.id), expected)

    repo.apply_op(image.id, op("c", "point", class_id=cat, radius=0, points=[[6, 4]]))
    expected[4, 6] = 1
    repo.apply_op(image.id, op("d", "erase", radius=0.4, points=[[0, 1], [1, 1]]))
    expected[mask_of((6, 8), [(0, 1), (1, 1)], 0.4)] = N
    np.testing.assert_array_equal(repo.label_map(image.id), expected)
    assert len(repo.points(image.id)) == 1

    repo.apply_op(image.id, op("e", "unpoint", points=[[6.2, 4.1]]))
    expected[4, 6] = N
    np.testing.assert_array_equal(repo.label_map(image.id), expected)
    assert repo.points(image.id) == []

    res = repo.apply_op(image.id, op("f", "clear"))
    assert res.applied and (repo.label_map(image.id) == N).all()
    # undo brings back the whole state before the clear, redo clears it again
    repo.apply_op(image.id, op("g", "undo"))
    np.testing.assert_array_equal(repo.label_map(image.id), expected)
    repo.apply_op(image.id, op("h", "redo"))
    assert (repo.label_map(image.id) == N).all()
    counts = repo.labelled_pixel_counts(image_id=image.id)
    assert counts == {}


def test_undo_redo_walk_back_over_every_kind(repo: Repository, project, image) -> None:  # type: ignore[no-untyped-def]
    cat = class_ids(repo, project.id)["cat"]
    edits = [
        stroke("s1", cat, [(0, 0), (7, 5)], 1.0),
        op("p1", "point", class_id=cat, radius=1, points=[[2, 4]]),
        stroke("e1", cat, [(0, 0), (3, 3)], 1.5, kind="erase"),
        op("u1", "unpoint", points=[[2, 4]]),
        stroke("s2", cat, [(7, 0)], 2.0),
    ]
    states = [repo.label_map(image.id)]

    def check_delta(res, before: np.ndarray, after: np.ndarray) -> None:
        # what a client draws by itself comes without a delta; the rest patches the map it had into the
        # new one, in the smallest box holding every change
        if e["kind"] in ("stroke", "point"):
            assert res.delta is None
            return
        x0, y0, x1, y1 = res.delta.box
        rows, cols = np.flatnonzero((before != after).any(1)), np.flatnonzero((before != after).any(0))
        assert (x0, y0, x1, y1) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        patched = before.copy()
        patched[y0:y1, x0:x1] = res.delta.labels
        np.testing.assert_array_equal(patched, after)

    for e in edits:
        res = repo.apply_op(image.id, e)
        states.append(repo.label_map(image.id))
        check_delta(res, states[-2], states[-1])
    assert len({s.tobytes() for s in states}) == len(states)  # every edit changed something
    e = op("undo", "undo")
    for i in range(len(edits), 0, -1):
        res = repo.apply_op(image.id, op(f"undo{i}", "undo"))
        np.testing.assert_array_equal(repo.label_map(image.id), states[i - 1])
        check_delta(res, states[i], states[i - 1])
    empty = repo.apply_op(image.id, op("undo-empty", "undo"))
    assert not empty.applied and empty.delta is None
    for i in range(1, len(edits) + 1):
        res = repo.apply_op(image.id, op(f"redo{i}", "redo"))
        np.testing.assert_array_equal(repo.label_map(image.id), states[i])
        check_delta(res, states[i - 1], states[i])
    assert not repo.apply_op(image.id, op("redo-empty", "redo")).applied


def test_a_retried_op_id_is_acknowledged_and_not_applied_twice(repo: Repository, project, image) -> None:  # type: ignore[no-untyped-def]
    cat = class_ids(repo, project.id)["cat"]
    first = repo.apply_op(image.id, stroke("x1", cat, [(1, 1)], 1.0))
    repo.apply_op(image.id, op("x2", "undo"))
    again = repo.apply_op(image.id, stroke("x1", cat, [(1, 1)], 1.0))
    assert again.duplicate and again.seq == first.seq
    assert (repo.label_map(image.id) == N).all()  # the retry did not bring the undone stroke back
    # an undo that did nothing is remembered too: its retry after a new edit must not undo that edit
    repo.apply_op(image.id, op("x3", "undo"))
    repo.apply_op(image.id, op("x3b", "undo"))  # nothing left: a noop
    repo.apply_op(image.id, stroke("x4", cat, [(5, 5)], 0.0))
    assert repo.apply_op(image.id, op("x3b", "undo")).duplicate
    assert repo.label_map(image.id)[5, 5] == 1
    assert [h.kind for h in repo.history(image.id)].count("noop") == 0  # noop rows are not history


def test_operations_are_applied_in_arrival_order(repo: Repository, project, image) -> None:  # type: ignore[no-untyped-def]
    ids = class_ids(repo, project.id)
    seqs = [
        repo.apply_op(image.id, stroke(f"o{i}", ids["cat"] if i % 2 else ids["dog"], [(2, 2)], 1.0)).seq
        for i in range(6)
    ]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    assert repo.label_map(image.id)[2, 2] == 1  # the last one (odd: cat) wins


def test_bad_operations_are_refused_with_a_message_and_store_nothing(
    repo: Repository, project, image
) -> None:  # type: ignore[no-untyped-def]
    cat = class_ids(repo, project.id)["cat"]
    other = repo.create_project("other")
    foreign = repo.list_classes(other.id)[0].id
    bad = [
        ("not a dict", "JSON object"),
        (op("", "stroke"), "op_id"),
        (op("a b", "stroke"), "op_id"),
        (op("k", "paint"), "unknown kind"),
        (op("k", "stroke", radius=1, points=[[1, 1]]), "class_id"),
        (op("k", "stroke", class_id=True, radius=1, points=[[1, 1]]), "integer"),
        (op("k", "stroke", class_id=cat, points=[[1, 1]]), "radius"),
        (op("k", "stroke", class_id=cat, radius=-1, points=[[1, 1]]), "radius"),
        (op("k", "stroke", class_id=cat, radius=1, points=[]), "points"),
        (op("k", "stroke", class_id=cat, radius=1, points=[[1]]), "[x, y]"),
        (op("k", "stroke", class_id=cat, radius=1, points=[[1, "nan"]]), "finite"),
        (op("k", "stroke", class_id=cat, radius=1, points=[[1, 500]]), "outside"),
        (op("k", "point", class_id=cat, radius=1, points=[[1, 1], [2, 2]]), "exactly one"),
        (op("k", "undo", client="a tab"), "client"),
        (op("k", "undo", client=7), "client"),
    ]
    for body, words in bad:
        with pytest.raises(ValidationError, match=words):
            repo.apply_op(image.id, body)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="class"):
        repo.apply_op(image.id, stroke("k", foreign, [(1, 1)]))
    with pytest.raises(NotFoundError, match="image"):
        repo.apply_op(image.id + 99, stroke("k", cat, [(1, 1)]))
    assert repo.history(image.id) == []
    assert repo.apply_op(image.id, stroke("k", cat, [(1, 1)])).seq == 1  # the refused op_id is still free


def test_two_writers_on_one_image_keep_every_stroke(repo: Repository, project) -> None:  # type: ignore[no-untyped-def]
    cat = class_ids(repo, project.id)["cat"]
    im = repo.add_image(project.id, rgb_png(40, 40), "shared.png")
    acks: list = []
    errors: list = []

    def writer(row: int) -> None:
        try:
            for i in range(20):
                acks.append(repo.apply_op(im.id, stroke(f"w{row}-{i}", cat, [(i * 2, row)], 0.0)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(r,)) for r in (5, 30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    labels = repo.label_map(im.id)
    for row in (5, 30):
        assert all(labels[row, i * 2] == 1 for i in range(20))
    assert sorted(a.seq for a in acks) == list(range(1, 41))


def test_undo_and_redo_are_per_client_and_never_take_back_another_s_edit(repo: Repository, project) -> None:  # type: ignore[no-untyped-def]
    ids = class_ids(repo, project.id)
    cat, dog = ids["cat"], ids["dog"]
    im = repo.add_image(project.id, rgb_png(10, 20), "two-tabs.png")  # 10 rows, 20 columns
    repo.apply_op(im.id, stroke("a1", cat, [(0, 1), (19, 1)], 0.0) | {"client": "tab-a"})
    repo.apply_op(im.id, stroke("b1", dog, [(0, 5), (19, 5)], 0.0) | {"client": "tab-b"})
    assert repo.edit_state(im.id, client="tab-a").can_undo and not repo.edit_state(im.id).can_undo

    # A's undo takes back A's stroke although B's is newer; B's stays
    assert repo.apply_op(im.id, op("a2", "undo", client="tab-a")).applied
    labels = repo.label_map(im.id)
    assert (labels[1] == N).all() and (labels[5] == 2).all()
    assert repo.apply_op(im.id, op("a3", "undo", client="tab-a")).applied is False  # nothing of A's left
    assert (repo.label_map(im.id)[5] == 2).all()

    # B's new edit does not clear A's redo; A's redo brings the stroke back on top of B's
    repo.apply_op(im.id, stroke("b2", dog, [(3, 0), (3, 9)], 0.0) | {"client": "tab-b"})
    assert repo.edit_state(im.id, client="tab-a").can_redo
    assert repo.apply_op(im.id, op("a4", "redo", client="tab-a")).applied
    labels = repo.label_map(im.id)
    assert (labels[1] == 1).all() and labels[1, 3] == 1 and labels[5, 3] == 2

    # B's undo takes back B's newest (the vertical stroke), then B's first; A's stroke stays throughout
    repo.apply_op(im.id, op("b3", "undo", client="tab-b"))
    assert (repo.label_map(im.id)[:, 3] == [N, 1, N, N, N, 2, N, N, N, N]).all()
    repo.apply_op(im.id, op("b4", "undo", client="tab-b"))
    assert (repo.label_map(im.id)[1] == 1).all() and (repo.label_map(im.id)[5] == N).all()

    # a script without a client id has its own history too (the repository's undo, e.g. the CLI)
    assert repo.undo(im.id) is None
    assert repo.undo(im.id, client="tab-a") is not None and (repo.label_map(im.id) == N).all()


def test_an_erased_point_is_no_longer_listed(repo: Repository, project, image) -> None:  # type: ignore[no-untyped-def]
    cat = class_ids(repo, project.id)["cat"]
    repo.apply_op(image.id, op("p", "point", class_id=cat, radius=1, points=[[3, 3]]))
    repo.apply_op(image.id, op("q", "point", class_id=cat, radius=1, points=[[6, 1]]))
    repo.apply_op(image.id, stroke("e", cat, [(2, 3), (4, 3)], 0.6, kind="erase"))
    assert [(p.x, p.y) for p in repo.points(image.id)] == [(6, 1)]
    repo.apply_op(image.id, op("u", "undo"))
    assert len(repo.points(image.id)) == 2
    repo.apply_op(image.id, op("c", "clear"))
    assert repo.points(image.id) == [] and (repo.label_map(image.id) == N).all()
