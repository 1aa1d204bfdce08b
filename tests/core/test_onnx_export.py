"""`export-onnx`: one ONNX graph (backbone + head, dynamic H and W) that onnxruntime runs to the same
prediction as `predict`; the head-only graph; the position-embedding table equals the runtime rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cli.main import main
from core.backbone import create_model, meta_position_embedding
from core.backbones import get_spec
from core.features import PatchFeatures, preprocess, resized_size_for
from core.head import load_head
from core.imageio import load_rgb
from core.labels import read_label_png
from core.onnx_export import METADATA_KEY, OnnxExportError, _TablePosition, axis_tables, export_onnx

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov2_vits14_reg4"])
def test_the_position_table_is_the_runtime_rule_at_every_grid(name):
    """Plain models: scale factor (grid + 0.1) / 37, no antialiasing; _reg4: size, antialiased."""
    torch.manual_seed(0)
    model = create_model(get_spec(name), depth=1)
    torch.nn.init.normal_(model.pos_embed)
    table = _TablePosition(axis_tables(model, 45))
    for grid in [(1, 1), (4, 5), (16, 20), (37, 37), (45, 2), (38, 44)]:
        expected = meta_position_embedding(model, grid)
        torch.testing.assert_close(table(model, grid), expected, rtol=0, atol=1e-5)


@pytest.fixture
def trained_head(tiny_voc, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBESEG_CACHE", str(tmp_path / "cache"))
    voc, labels = tiny_voc
    head_dir = tmp_path / "head"
    assert (
        main(
            [
                "train",
                "--data",
                str(voc),
                "--labels",
                str(labels),
                "--label-kind",
                "scribble",
                "--weights",
                "random",
                "--long-side",
                "112",
                "--out",
                str(head_dir),
            ]
        )
        == 0
    )
    return voc, head_dir


def test_the_onnx_graph_predicts_what_predict_predicts_at_any_size(trained_head, tmp_path, capsys):
    voc, head_dir = trained_head
    out = tmp_path / "model.onnx"
    assert main(["export-onnx", "--head", str(head_dir), "--out", str(out), "--max-side", "448"]) == 0
    assert "wrote dinov2_vits14 + head (3 classes) as ONNX" in capsys.readouterr().out
    model = onnx.load(str(out))
    meta = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert meta["classes"] == ["background", "red", "blue"] and meta["graph"] == "backbone+head"
    assert meta["features"]["image_mean"] == [0.485, 0.456, 0.406] and meta["long_side"] == 112
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (
        inp.name == "image" and inp.shape[2] != inp.shape[3] and not isinstance(inp.shape[2], int)
    )  # dynamic

    head, _ = load_head(head_dir)
    from core.backbone import load_backbone
    from core.predict import patch_logits, predict

    backbone = load_backbone("dinov2_vits14", "random", "cpu")
    rgb = load_rgb(next((voc / "JPEGImages").iterdir()))
    for long_side in (112, 196):  # the head's own size and another one: H and W are dynamic
        size = resized_size_for(rgb.shape[:2], long_side, 14)
        x = preprocess(rgb, long_side, get_spec("dinov2_vits14").input).unsqueeze(
            0
        )  # normalised, at a size the backbone takes as it is
        assert tuple(x.shape[2:]) == size
        logits = session.run(None, {"image": x.numpy()})[0]
        assert logits.shape == (1, 3, *size)
        feats = PatchFeatures(tokens=backbone.patch_tokens(x)[0], resized_size=size, original_size=size)
        expected = predict(head, feats).labels
        agree = float((logits[0].argmax(0) == expected).mean())
        assert agree >= 0.995, agree
        from core.features import upsample_rows

        torch_logits = upsample_rows(patch_logits(head, feats), size, slice(0, size[0])).numpy()
        diff = float(np.abs(logits[0] - torch_logits).max())
        print(f"long side {long_side}: {agree:.2%} of pixels agree, max logit difference {diff:.2e}")
        assert diff < 1e-2 * max(1.0, float(np.abs(torch_logits).max()))

    # The CLI's own prediction of an image already at the network size is the same label map (the graph has
    # the bilinear boundary: core.edges needs the image, which the graph's user has beside it).
    from PIL import Image

    sized = tmp_path / "sized" / "one.png"
    sized.parent.mkdir()
    Image.fromarray(rgb).resize(
        resized_size_for(rgb.shape[:2], 112, 14)[::-1], Image.Resampling.BICUBIC
    ).save(sized)
    assert (
        main(
            [
                "predict",
                "--head",
                str(head_dir),
                "--images",
                str(sized),
                "--out",
                str(tmp_path / "pred"),
                "--no-edges",
            ]
        )
        == 0
    )
    x = preprocess(load_rgb(sized), 112, get_spec("dinov2_vits14").input).unsqueeze(0)
    onnx_labels = session.run(None, {"image": x.numpy()})[0][0].argmax(0)
    assert (onnx_labels == read_label_png(tmp_path / "pred" / "one.png")).mean() >= 0.995


def test_head_only_graph_and_clear_errors(trained_head, tmp_path, capsys, monkeypatch):
    _, head_dir = trained_head
    out = tmp_path / "head.onnx"
    assert main(["export-onnx", "--head", str(head_dir), "--out", str(out), "--head-only"]) == 0
    head, meta = load_head(head_dir)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    tokens = torch.randn(1, head.dim, 6, 9)
    got = session.run(None, {"tokens": tokens.numpy()})[0]
    np.testing.assert_allclose(got, head(tokens).detach().numpy(), rtol=1e-5, atol=1e-5)

    with pytest.raises(OnnxExportError, match="backbone"):
        export_onnx(head, meta, tmp_path / "x.onnx")
    with pytest.raises(OnnxExportError, match="patch size 14"):
        export_onnx(head, meta, tmp_path / "x.onnx", head_only=True, max_side=100)
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnxscript":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    capsys.readouterr()
    assert main(["export-onnx", "--head", str(head_dir), "--out", str(out), "--head-only"]) == 1
    assert "pip install 'probeseg[onnx]'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["dino_vits16", "ibot_vitb16", "dinov2_vits14_reg4", "dinov3_vits16"])
def test_every_family_exports_and_runs_as_in_torch(name, tmp_path):
    """A graph for each family (one block, random weights): onnxruntime's logits equal the torch path's at
    two shapes of the backbone's own patch (DINOv3's rotary embedding traced with the grid dynamic)."""
    from core.backbone import Backbone
    from core.head import HeadMeta, LinearHead

    spec = get_spec(name)
    torch.manual_seed(0)
    model = create_model(spec, depth=1).eval()
    backbone = Backbone(spec=spec, model=model, weights_id="random", device=torch.device("cpu"))
    head = LinearHead(spec.embed_dim, 3)
    torch.nn.init.normal_(head.conv.weight, std=0.1)
    meta = HeadMeta(backbone=name, weights_id="random", classes=["a", "b", "c"], long_side=224)
    p = spec.patch_size
    out = export_onnx(head, meta, tmp_path / "m.onnx", backbone, max_side=20 * p)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    graph = json.loads({q.key: q.value for q in onnx.load(str(out)).metadata_props}[METADATA_KEY])
    assert f"multiples of {p}" in graph["input"] and graph["features"]["patch_size"] == p
    for h, w in [(5, 7), (9, 4)]:
        x = torch.randn(1, 3, h * p, w * p)
        with torch.no_grad():
            tokens = backbone.patch_tokens(x)
            expected = torch.nn.functional.interpolate(head(tokens), size=(h * p, w * p), mode="bilinear")
        (got,) = session.run(None, {"image": x.numpy()})
        assert np.abs(got - expected.numpy()).max() < 1e-3
