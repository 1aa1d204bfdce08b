from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.cache import FeatureStore
from core.features import FeatureConfig, FeatureExtractor, PatchFeatures
from core.head import (
    HeadFileError,
    HeadMeta,
    LinearHead,
    feature_recipe,
    head_from_bytes,
    head_to_bytes,
    load_head,
    save_head,
)
from core.predict import Predictor, patch_probabilities, predict


def _head_and_feats(k=3, H=47, W=31):
    g = torch.Generator().manual_seed(0)
    head = LinearHead(6, k).requires_grad_(False)
    with torch.no_grad():
        head.conv.weight.normal_(generator=g)
        head.conv.bias.normal_(generator=g)
    return head, PatchFeatures(torch.randn(6, 4, 3, generator=g), (56, 42), (H, W))


def test_prediction_equals_upsampled_softmax_at_full_resolution():
    head, feats = _head_and_feats()
    ref = F.interpolate(
        head(feats.tokens[None]), size=feats.original_size, mode="bilinear", align_corners=False
    )[0]
    p = ref.softmax(0).detach()
    out = predict(head, feats, band_bytes=1)  # one row per band: exercises the memory-bounded path
    assert out.labels.shape == (47, 31) and out.labels.dtype == np.uint8
    assert np.array_equal(out.labels, p.argmax(0).numpy())
    assert np.allclose(out.confidence, p.max(0).values.numpy(), atol=1e-5)
    ent = -(p * p.log()).sum(0) / np.log(3)
    assert np.allclose(out.entropy, ent.numpy(), atol=1e-5)
    assert 0 <= out.uncertainty <= 1
    assert torch.allclose(patch_probabilities(head, feats).sum(0), torch.ones(4, 3))


def test_head_dimension_mismatch_is_explained():
    head, feats = _head_and_feats()
    with pytest.raises(ValueError, match="another backbone"):
        predict(LinearHead(8, 3), feats)
    del head


def test_predictor_requires_set_image_first(random_backbone):
    predictor = Predictor(FeatureStore(FeatureExtractor(random_backbone, FeatureConfig(56)), None))
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(LinearHead(384, 2))
    feats = predictor.set_image(np.zeros((30, 40, 3), np.uint8))
    assert predictor.predict(LinearHead(384, 2)).labels.shape == (30, 40) and feats.dim == 384


def test_predictor_on_given_features_at_any_size():
    head, feats = _head_and_feats()
    predictor = Predictor()
    with pytest.raises(RuntimeError, match="FeatureStore"):
        predictor.set_image(np.zeros((30, 40, 3), np.uint8))
    predictor.set_features(feats)
    full = predictor.predict(head)
    np.testing.assert_array_equal(full.labels, predict(head, feats).labels)
    small = predictor.predict(head, (feats.original_size[0] // 2, feats.original_size[1] // 3))
    assert small.labels.shape == (feats.original_size[0] // 2, feats.original_size[1] // 3)
    torch.testing.assert_close(predictor.patch_logits(head), head(feats.tokens.float()[None])[0])


def test_head_files_round_trip(tmp_path):
    head, feats = _head_and_feats()
    head.set_statistics(torch.arange(6.0), torch.full((6,), 2.0))
    meta = HeadMeta("dinov2_vits14", "random:seed=0", ["a", "b", "c"], 448, train={"loss": 0.1})
    save_head(tmp_path / "h", head, meta)
    loaded, meta2 = load_head(tmp_path / "h")
    assert meta2 == dataclasses.replace(
        meta,
        features=feature_recipe("dinov2_vits14", FeatureConfig(448)),  # filled in on save
        weights_sha256=hashlib.sha256(head_to_bytes(head)).hexdigest(),
    )
    assert meta2.features["patch_size"] == 14 and meta2.features["image_mean"] == [0.485, 0.456, 0.406]
    stored = json.loads((tmp_path / "h" / "head.json").read_text())
    (tmp_path / "h" / "head.json").write_text(json.dumps({**stored, "format": 1, "from_the_future": 3}))
    assert load_head(tmp_path / "h")[1].extra == {
        "from_the_future": 3
    }  # unknown fields are kept, not refused
    assert torch.equal(loaded(feats.tokens[None]), head(feats.tokens[None]))
    assert torch.equal(head_from_bytes(head_to_bytes(head)).std, head.std)
    with pytest.raises(HeadFileError, match="no head here"):
        load_head(tmp_path / "missing")
    weights = (tmp_path / "h" / "head.safetensors").read_bytes()
    (tmp_path / "h" / "head.safetensors").write_bytes(weights[:-4])  # truncated
    with pytest.raises(HeadFileError, match="altered"):
        load_head(tmp_path / "h")
    with pytest.raises(HeadFileError, match="truncated"):
        head_from_bytes(weights[:-4])
    (tmp_path / "h" / "head.safetensors").write_bytes(
        head_to_bytes(LinearHead(6, 3))
    )  # another head, swapped in
    with pytest.raises(HeadFileError, match="sha256"):
        load_head(tmp_path / "h")


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python API example, run as written (random weights instead of the hub's)."""
    import re
    from pathlib import Path

    from PIL import Image

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "Predictor(store)" in b]
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(
        "photo.jpg"
    )
    save_head(
        "heads/scribble", LinearHead(384, 3), HeadMeta("dinov2_vits14", "random:seed=0", ["a", "b", "c"], 224)
    )
    namespace: dict = {}
    exec(code.replace('weights="hub"', 'weights="random"'), namespace)  # noqa: S102 (our own README)
    assert namespace["pred"].labels.shape == (240, 320)
