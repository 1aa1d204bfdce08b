"""Label classes: background by default, unique names, rename / recolour / reorder keep labels, delete modes."""

from __future__ import annotations

import numpy as np
import pytest

from storage import ConflictError, NotFoundError, ValidationError

N = 255


def test_new_project_has_background_at_index_zero(repo) -> None:  # type: ignore[no-untyped-def]
    p = repo.create_project("p")
    [bg] = repo.list_classes(p.id)
    assert (bg.name, bg.index, bg.colour) == ("background", 0, "#000000")
    assert repo.list_classes(repo.create_project("q", with_background=False).id) == []


def test_add_class_auto_colours_are_distinct_and_explicit_colours_normalised(repo) -> None:  # type: ignore[no-untyped-def]
    p = repo.create_project("p")
    added = [repo.add_class(p.id, f"c{i}") for i in range(30)]
    colours = [c.colour for c in repo.list_classes(p.id)]
    assert len(set(colours)) == len(colours) == 31
    assert added[0].colour == "#800000" and added[0].index == 1  # VOC colour 1
    assert repo.add_class(p.id, "x", "#ABC").colour == "#aabbcc"
    assert repo.add_class(p.id, "y", (1, 2, 255)).colour == "#0102ff"
    with pytest.raises(ValidationError, match="#rrggbb"):
        repo.add_class(p.id, "z", "red")


def test_class_names_are_unique_per_project(repo) -> None:  # type: ignore[no-untyped-def]
    p, q = repo.create_project("p"), repo.create_project("q")
    cat = repo.add_class(p.id, "cat")
    with pytest.raises(ConflictError, match="already has a class named 'Cat'"):
        repo.add_class(p.id, "Cat")
    repo.add_class(q.id, "cat")  # other projects are independent
    dog = repo.add_class(p.id, "dog")
    with pytest.raises(ConflictError):
        repo.rename_class(dog.id, "cat")
    with pytest.raises(ValidationError, match="empty"):
        repo.add_class(p.id, "  ")
    assert repo.rename_class(cat.id, "Cat").name == "Cat"  # own name, other case: fine


def test_rename_recolour_reorder_keep_labels(repo, project, image) -> None:  # type: ignore[no-untyped-def]
    cls = {c.name: c for c in repo.list_classes(project.id)}
    scr = np.full((image.height, image.width), N, np.uint8)
    scr[0, :] = 1  # cat
    scr[1, :] = 2  # dog
    repo.save_scribbles(image.id, scr)
    repo.add_point(image.id, cls["dog"].id, 0, 5, 0)
    before = repo.label_map(image.id)

    repo.rename_class(cls["cat"].id, "kitten")
    repo.recolour_class(cls["cat"].id, "#123456")
    np.testing.assert_array_equal(repo.label_map(image.id), before)
    assert repo.get_class(cls["cat"].id).colour == "#123456"

    order = repo.reorder_classes(project.id, [cls["dog"].id, cls["background"].id, cls["cat"].id])
    assert [(c.name, c.index) for c in order] == [("dog", 0), ("background", 1), ("kitten", 2)]
    remap = np.array([1, 2, 0] + [0] * 252 + [N], np.uint8)  # old index -> new index
    after = repo.label_map(image.id)
    np.testing.assert_array_equal(after, remap[before])
    np.testing.assert_array_equal(repo.scribble_layer(image.id), remap[scr])
    assert repo.points(image.id)[0].class_index == 0

    moved = repo.move_class(cls["cat"].id, 0)
    assert [c.name for c in moved] == ["kitten", "dog", "background"]
    assert [c.index for c in moved] == [0, 1, 2]
    with pytest.raises(ValidationError, match="permutation"):
        repo.reorder_classes(project.id, [cls["dog"].id])


