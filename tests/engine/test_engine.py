"""ProjectEngine against a real repository and the random-weight ViT-S/14 at long side 112."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import FeatureConfig
from core.labels import IGNORE
from core.train import TrainingError
from tests.engine.conftest import two_strokes
from tests.images import png_bytes, two_colour


def add_image(repo, project, seed=0, name="two.png"):
    return repo.add_image(project.id, png_bytes(two_colour(seed=seed)), name)


def test_features_are_computed_in_the_background_with_progress(repo, project, engine):
    ids = [add_image(repo, project, seed=s, name=f"{s}.png").id for s in range(3)]
    assert engine.ensure_features(project_id=project.id) == 3
    assert engine.worker.wait_idle(60)
    prog = engine.feature_progress()
    assert (prog.done, prog.total, prog.busy) == (3, 3, False)
    assert all(engine.has_features(i) for i in ids)
    assert engine.ensure_features(ids) == 0  # cached: nothing to do
    feats = engine.features(ids[0])
    assert feats.original_size == (84, 112) and feats.grid == (6, 8)


def test_features_wait_jumps_the_queue_and_bad_images_fail_cleanly(repo, project, engine):
    image = add_image(repo, project)
    assert engine.features(image.id, wait=0.0) is None or engine.has_features(image.id)  # never blocks
    assert engine.features(image.id, wait=60) is not None
    engine.repo.delete_image(image.id)
    engine.forget_image(image.id)
    with pytest.raises(LookupError):
        engine.features(image.id, wait=5)


def test_training_refuses_missing_labels_and_single_class(repo, project, engine):
    image = add_image(repo, project)
    with pytest.raises(TrainingError, match="no labelled pixels"):
        engine.train_now(project.id, timeout=60)
    one = np.full((84, 112), IGNORE, np.uint8)
    one[40:44, 5:50] = 1
    repo.save_scribbles(image.id, one)
    with pytest.raises(TrainingError, match="only the class 'red'"):
        engine.train_now(project.id, timeout=60)
    assert engine.head(project.id) is None
    assert "only the class 'red'" in engine.training_status(project.id).describe()


def test_train_predict_and_bookkeeping(repo, project, engine):
    image = add_image(repo, project)
    other = add_image(repo, project, seed=1, name="other.png")
    repo.save_scribbles(image.id, two_strokes())
    outcome = engine.train_now(project.id, timeout=120)
    assert outcome.head_id is not None and outcome.images == 1
    assert set(outcome.pixel_counts) == {"red", "blue"}
    pred = engine.prediction(project.id, other.id, wait=60)
    assert (pred.labels[:, :50] == 1).mean() > 0.95 and (pred.labels[:, 62:] == 2).mean() > 0.95
    small = engine.prediction(project.id, other.id, size=(42, 56))
    assert small.labels.shape == (42, 56)
    info = repo.latest_head(project.id)
    assert info.id == outcome.head_id and info.meta.class_ids == [c.id for c in repo.list_classes(project.id)]
    engine.wait_settled(project.id, timeout=120)  # the run record and uncertainty scores follow the head
    assert repo.get_image(other.id).uncertainty is not None
    run = repo.list_training_runs(project.id)[-1]
    assert run.head_id == outcome.head_id and run.labelled_pixels == sum(outcome.pixel_counts.values())
    assert repo.get_image(other.id).has_prediction
    assert engine.most_uncertain(project.id) in (image.id, other.id)


def test_auto_retrain_is_debounced_and_the_latest_edit_wins(repo, project, engine):
    image = add_image(repo, project)
    engine.features(image.id, wait=60)
    raster = two_strokes()
    gens = []
    for i in range(6):  # a burst of strokes
        raster[10 + i, 5:40] = 1
        repo.save_scribbles(image.id, raster)
        gens.append(engine.request_train(project.id))
    outcome = engine.trainer.wait(project.id, gens[-1], timeout=120)
    assert outcome.generation == gens[-1]
    assert len(repo.list_heads(project.id)) <= 2  # not one per stroke
    assert outcome.pixel_counts["red"] == int((raster == 1).sum())
    assert engine.training_status(project.id).state == "idle"


def test_class_reorder_keeps_predictions_on_the_right_class(repo, project, engine):
    image = add_image(repo, project)
    repo.save_scribbles(image.id, two_strokes())
    engine.train_now(project.id, timeout=120)
    red = next(c for c in repo.list_classes(project.id) if c.name == "red")
    repo.move_class(red.id, 2)  # now: background, blue, red
    pred = engine.prediction(project.id, image.id)
    assert (pred.labels[:, :50] == 2).mean() > 0.95  # still "red", at its new index


def test_refine_turns_confident_predictions_into_labels(repo, project, engine):
    image = add_image(repo, project)
    repo.save_scribbles(image.id, two_strokes())
    engine.train_now(project.id, timeout=120)
    before = (repo.label_map(image.id) != IGNORE).sum()
    added = engine.refine(project.id, image.id, 0.5)
    labels = repo.label_map(image.id)
    assert added > 0 and (labels != IGNORE).sum() == before + added
    assert (labels[:, :50] == 1).mean() > 0.95
    only_blue = [next(c.id for c in repo.list_classes(project.id) if c.name == "blue")]
    assert repo.undo(image.id, "refine").kind == "scribble"  # the refine's author takes it back
    assert engine.refine(project.id, image.id, 0.5, classes=only_blue) > 0
    assert not (repo.label_map(image.id)[:, :50] == 2).any()
    with pytest.raises(ValueError, match="threshold"):
        engine.refine(project.id, image.id, 1.5)


def test_evaluation_against_ground_truth(repo, project, engine):
    image = add_image(repo, project)
    val = add_image(repo, project, seed=3, name="val.png")
    gt = np.full((84, 112), 2, np.uint8)
    gt[:, :56] = 1
    repo.set_ground_truth(val.id, gt)
    repo.set_split(val.id, "val")
    engine.features(val.id, wait=60)
    repo.save_scribbles(image.id, two_strokes())
    engine.train_now(project.id, timeout=120)
    result = engine.evaluate(project.id)
    assert result.split == "val" and result.images == 1
    assert result.scores.miou > 0.9
    engine.wait_settled(project.id, timeout=120)
    assert repo.list_training_runs(project.id)[-1].metrics["miou"] > 0.9


def test_views(repo, project, engine):
    a = add_image(repo, project)
    b = add_image(repo, project, seed=2, name="b.png")
    engine.features(a.id, wait=60)
    engine.features(b.id, wait=60)
    km = engine.kmeans(a.id, 3, (42, 56))
    assert km.labels.shape == (42, 56) and km.labels.max() < 3
    kmp = engine.kmeans_project(project.id, a.id, 4, (84, 112))
    assert kmp.labels.shape == (84, 112)
    assert engine.pca(a.id, (42, 56)).shape == (42, 56, 3)
    assert engine.display_rgb(a.id, 56).shape == (42, 56, 3)
    assert engine.thumbnail(a.id, 32).shape[1] == 32


def test_a_stored_head_of_older_features_is_not_used(repo, project, engine):
    from core.head import head_to_bytes
    from storage.models import Head

    image = add_image(repo, project)
    repo.save_scribbles(image.id, two_strokes())
    outcome = engine.train_now(project.id, timeout=120)
    assert engine.head(project.id).head_id == outcome.head_id
    info = repo.latest_head(project.id)
    old = repo.save_head(project.id, head_to_bytes(engine.head(project.id).head), info.meta)

    def first_release(s) -> None:  # its rows named the weights backbone_weights and had no feature version
        row = s.get(Head, old.id)
        meta = {k: v for k, v in row.meta.items() if k not in ("feature_version", "weights_id")}
        row.meta = {**meta, "backbone_weights": info.meta.weights_id}

    repo._ctx.db.write(first_release)
    assert repo.latest_head(project.id).meta.feature_version == 1
    assert repo.latest_head(project.id).meta.weights_id == info.meta.weights_id
    assert engine.head(project.id) is None  # never predicts with a head of other features


def test_a_fit_after_an_edit_reads_only_the_edited_images_labels(repo, project, engine, monkeypatch):
    """Lab scale: every other image's labelled pixels, gathered pixels and need grids are kept between fits,
    so a stroke costs the reading of one label map, for the fit and for the scoring after it."""
    images = [add_image(repo, project, seed=s, name=f"{s}.png") for s in range(4)]
    for im in images:
        repo.save_scribbles(im.id, two_strokes())
    engine.train_now(project.id, timeout=120)
    engine.wait_settled(project.id, timeout=120)
    read: list[int] = []
    original = repo.label_map
    monkeypatch.setattr(repo, "label_map", lambda image_id: read.append(image_id) or original(image_id))
    edited = images[2]
    op = {"op_id": "s", "kind": "stroke", "class_id": repo.list_classes(project.id)[1].id, "radius": 2}
    res, gen = engine.apply_op(project.id, edited.id, op | {"points": [[10, 70], [60, 70]]}, "test")
    assert res.applied and gen > 0
    outcome = engine.trainer.wait(project.id, gen, timeout=120)
    engine.wait_settled(project.id, gen, timeout=120)
    assert outcome.images == 4
    assert read and set(read) == {edited.id}  # the fit and the need scoring read the edited map only
    scores = {i.id: i.uncertainty for i in repo.list_images(project.id)}
    assert all(v is not None for v in scores.values())  # every image was scored, from kept grids
    # the same problem as a fit from scratch: the kept pieces are the labels as they are now
    fresh = engine.training_cache(project.id)
    fresh.forget(str(images[0].id))
    again = engine.train_now(project.id, timeout=120)
    assert again.trained_pixels == outcome.trained_pixels
    assert again.pixel_counts == outcome.pixel_counts


def test_feature_progress_says_how_fast_and_how_long():
    from engine.results import FeatureProgress

    busy = FeatureProgress(done=10, total=400, current="a.jpg", seconds=5.0)
    assert busy.rate == 2.0 and busy.seconds_left == 195.0
    assert busy.describe() == "Computing features 10/400 · 2.0 images/s · 3 min left (a.jpg)"
    assert FeatureProgress(done=0, total=4, seconds=1.0).describe() == "Computing features 0/4"
    assert FeatureProgress(done=4, total=4, seconds=2.0).describe() == "Features ready for 4 new images"


def test_a_restart_goes_on_with_the_images_left_without_reading_the_finished_ones(
    repo, project, random_backbone, tmp_path
):
    from engine import EngineSettings, ProjectEngine

    ids = [add_image(repo, project, seed=s, name=f"{s}.png").id for s in range(4)]
    first = ProjectEngine.create(repo, random_backbone, tmp_path / "feats", FeatureConfig(112))
    try:
        for image_id in ids[:2]:
            assert first.features(image_id, wait=60) is not None
    finally:
        first.close()  # the server stops with two images done
    again = ProjectEngine.create(
        repo, random_backbone, tmp_path / "feats", FeatureConfig(112), settings=EngineSettings()
    )
    try:
        reads = []
        original = again.store._read
        again.store._read = lambda key: reads.append(key) or original(key)
        assert again.ensure_features(project_id=project.id) == 2  # only the two left are queued
        assert reads == []  # finished images are found on disk, not read
        assert again.worker.wait_idle(120) and all(again.has_features(i) for i in ids)
    finally:
        again.close()


def test_val_labels_are_never_trained_on_and_evaluation_scores_only_held_out_images(repo, project, engine):
    """Honest numbers: the head learns from train and unassigned images; val images keep their labels (and
    ground truth) and are what evaluation scores; a class absent from the scored ground truth is left out."""
    train = add_image(repo, project, seed=0, name="train.png")
    val = add_image(repo, project, seed=1, name="val.png")
    repo.set_split(val.id, "val")
    repo.save_scribbles(val.id, two_strokes())
    with pytest.raises(TrainingError, match="val images are kept for scoring"):
        engine.train_now(project.id, timeout=60)
    repo.save_scribbles(train.id, two_strokes())
    gt = np.zeros((84, 112), np.uint8)
    gt[:, 56:] = 1  # background and red only: blue has no ground truth
    for im in (train, val):
        repo.set_ground_truth(im.id, gt)
    outcome = engine.train_now(project.id, timeout=120)
    assert outcome.images == 1  # the val image's labels did not train the head
    trained = engine.training_images(project.id)
    assert [i.id for i in trained] == [train.id]
    assert engine.features(val.id, wait=60) is not None
    result = engine.evaluate(project.id)
    assert result.images == 1 and result.split == "val"  # the train image, trained on, is not scored
    assert np.isnan(result.scores.per_class_iou[2])  # blue: no ground truth, left out of the mean
    repo.set_split(val.id, "train")  # every ground-truth image now trained on: nothing to score honestly
    engine.train_now(project.id, timeout=120)
    assert engine.evaluate(project.id) is None


def test_a_project_chooses_its_resolution_and_its_features_and_head_follow(
    repo, project, engine, random_backbone, tmp_path
):
    from core.errors import InputError
    from engine import ProjectEngine

    image = add_image(repo, project)  # 84 x 112
    other_project = repo.create_project("other")
    elsewhere = repo.add_image(other_project.id, png_bytes(two_colour(seed=3)), "elsewhere.png")
    repo.save_scribbles(image.id, two_strokes())
    before = engine.train_now(project.id, timeout=120)
    assert engine.features(image.id).tokens.shape[1:] == (6, 8)  # the server's 112-px long side
    labels = repo.label_map(image.id).copy()

    chosen = engine.set_resolution(project.id, "7px")  # a token per 7 image px: 12 x 16 tokens
    assert chosen.resolution == "7px" and engine.project_config(project.id) == chosen
    assert engine.project_config(other_project.id) == engine.feature_config  # the other keeps the server's
    assert engine.features(image.id, wait=120).tokens.shape[1:] == (12, 16)
    assert engine.features(elsewhere.id, wait=120).tokens.shape[1:] == (6, 8)
    assert np.array_equal(repo.label_map(image.id), labels)  # labels untouched
    # the old head still predicts on the new tokens meanwhile; the retrain asked for records the new scale
    assert engine.prediction(project.id, image.id).labels.shape == (84, 112)
    after = engine.train_now(project.id, timeout=120)
    assert after.head_id != before.head_id
    assert repo.latest_head(project.id).meta.resolution == "7px"
    assert (engine.prediction(project.id, image.id).labels[42, :40] == 1).mean() > 0.9

    with pytest.raises(InputError, match="auto"):
        engine.set_resolution(project.id, "fine")
    assert engine.project_config(project.id).resolution == "7px"  # a refused value changes nothing
    # stored with the project: a restarted server keeps it; None goes back to the server's
    again = ProjectEngine.create(repo, random_backbone, tmp_path / "features", FeatureConfig(112))
    try:
        assert again.project_config(project.id).resolution == "7px"
        assert again.set_resolution(project.id, None) == again.feature_config
        assert again.features(image.id, wait=120).tokens.shape[1:] == (6, 8)
    finally:
        again.close()


def test_only_a_final_head_has_an_edge_layer(repo, project, engine):
    import dataclasses

    image = add_image(repo, project)
    repo.save_scribbles(image.id, two_strokes())
    engine.train_now(project.id, timeout=120)
    final = engine.grid_scores(project.id, image.id)
    layer = engine.edge_layer(project.id, image.id, (42, 56))
    assert not final.interim and layer.channels.shape == (42, 56) and layer.counter == final.counter
    assert (layer.channels == engine.prediction(project.id, image.id, size=(42, 56)).labels).mean() > 0.999
    # an interim head of a running fit: grid scores, no layer (its fit's final head follows)
    engine.publish_interim(project.id, dataclasses.replace(engine.head(project.id), interim=True))
    interim = engine.grid_scores(project.id, image.id)
    assert interim.interim and interim.counter > final.counter
    assert engine.edge_layer(project.id, image.id, (42, 56)) is None


def test_moving_a_labelled_image_in_or_out_of_val_retrains_and_imports_queue_features(repo, project, engine):
    from tests.images import png_bytes, two_colour

    image = add_image(repo, project)
    blank = add_image(repo, project, seed=1, name="blank.png")
    repo.save_scribbles(image.id, two_strokes())
    for i in (image, blank):  # (features arriving for a project with labels ask for a fit of their own)
        engine.features(i.id, wait=120)
    engine.train_now(project.id, timeout=120)
    engine.wait_settled(project.id, timeout=120)
    before = engine.training_status(project.id).generation
    assert engine.set_split(blank.id, "val").split == "val"  # no labels: nothing to retrain
    assert engine.training_status(project.id).generation == before
    engine.set_split(image.id, "val")  # its labels may no longer train the head
    assert engine.training_status(project.id).generation == before + 1
    seen = engine.events.last
    report = engine.import_uploads(project.id, [("new.png", png_bytes(two_colour(seed=9)))])
    (new,) = report.image_ids
    assert "images" in [e.kind for e in engine.events.since(project.id, seen)]
    assert engine.features(new, wait=120) is not None  # queued by the import itself
