"""Versioned annotations: scribble layers, points, masks, eraser, undo/redo, history, counts, ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from storage import NotFoundError, ValidationError

from .conftest import class_ids, rgb_png

N = 255


def _scr(image, rows):  # type: ignore[no-untyped-def]
    arr = np.full((image.height, image.width), N, np.uint8)
    for r, v in rows.items():
        arr[r, :] = v
    return arr


def test_save_scribbles_versions_and_restore_layer(repo, project, image) -> None:  # type: ignore[no-untyped-def]
    a1 = repo.save_scribbles(image.id, _scr(image, {0: 1}), author="alice")
    a2 = repo.save_scribbles(image.id, _scr(image, {0: 1, 1: 2}), author="alice")
    assert (a1.seq, a2.seq) == (1, 2) and a2.kind == "scribble" and a2.author == "alice"
    cid = class_ids(repo, project.id)
    assert set(a2.class_ids) == {cid["cat"], cid["dog"]}
    np.testing.assert_array_equal(repo.scribble_layer(image.id), _scr(image, {0: 1, 1: 2}))
    same = repo.save_scribbles(image.id, _scr(image, {0: 1, 1: 2}))  # unchanged layer: not stored again
    assert same.id == a2.id and len(repo.history(image.id)) == 2
    assert repo.get_image(image.id).labelled_pixels == 16


def test_scribble_validation(repo, project, image) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="image is 6x8"):
        repo.save_scribbles(image.id, np.full((8, 6), N, np.uint8))
    with pytest.raises(ValidationError, match="class index 3"):
        repo.save_scribbles(image.id, _scr(image, {0: 3}))
    with pytest.raises(ValidationError, match="integer"):
        repo.save_scribbles(image.id, np.zeros((6, 8), np.float32))
    with pytest.raises(NotFoundError):
        repo.save_scribbles(999_999, _scr(image, {}))
    assert repo.history(image.id) == []


def test_points_add_remove_by_id_and_nearest(repo, project, image) -> None:  # type: ignore[no-untyped-def]
    cid = class_ids(repo, project.id)
    p1 = repo.add_point(image.id, cid["cat"], 1, 1, radius=1)
    p2 = repo.add_point(image.id, cid["dog"], 2, 1, radius=1)
    p3 = repo.add_point(image.id, cid["dog"], 6, 4, radius=0)
    assert [p.annotation_id for p in repo.points(image.id)] == [p1.id, p2.id, p3.id]
    assert repo.points(image.id)[1].class_index == 2
    assert repo.remove_point(image.id, x=4, y=4) is None  # nothing within a radius there
    removed = repo.remove_point(image.id, x=1.9, y=1.0)  # nearest to (1.9, 1): p2
    assert removed is not None and removed.id == p2.id and not removed.active
    assert [p.annotation_id for p in repo.points(image.id)] == [p1.id, p3.id]
    repo.remove_point(image.id, annotation_id=p3.id)
    with pytest.raises(NotFoundError):
        repo.remove_point(image.id, annotation_id=p3.id)
    lm = repo.label_map(image.id)
    assert (lm == 1).sum() == 5 and (lm == 2).sum() == 0
    repo.undo(image.id)  # brings p3 back
    assert [p.annotation_id for p in repo.points(image.id)] == [p1.id, p3.id]
    with pytest.raises(ValidationError, match="outside"):
        repo.add_point(image.id, cid["cat"], 8.6, 0, 1)
    with pytest.raises(NotFoundError, match="not a class"):
        repo.add_point(image.id, 999_999, 1, 1, 1)
    with pytest.raises(ValidationError, match="finite"):
        repo.add_point(image.id, cid["cat"], float("nan"), 1, 1)


def test_masks_and_eraser(repo, project, image) -> None:  # type: ignore[no-untyped-def]
    m = np.full((image.height, image.width), 2, np.uint8)
    m[:, 4:] = N
    a = repo.add_mask(image.id, m, author="importer", source="noisy.png")
    assert a.kind == "mask" and a.source == "noisy.png"
    region = np.zeros((image.height, image.width), bool)
    region[:, :2] = True
    e = repo.erase(image.id, region)
    assert e.kind == "erase"
    lm = repo.label_map(image.id)
    assert (lm[:, :2] == N).all() and (lm[:, 2:4] == 2).all() and (lm[:, 4:] == N).all()
    assert repo.clear_labels(image.id) is not None
    assert (repo.label_map(image.id) == N).all()
    assert repo.clear_labels(image.id) is None  # nothing left to clear
    repo.undo(image.id)
    np.testing.assert_array_equal(repo.label_map(image.id), lm)
    with pytest.raises(ValidationError):
        repo.erase(image.id, np.zeros((2, 2), bool))


def test_undo_redo_history_and_restart(repo, reopen, project, image) -> None:  # type: ignore[no-untyped-def]
    cid = class_ids(repo, project.id)
    assert repo.undo(image.id) is None and repo.redo(image.id) is None
    s1 = repo.save_scribbles(image.id, _scr(image, {0: 1}))
    pt = repo.add_point(image.id, cid["dog"], 4, 4, 0)
    s2 = repo.save_scribbles(image.id, _scr(image, {0: 1, 2: 2}))
    state = repo.edit_state(image.id)
    assert (state.version, state.can_undo, state.can_redo) == (3, True, False)

    assert repo.undo(image.id).id == s2.id
    np.testing.assert_array_equal(repo.scribble_layer(image.id), _scr(image, {0: 1}))
    assert repo.undo(image.id).id == pt.id
    assert repo.label_map(image.id)[4, 4] == N
    assert repo.redo(image.id).id == pt.id
    assert repo.label_map(image.id)[4, 4] == 2

    # undo/redo survive a restart
    other = reopen()
    assert other.edit_state(image.id).can_redo
    assert other.redo(image.id).id == s2.id
    np.testing.assert_array_equal(repo.scribble_layer(image.id), _scr(image, {0: 1, 2: 2}))
    assert other.undo(image.id).id == s2.id

    # a new edit clears the redo stack
    s3 = repo.save_scribbles(image.id, _scr(image, {5: 1}))
    assert repo.redo(image.id) is None and not repo.edit_state(image.id).can_redo

    hist = repo.history(image.id)
    assert [h.kind for h in hist] == [
        "scribble",
        "point",
        "scribble",
        "undo",
        "undo",
        "redo",
        "redo",
        "undo",
        "scribble",
    ]
    assert [h.seq for h in hist] == list(range(1, 10))
    assert {h.id: h.active for h in hist if h.kind not in ("undo", "redo")} == {
        s1.id: True,
        pt.id: True,
        s2.id: False,
        s3.id: True,
    }
    assert hist[3].target_id == s2.id and hist[5].target_id == pt.id
    assert all(h.created_at.tzinfo is not None for h in hist)
    lm = repo.label_map(image.id)
    assert (lm[5] == 1).all() and lm[4, 4] == 2 and (lm[0] == N).all()


def test_counts_and_label_maps_for_gallery(repo, project) -> None:  # type: ignore[no-untyped-def]
    cid = class_ids(repo, project.id)
    a = repo.add_image(project.id, rgb_png(4, 5, 1), "a.png")
    b = repo.add_image(project.id, rgb_png(4, 5, 2), "b.png")
    c = repo.add_image(project.id, rgb_png(4, 5, 3), "c.png")
    repo.add_point(a.id, cid["cat"], 2, 2, 1)  # 5 px
    repo.add_point(b.id, cid["dog"], 0, 0, 0)  # 1 px
    repo.add_point(b.id, cid["cat"], 4, 3, 0)  # 1 px
    assert repo.labelled_pixel_counts(project_id=project.id) == {1: 6, 2: 1}
    assert repo.labelled_pixel_counts(image_id=c.id) == {}
    maps = repo.label_maps(project.id)
    assert sorted(maps) == [a.id, b.id]
    assert sorted(repo.label_maps(project.id, labelled_only=False)) == [a.id, b.id, c.id]
    repo.set_split(a.id, "train")
    assert sorted(repo.label_maps(project.id, split="train")) == [a.id]
    assert [i.labelled_pixels for i in repo.list_images(project.id)] == [5, 2, 0]
    with pytest.raises(ValidationError):
        repo.labelled_pixel_counts()


def test_label_map_cache_sees_writes_from_another_repository(repo, reopen, project, image) -> None:  # type: ignore[no-untyped-def]
    cid = class_ids(repo, project.id)
    repo.add_point(image.id, cid["cat"], 0, 0, 0)
    assert repo.label_map(image.id)[0, 0] == 1  # now cached here
    other = reopen()
    other.add_point(image.id, cid["dog"], 0, 0, 0)
    assert repo.label_map(image.id)[0, 0] == 2


def test_ground_truth(repo, project, image) -> None:  # type: ignore[no-untyped-def]
    assert repo.ground_truth(image.id) is None and not repo.get_image(image.id).has_ground_truth
    gt = np.zeros((image.height, image.width), np.uint8)
    gt[:2] = 2
    gt[5] = N
    repo.set_ground_truth(image.id, gt, source="gt.png")
    np.testing.assert_array_equal(repo.ground_truth(image.id), gt)
    assert repo.get_image(image.id).has_ground_truth
    assert repo.labelled_pixel_counts(image_id=image.id) == {}  # ground truth is not a label
    gt[0] = 1
    repo.set_ground_truth(image.id, gt)
    np.testing.assert_array_equal(repo.ground_truth(image.id), gt)
    repo.set_ground_truth(image.id, None)
    assert repo.ground_truth(image.id) is None
    with pytest.raises(ValidationError):
        repo.set_ground_truth(image.id, np.full((image.height, image.width), 9, np.uint8))


def test_author_is_cleaned(repo, project, image) -> None:  # type: ignore[no-untyped-def]
    a = repo.add_point(image.id, class_ids(repo, project.id)["cat"], 1, 1, 1, author="bob\x00\n" + "x" * 300)
    assert a.author.startswith("bob") and len(a.author) <= 100 and "\x00" not in a.author