def test_delete_unused_class_needs_no_mode_and_indices_stay_dense(repo, project) -> None:  # type: ignore[no-untyped-def]
    cls = {c.name: c for c in repo.list_classes(project.id)}
    assert not repo.class_usage(cls["cat"].id).in_use
    repo.delete_class(cls["cat"].id)
    assert [(c.name, c.index) for c in repo.list_classes(project.id)] == [("background", 0), ("dog", 1)]
    with pytest.raises(NotFoundError):
        repo.get_class(cls["cat"].id)


def _labelled(repo, project, image):  # type: ignore[no-untyped-def]
    cls = {c.name: c for c in repo.list_classes(project.id)}
    scr = np.full((image.height, image.width), N, np.uint8)
    scr[0, :] = 1  # cat row
    scr[1, :] = 2  # dog row
    repo.save_scribbles(image.id, scr)
    repo.add_point(image.id, cls["cat"].id, 7, 5, 0)
    gt = np.full((image.height, image.width), 1, np.uint8)
    gt[5, :] = 2
    repo.set_ground_truth(image.id, gt)
    return cls


def test_delete_class_in_use_requires_a_mode(repo, project, image) -> None:  # type: ignore[no-untyped-def]
    cls = _labelled(repo, project, image)
    usage = repo.class_usage(cls["cat"].id)
    assert (
        usage.in_use
        and usage.annotations == 2
        and usage.labelled_pixels == 9
        and usage.ground_truth_images == 1
    )
    with pytest.raises(ConflictError, match="mode='reassign'"):
        repo.delete_class(cls["cat"].id)
    with pytest.raises(ValidationError, match="reassign_to"):
        repo.delete_class(cls["cat"].id, mode="reassign")
    with pytest.raises(ValidationError, match="another class"):
        repo.delete_class(cls["cat"].id, mode="reassign", reassign_to=cls["cat"].id)
    assert len(repo.list_classes(project.id)) == 3  # nothing changed


def test_delete_class_reassign_moves_labels_history_and_ground_truth(repo, project, image) -> None:  # type: ignore[no-untyped-def]
    cls = _labelled(repo, project, image)
    repo.delete_class(cls["cat"].id, mode="reassign", reassign_to=cls["dog"].id)
    assert [(c.name, c.index) for c in repo.list_classes(project.id)] == [("background", 0), ("dog", 1)]
    lm = repo.label_map(image.id)
    assert (lm[0] == 1).all() and (lm[1] == 1).all() and lm[5, 7] == 1
    assert repo.labelled_pixel_counts(image_id=image.id) == {1: 17}
    gt = repo.ground_truth(image.id)
    assert gt is not None and (gt == 1).all()
    repo.undo(image.id)  # undoing the point: the history also points at dog now
    assert repo.label_map(image.id)[5, 7] == N


def test_delete_class_delete_labels_makes_them_unlabelled(repo, project, image) -> None:  # type: ignore[no-untyped-def]
    cls = _labelled(repo, project, image)
    repo.delete_class(cls["cat"].id, mode="delete_labels")
    lm = repo.label_map(image.id)
    assert (lm[0] == N).all() and (lm[1] == 1).all() and lm[5, 7] == N
    assert repo.labelled_pixel_counts(project_id=project.id) == {1: 8}
    gt = repo.ground_truth(image.id)
    assert gt is not None and (gt[:5] == N).all() and (gt[5] == 1).all()
    assert [p.class_id for p in repo.points(image.id)] == [None]
    assert len(repo.history(image.id)) == 2  # history kept, just without the class


def test_class_limit(repo, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import storage.classes

    assert storage.classes.MAX_CLASSES == 255  # indices 0..254, 255 = unlabelled
    monkeypatch.setattr(storage.classes, "MAX_CLASSES", 4)  # same code path, fewer commits
    p = repo.create_project("p", with_background=False)
    for i in range(4):
        repo.add_class(p.id, f"c{i}")
    with pytest.raises(ValidationError, match="at most 4"):
        repo.add_class(p.id, "one too many")
