"""Stored heads (storage/heads.py): their records, weights, metrics and training runs."""

from __future__ import annotations

import pytest

from core.head_meta import HeadMeta
from storage import ValidationError

from .test_exports import _safetensors


def test_heads_and_training_runs(repo) -> None:  # type: ignore[no-untyped-def]
    p = repo.create_project("h")
    assert repo.latest_head(p.id) is None
    h1 = repo.save_head(p.id, _safetensors(), HeadMeta("b", "w", ["x", "y"], 0))
    repo.add_class(p.id, "cat")
    h2 = repo.save_head(p.id, _safetensors(), HeadMeta("b", "w", ["x", "y"], 0), {"miou": 0.1})
    assert h1.meta == repo.get_head(h1.id).meta == HeadMeta("b", "w", ["x", "y"], 0, created=h1.meta.created)
    assert repo.latest_head(p.id).id == h2.id and [h.id for h in repo.list_heads(p.id)] == [h1.id, h2.id]
    assert [c.name for c in h1.classes] == ["background"] and [c.name for c in h2.classes] == [
        "background",
        "cat",
    ]
    assert repo.head_weights(h1.id) == _safetensors()
    assert repo.set_head_metrics(h1.id, {"miou": 0.2}).metrics == {"miou": 0.2}
    with pytest.raises(ValidationError, match="safetensors"):
        repo.save_head(p.id, b"\x00" * 4, HeadMeta("b", "w", [], 0))
    with pytest.raises(ValidationError, match="JSON"):
        repo.save_head(p.id, _safetensors(), HeadMeta("b", "w", [], 0, train={"x": object()}))
    r = repo.record_training_run(p.id, {"lr": 1e-3}, 2.0, 0.5, {"miou": 0.3}, {0: 10, 1: 5}, head_id=h2.id)
    assert r.labelled_pixels == 15 and r.pixel_counts == {"0": 10, "1": 5} and r.head_id == h2.id
    assert [x.id for x in repo.list_training_runs(p.id)] == [r.id]
    with pytest.raises(ValidationError):
        repo.record_training_run(p.id, {}, float("nan"), None, None, None)


def test_a_head_row_of_an_old_release_or_damaged_is_still_read(repo) -> None:  # type: ignore[no-untyped-def]
    from storage.models import Head

    p = repo.create_project("old")
    old = repo.save_head(p.id, _safetensors(), HeadMeta("b", "w", ["x", "y"], 0))
    bad = repo.save_head(p.id, _safetensors(), HeadMeta("b", "w", ["x", "y"], 0))

    def rewrite(s) -> None:  # type: ignore[no-untyped-def]
        # the web app's first rows: the weights as backbone_weights, no feature version, no class list
        s.get(Head, old.id).meta = {"backbone": "b", "backbone_weights": "w", "train": {"loss": 1.0}}
        s.get(Head, bad.id).meta = {"classes": "not a list", "backbone": 3}

    repo._ctx.db.write(rewrite)
    meta = repo.get_head(old.id).meta
    assert (meta.backbone, meta.weights_id, meta.feature_version, meta.train) == ("b", "w", 1, {"loss": 1.0})
    assert meta.classes == ["background"]  # (the row's class snapshot)
    damaged = repo.get_head(bad.id).meta
    assert (damaged.backbone, damaged.weights_id, damaged.feature_version) == ("b", "w", 0)  # (never used)
