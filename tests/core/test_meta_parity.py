"""probeseg's tokens equal Meta's DINOv2 (tests/core/dinov2_reference.py) for every backbone, every way of
loading the weights, and patch grids other than the 37x37 the models were trained at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from core.backbone import Backbone, load_backbone, model_for_file
from core.backbones import BACKBONES, get_spec
from core.features import IMAGENET_MEAN, IMAGENET_STD, preprocess, resized_size_for
from tests.core import dinov2_reference as ref
from tests.core.hub_cache import hub_tokens

TOL = 1e-4  # fp32 on CPU
# (H, W) inputs: landscape 24x32 and portrait 32x21 grids, a square 32x32 grid (long side 448) and 518x518,
# where no resize happens.
SHAPES = [(336, 448), (448, 294), (448, 448), (518, 518)]


def _inputs(shape: tuple[int, int], seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=["dinov2_vits14", "dinov2_vits14_reg4"])
def meta_pth(request, tmp_path_factory) -> tuple[str, Path, dict[str, torch.Tensor]]:
    name = request.param
    state = ref.random_meta_state(name, depth=12, seed=3)
    path = tmp_path_factory.mktemp("meta") / f"{name}_pretrain.pth"
    torch.save(state, path)
    return name, path, state


@pytest.mark.parametrize("shape", SHAPES)
def test_tokens_equal_meta_from_a_meta_checkpoint(meta_pth, shape):
    name, path, state = meta_pth
    backbone = load_backbone(name, weights=str(path), device="cpu")
    x = _inputs(shape)
    expected = ref.patch_tokens(name, state, x)
    got = backbone.patch_tokens(x)
    assert got.shape == expected.shape == (1, 384, shape[0] // 14, shape[1] // 14)
    assert (got - expected).abs().max().item() < TOL


def test_tokens_equal_meta_from_a_timm_safetensors_file(meta_pth, tmp_path):
    name, path, state = meta_pth
    timm_file = tmp_path / "model.safetensors"
    converted = load_backbone(name, weights=str(path), device="cpu").model.state_dict()
    save_file({k: v.contiguous() for k, v in converted.items()}, str(timm_file))
    backbone = load_backbone(name, weights=str(timm_file), device="cpu")
    for shape in SHAPES[:2]:
        x = _inputs(shape)
        assert (backbone.patch_tokens(x) - ref.patch_tokens(name, state, x)).abs().max().item() < TOL


def test_the_reference_sees_timms_own_resize_rule_as_different(meta_pth):
    """The comparison can fail: for the plain models timm's default resize (by size, antialiased) is off by
    far more than the tolerance, which is what the first release computed."""
    name, _, state = meta_pth
    x = _inputs(SHAPES[0])
    spec = get_spec(name)
    pos = state["pos_embed"]
    timm_rule = ref.position_embedding(pos, 24, 32, offset=0.0, antialias=True)
    meta_rule = ref.position_embedding(pos, 24, 32, spec.interpolate_offset, spec.interpolate_antialias)
    if name.endswith("_reg4"):
        assert torch.equal(timm_rule, meta_rule)  # the `_reg` models resize the way timm does
    else:
        assert (timm_rule - meta_rule).abs().max().item() > 0.1
    assert ref.patch_tokens(name, state, x).abs().max().item() > 0.1  # not a degenerate all-zero output


@pytest.mark.parametrize("name", [n for n, s in BACKBONES.items() if s.family == "dinov2"])
def test_every_registry_backbone_follows_meta_at_one_block(name, tmp_path):
    """All sizes (ViT-g's SwiGLU included) and both variants, cheaply: one transformer block."""
    spec = get_spec(name)
    state = ref.random_meta_state(name, depth=1, seed=5)
    path = tmp_path / f"{name}_pretrain.pth"
    torch.save(state, path)
    model = model_for_file(spec, path, depth=1)
    backbone = Backbone(spec=spec, model=model.eval(), weights_id="file:test", device=torch.device("cpu"))
    for shape in [(252, 448), (448, 308)]:
        x = _inputs(shape, seed=2)
        got, expected = backbone.patch_tokens(x), ref.patch_tokens(name, state, x)
        assert got.shape[1] == spec.embed_dim
        assert (got - expected).abs().max().item() < TOL, shape


def test_tokens_equal_meta_from_the_hugging_face_cache(tmp_path):
    """The `hub` path (timm's weights through the HF cache, offline) in a fresh interpreter, as
    huggingface_hub reads HF_HOME and HF_HUB_OFFLINE when it is imported."""
    name = "dinov2_vits14"
    state = ref.random_meta_state(name, depth=12, seed=7)
    meta_file = tmp_path / "meta.pth"
    torch.save(state, meta_file)
    timm_state = load_backbone(name, weights=str(meta_file), device="cpu").model.state_dict()
    x = _inputs((448, 336))
    got = hub_tokens(tmp_path, name, get_spec(name).timm_name, timm_state, x)
    assert (got - ref.patch_tokens(name, state, x)).abs().max().item() < TOL


def _meta_eval_tensor(rgb: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Meta's eval recipe: torchvision Resize (bicubic) on the PIL image, ToTensor, Normalize."""
    from torchvision import transforms

    t = transforms.Compose(
        [
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return t(Image.fromarray(rgb))


@pytest.mark.parametrize("hw", [(480, 640), (4032, 3024)])
def test_preprocessing_equals_metas_eval_recipe_for_small_and_large_photos(hw):
    rng = np.random.default_rng(0)
    h, w = hw
    # A photo-like image: smooth gradients plus fine texture (where a reducing-gap shortcut differs).
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 / w), (yy * 255 / h), ((xx + yy) % 97) * 2.6], axis=-1)
    rgb = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    size = resized_size_for((h, w), 448, 14)
    ours = preprocess(rgb, 448, get_spec("dinov2_vits14").input)
    theirs = _meta_eval_tensor(rgb, size)
    assert ours.shape == theirs.shape == (3, *size)
    assert (ours - theirs).abs().max().item() < 1e-5


# --------------------------------------------------------------------------- features of older code


def test_the_feature_version_is_part_of_the_cache_key(random_backbone, monkeypatch):
    from core import features
    from core.cache import FeatureStore

    store = FeatureStore(features.FeatureExtractor(random_backbone))
    key = store.key("abc")
    monkeypatch.setattr(features, "FEATURE_VERSION", features.FEATURE_VERSION - 1)
    assert store.key("abc") != key


def test_a_head_of_older_features_says_so_when_loaded(tmp_path):
    import json

    from core.features import FEATURE_VERSION
    from core.head import HeadFileError, HeadMeta, LinearHead, load_head, save_head

    meta = HeadMeta(backbone="dinov2_vits14", weights_id="random:seed=0", classes=["a", "b"], long_side=448)
    save_head(tmp_path, LinearHead(384, 2), meta)
    assert load_head(tmp_path)[1].feature_version == FEATURE_VERSION
    fields = json.loads((tmp_path / "head.json").read_text())
    del fields["feature_version"]  # as written by the first release
    (tmp_path / "head.json").write_text(json.dumps(fields))
    with pytest.raises(HeadFileError, match="feature version 1.*retrain"):
        load_head(tmp_path)
