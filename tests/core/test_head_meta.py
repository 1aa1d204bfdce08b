"""The one head record: what head.json, the database's head rows and the engine's live head carry."""

from __future__ import annotations

import json

import pytest

from core.config import FEATURE_VERSION
from core.head_meta import HeadMeta


def test_round_trip_through_json_keeps_every_field():
    meta = HeadMeta(
        "dinov3_vits16", "hub:abc", ["bg", "cell"], 0, train={"loss": 0.2}, resolution="8px", class_ids=[4, 9]
    )
    back = HeadMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert back == meta
    assert back.feature_version == FEATURE_VERSION and back.feature_config.resolution == "8px"


def test_older_records_are_read_as_they_were_meant():
    # the first release: no feature version; the web app's first rows: the weights as backbone_weights
    old = {
        "backbone": "dinov2_vits14",
        "backbone_weights": "random:seed=0",
        "classes": ["a", "b"],
        "long_side": 448,
    }
    meta = HeadMeta.from_dict(old)
    assert meta.feature_version == 1 and meta.weights_id == "random:seed=0" and meta.class_ids == []
    assert "backbone_weights" not in meta.extra
    assert meta.feature_config.long_side == 448
    # both names (rows of the last release wrote both): weights_id wins, nothing left over in extra
    both = HeadMeta.from_dict({**old, "weights_id": "hub:x", "feature_version": 2})
    assert both.weights_id == "hub:x" and both.extra == {}


def test_unknown_keys_are_kept_in_extra_and_a_copy_leaves_the_original():
    meta = HeadMeta.from_dict(
        {"backbone": "b", "weights_id": "w", "classes": [], "long_side": 0, "colours": [1]}
    )
    assert meta.extra == {"colours": [1]}
    other = meta.but(classes=["x"])
    assert meta.classes == [] and other.classes == ["x"] and other.extra == meta.extra


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"backbone": "b"},
        {"backbone": "b", "weights_id": "w", "classes": "ab", "long_side": 0},
        ["not", "a", "dict"],
    ],
)
def test_what_is_not_a_head_record_is_refused(bad):
    with pytest.raises((TypeError, ValueError)):
        HeadMeta.from_dict(bad)
