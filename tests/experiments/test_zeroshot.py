import json

import numpy as np
import pytest
import torch

open_clip = pytest.importorskip("open_clip")

from core.labels import IGNORE, read_label_png  # noqa: E402
from core.voc import VocDataset  # noqa: E402
from experiments.zeroshot import (  # noqa: E402
    BACKGROUND_WORDS,
    ClipWeightsUnavailableError,
    ZeroShotConfig,
    ZeroShotError,
    class_prompts,
    load_clip,
    make_zeroshot_labels,
)
from tests.experiments.test_labelgen import make_tiny_voc  # noqa: E402

TINY = "probeseg-test-tiny-clip"  # a small open_clip ViT (same code path as ViT-B-16, fast on a CPU)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }
    path = tmp_path_factory.mktemp("clipcfg") / f"{TINY}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return load_clip(TINY, "random", device="cpu")


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> VocDataset:
    return VocDataset.open(make_tiny_voc(tmp_path_factory.mktemp("voc"), n_train=3, n_val=1))


def test_tokens_match_open_clip_at_the_native_size(clip):
    x = torch.randn(2, 3, 64, 64)
    ours = clip.tokens_before_last_block(x)
    n = len(clip.model.visual.transformer.resblocks)
    ref = clip.model.visual.forward_intermediates(
        x, indices=[n - 2], output_fmt="NLC", intermediates_only=True, output_extra_tokens=True
    )
    torch.testing.assert_close(ours[:, 1:], ref["image_intermediates"][0])
    torch.testing.assert_close(ours[:, :1], ref["image_intermediates_prefix"][0])


def test_dense_embeddings_any_size(clip):
    emb = clip.dense_embeddings(torch.randn(1, 3, 48, 80))
    assert emb.shape == (1, 32, 3, 5)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(1, 3, 5))


def test_pixels_take_the_best_matching_class_name(clip, monkeypatch):
    # Two classes, the second described by two words: patches on the left look like word 2 of class 1.
    t = torch.eye(32)[:3]
    owner = torch.tensor([0, 1, 1])
    emb = torch.zeros(1, 32, 2, 4)
    emb[0, 2, :, :2] = 1.0  # left half: class 1 (its second word)
    emb[0, 0, :, 2:] = 1.0  # right half: class 0
    monkeypatch.setattr(clip, "dense_embeddings", lambda batch: emb)
    rgb = np.zeros((20, 40, 3), np.uint8)
    labels = clip.label(rgb, (t, owner), 2, ZeroShotConfig(long_side=64))
    assert labels.shape == (20, 40)
    assert (labels[:, :15] == 1).all() and (labels[:, -15:] == 0).all()
    unsure = clip.label(rgb, (t, owner), 2, ZeroShotConfig(long_side=64, min_confidence=0.9, temperature=10))
    assert (unsure[:, 19:21] == IGNORE).all()  # the boundary is a 50/50 tie
    assert (unsure[:, :5] == 1).all() and (unsure[:, -5:] == 0).all()
    emb[0, 0, :, 2:] = 0.1  # class 0 is weak everywhere: denoising removes it
    emb[0, 2, :, 2:] = 0.2
    denoised = clip.label(rgb, (t, owner), 2, ZeroShotConfig(long_side=64, denoise=0.9))
    assert (denoised == 1).all()


def test_prompts():
    p = class_prompts(["background", "diningtable", "my_class"], {"my_class": ["widget", "gadget"]})
    assert p[0] == BACKGROUND_WORDS and p[1][0] == "dining table" and p[2] == ("widget", "gadget")
    with pytest.raises(ZeroShotError, match="template"):
        ZeroShotConfig(templates=("a photo",))


def test_zeroshot_labels_for_a_split(clip, voc, tmp_path):
    cfg = ZeroShotConfig(long_side=64, templates=("a photo of a {}.",))
    manifest = make_zeroshot_labels(
        voc, "train", tmp_path, clip, cfg, synonyms={"background": ["grass"]}, progress=False
    )
    for image_id in voc.ids("train"):
        labels = read_label_png(tmp_path / f"{image_id}.png")
        assert labels.shape == voc.image(image_id).shape[:2]
        assert labels.max() < len(voc.classes)  # dense: every pixel gets a class
    assert manifest["kind"] == "zeroshot" and manifest["clip_weights"] == "random:seed=0"
    assert manifest["quality"]["coverage"] == 1.0
    again = load_clip(TINY, "random", device="cpu")  # random weights are seeded: the same labels again
    make_zeroshot_labels(
        voc, "train", tmp_path / "again", again, cfg, synonyms={"background": ["grass"]}, progress=False
    )
    for image_id in voc.ids("train"):
        np.testing.assert_array_equal(
            read_label_png(tmp_path / f"{image_id}.png"),
            read_label_png(tmp_path / "again" / f"{image_id}.png"),
        )


def test_missing_weights_give_the_three_fixes(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))  # an empty cache
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ClipWeightsUnavailableError) as err:
        load_clip("ViT-B-16", "hub", device="cpu")
    msg = str(err.value)
    assert "--clip-weights hub" in msg and "--clip-weights /path" in msg and "--clip-weights random" in msg
    with pytest.raises(ClipWeightsUnavailableError, match="does not exist"):
        load_clip("ViT-B-16", str(tmp_path / "missing.safetensors"))
    with pytest.raises(ZeroShotError, match="unknown CLIP model"):
        load_clip("ViT-Nope-1", "random")


def test_make_labels_zeroshot_command(clip, voc, tmp_path, capsys):
    from cli.main import main

    rc = main(
        [
            "make-labels",
            "--data",
            str(voc.root),
            "--kind",
            "zeroshot",
            "--clip-model",
            TINY,
            "--clip-weights",
            "random",
            "--device",
            "cpu",
            "--clip-long-side",
            "64",
            "--out",
            str(tmp_path / "zs"),
        ]
    )
    assert rc == 0
    assert "wrote 3 zeroshot label maps" in capsys.readouterr().out
    assert len(list((tmp_path / "zs").glob("*.png"))) == 3


def test_study_with_zeroshot_labels(clip, voc, tmp_path):
    from experiments.protocol import ProtocolConfig
    from experiments.study import StudyConfig, run_study

    config = StudyConfig(
        kinds=("zeroshot",),
        backbones=("dinov2_vits14",),
        zeroshot=ZeroShotConfig(long_side=64, templates=("a photo of a {}.",)),
        zeroshot_prompts={"background": ["grass"]},
    )
    protocol = ProtocolConfig(
        iterations=1, batch_size=2, crop=28, base_long_side=42, workers=0, stats_images=2
    )
    from core.backbone import load_backbone

    results = run_study(
        voc,
        tmp_path,
        config,
        protocol,
        lambda name: load_backbone(name, "random", "cpu"),
        clip_factory=lambda: clip,
        progress=False,
    )
    assert results["label_quality"]["zeroshot"]["coverage"] == 1.0 and len(results["runs"]) == 1

    def no_clip():
        raise AssertionError("the zero-shot labels should have been reused")

    again = run_study(
        voc, tmp_path, config, protocol, lambda name: None, clip_factory=no_clip, progress=False
    )
    assert again["runs"][0]["miou"] == results["runs"][0]["miou"]
