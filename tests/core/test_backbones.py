"""The registry across families, and tokens equal to each family's reference: DINO v1 and iBOT from checkpoint
files in their own layouts (tests/core/dino_reference.py); DINOv3 runs at any grid of its patch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.backbone import Backbone, WeightsUnavailableError, create_model, load_backbone, model_for_file
from core.backbones import BACKBONES, FAMILIES, UnknownBackboneError, default_backbone_name, get_spec
from core.config import FeatureConfig
from core.features import FeatureExtractor
from tests.core import dino_reference as ref
from tests.core import dinov3_reference as ref3
from tests.core.hub_cache import hub_tokens

TOL = 1e-4  # fp32 on CPU
SHAPES = [(224, 224), (160, 256), (288, 192)]  # the trained grid, landscape and portrait (at /16)


def test_four_families_and_every_spec_says_its_patch_input_and_licence():
    families = {s.family for s in BACKBONES.values()}
    assert families == set(FAMILIES)
    assert {"dino_vits16", "dino_vits8", "dino_vitb16", "dino_vitb8"} <= set(BACKBONES)
    assert {"ibot_vitb16", "ibot_vitl16", "ibot_vitl16_in22k"} <= set(BACKBONES)
    assert {
        "dinov3_vits16",
        "dinov3_vits16plus",
        "dinov3_vitb16",
        "dinov3_vitl16",
        "dinov3_vith16plus",
    } <= set(BACKBONES)
    assert len([n for n, s in BACKBONES.items() if s.family == "dinov2"]) == 8
    assert get_spec("dinov2_vitb14").patch_size == 14 and get_spec("dinov2_vits14_reg4").num_registers == 4
    assert get_spec("dino_vitb8").patch_size == 8 and get_spec("dino_vitb8").embed_dim == 768
    assert get_spec("dinov3_vitl16").position == "rope" and get_spec("dinov3_vitl16").num_registers == 4
    sat, web = get_spec("dinov3_vitl16_sat"), get_spec("dinov3_vitl16")
    assert sat.mean != web.mean and sat.input.patch == 16
    assert all("DINOv3 License" in s.licence for s in BACKBONES.values() if s.family == "dinov3")
    assert all(s.licence == "Apache-2.0" for s in BACKBONES.values() if s.family != "dinov3")
    assert not get_spec("ibot_vitl16").hub
    for device in ("cpu", "cuda", "mps"):  # the defaults stay DINOv2, never DINOv3's licence
        assert get_spec(default_backbone_name(device)).family == "dinov2"


def test_unknown_backbone_lists_valid_names_by_family():
    with pytest.raises(UnknownBackboneError) as err:
        get_spec("dinov2_vitx14")
    text = str(err.value)
    for family in FAMILIES:
        assert f"{family}: " in text
    assert "dinov2_vitg14_reg4" in text and "dino_vitb8" in text and "ibot_vitl16_in22k" in text
    assert "dinov3_vitl16_sat" in text


@pytest.mark.parametrize("name", [n for n in BACKBONES if not n.startswith("dinov2")])
def test_every_new_backbone_gives_a_patch_grid_at_any_shape(name):
    """One block of each (random weights): the grid follows the spec's patch, prefix tokens are dropped."""
    spec = get_spec(name)
    model = create_model(spec, depth=1).eval()
    backbone = Backbone(spec=spec, model=model, weights_id="random", device=torch.device("cpu"))
    p = spec.patch_size
    for h, w in [(3, 5), (6, 4)]:
        out = backbone.patch_tokens(torch.randn(1, 3, h * p, w * p))
        assert out.shape == (1, spec.embed_dim, h, w) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match=f"patch size {p}"):
        backbone.patch_tokens(torch.zeros(1, 3, 2 * p + 1, 2 * p))


def _inputs(shape: tuple[int, int], seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name,patch", [("dino_vits16", 16), ("dino_vits8", 8)])
def test_dino_tokens_equal_the_reference_from_metas_file(tmp_path, name, patch):
    state = ref.random_state(384, patch, depth=2, seed=3)
    path = tmp_path / f"{name}_pretrain.pth"
    torch.save(state, path)
    spec = get_spec(name)
    model = model_for_file(spec, path, depth=2)
    backbone = Backbone(spec=spec, model=model.eval(), weights_id="file:test", device=torch.device("cpu"))
    for shape in SHAPES if patch == 16 else [(112, 112), (80, 128)]:
        x = _inputs(shape)
        got, expected = backbone.patch_tokens(x), ref.patch_tokens(state, x)
        assert got.shape == expected.shape == (1, 384, shape[0] // patch, shape[1] // patch)
        assert (got - expected).abs().max().item() < TOL, shape
    # the comparison can fail: a table resized without the + 0.1 is off by far more than the tolerance
    moved = ref.position_embedding(state["pos_embed"], 10, 16)
    plain = torch.nn.functional.interpolate(
        state["pos_embed"][:, 1:].reshape(1, 224 // patch, 224 // patch, -1).permute(0, 3, 1, 2),
        size=(10, 16),
        mode="bicubic",
    )
    assert (moved[:, 1:].reshape(1, 10, 16, -1).permute(0, 3, 1, 2) - plain).abs().max().item() > 0.05


def test_the_full_dino_vits16_from_its_file_through_load_backbone(tmp_path):
    state = ref.random_state(384, 16, depth=12, seed=4)
    path = tmp_path / "dino_deitsmall16_pretrain.pth"
    torch.save(state, path)
    backbone = load_backbone("dino_vits16", weights=str(path), device="cpu")
    x = _inputs((160, 256))
    assert (backbone.patch_tokens(x) - ref.patch_tokens(state, x)).abs().max().item() < TOL


def test_ibot_teacher_checkpoint_gives_the_references_tokens(tmp_path):
    """iBOT's own file: the teacher's backbone is taken (its projection head and MIM token are not)."""
    state = ref.random_state(768, 16, depth=12, seed=5)
    path = tmp_path / "checkpoint_teacher.pth"
    torch.save(ref.ibot_checkpoint(state), path)
    backbone = load_backbone("ibot_vitb16", weights=str(path), device="cpu")
    for shape in SHAPES[1:]:
        x = _inputs(shape)
        assert (backbone.patch_tokens(x) - ref.patch_tokens(state, x)).abs().max().item() < TOL
    with pytest.raises(WeightsUnavailableError, match="another model or size"):
        load_backbone("ibot_vitl16", weights=str(path), device="cpu")
    with pytest.raises(WeightsUnavailableError, match="no copy on the Hugging Face hub"):
        load_backbone("ibot_vitb16", weights="hub", device="cpu")


def test_ibot_with_layer_scale_gives_the_references_tokens(tmp_path):
    """iBOT's code scales each residual branch by gamma_1 / gamma_2 when trained with init_values > 0."""
    g = torch.Generator().manual_seed(9)
    state = ref.random_state(768, 16, depth=2, seed=9)
    for i in range(2):
        state[f"blocks.{i}.gamma_1"] = torch.rand(768, generator=g) * 0.5 + 0.25
        state[f"blocks.{i}.gamma_2"] = torch.rand(768, generator=g) * 0.5 + 0.25
    path = tmp_path / "checkpoint_teacher.pth"
    torch.save(ref.ibot_checkpoint(state), path)
    spec = get_spec("ibot_vitb16")
    backbone = Backbone(spec, model_for_file(spec, path, depth=2).eval(), "file:test", torch.device("cpu"))
    x = _inputs(SHAPES[1])
    assert (backbone.patch_tokens(x) - ref.patch_tokens(state, x)).abs().max().item() < TOL


def test_features_follow_the_patch_size(tmp_path):
    """The extractor, tiles included, at /16: grids, input sizes and the cache identity follow the spec."""
    spec = get_spec("dino_vits16")
    model = create_model(spec, depth=1).eval()
    backbone = Backbone(spec=spec, model=model, weights_id="random", device=torch.device("cpu"))
    rgb = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    feats = FeatureExtractor(backbone, FeatureConfig(long_side=448)).extract(rgb)
    assert feats.grid == (17, 28) and feats.resized_size == (17 * 16, 28 * 16)
    tiled = FeatureExtractor(backbone, FeatureConfig(scale=8.0, tile=20, overlap=4)).extract(rgb)
    assert tiled.grid == (38, 62) and tiled.resized_size == (38 * 16, 62 * 16)
    assert "dino_vits16" in FeatureExtractor(backbone, FeatureConfig()).identity


@pytest.mark.parametrize("name,dim,heads", [("dinov3_vits16", 384, 6), ("dinov3_vitb16", 768, 12)])
def test_dinov3_tokens_equal_the_reference_from_metas_file(tmp_path, name, dim, heads):
    """Meta's layout (storage tokens, layer scales, a qkv bias with its K third masked, the rotary periods):
    tokens equal tests/core/dinov3_reference.py at the trained grid, landscape and portrait."""
    state = ref3.random_state(dim, heads, depth=2, seed=6)
    path = tmp_path / f"{name}_pretrain_lvd1689m-test.pth"
    torch.save(state, path)
    spec = get_spec(name)
    backbone = Backbone(spec, model_for_file(spec, path, depth=2).eval(), "file:test", torch.device("cpu"))
    for shape in SHAPES:
        x = _inputs(shape)
        got, expected = backbone.patch_tokens(x), ref3.patch_tokens(state, x, heads)
        assert got.shape == expected.shape == (1, dim, shape[0] // 16, shape[1] // 16)
        assert (got - expected).abs().max().item() < TOL, shape
    # the comparison can fail: without the rotary embedding the tokens are far off
    no_rope = dict(state, **{"rope_embed.periods": torch.full_like(state["rope_embed.periods"], 1e12)})
    x = _inputs(SHAPES[1])
    assert (
        ref3.patch_tokens(no_rope, x, heads) - ref3.patch_tokens(state, x, heads)
    ).abs().max().item() > 0.05


def test_the_full_dinov3_vits16_from_metas_file_and_from_timms_layout_agree(tmp_path):
    state = ref3.random_state(384, 6, depth=12, seed=7)
    meta = tmp_path / "dinov3_vits16_pretrain_lvd1689m-test.pth"
    torch.save(state, meta)
    backbone = load_backbone("dinov3_vits16", weights=str(meta), device="cpu")
    x = _inputs((256, 192))
    expected = ref3.patch_tokens(state, x, 6)
    assert (backbone.patch_tokens(x) - expected).abs().max().item() < TOL
    from safetensors.torch import save_file

    timm_file = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.model.state_dict().items()}, str(timm_file))
    again = load_backbone("dinov3_vits16", weights=str(timm_file), device="cpu")
    assert (again.patch_tokens(x) - expected).abs().max().item() < TOL


def test_dinov3_hub_copy_in_timms_plain_build_equals_metas_file(tmp_path):
    """timm's hub weights are Meta's converted into the build without a qkv bias (the distilled models' biases
    are all zero): such a copy in the Hugging Face cache, read offline in a fresh interpreter, gives the
    reference's tokens of the Meta file it came from."""
    from timm.models.eva import checkpoint_filter_fn

    name = "dinov3_vits16"
    spec = get_spec(name)
    state = ref3.random_state(384, 6, depth=12, seed=8)
    for k in [k for k in state if k.endswith("attn.qkv.bias")]:
        state[k] = torch.zeros_like(state[k])
    plain = create_model(spec)  # the hub's build
    converted = checkpoint_filter_fn({k: v.clone() for k, v in state.items()}, plain)
    plain.load_state_dict(converted, strict=True)
    x = _inputs((192, 272))
    got = hub_tokens(tmp_path, name, spec.timm_name, plain.state_dict(), x)
    assert (got - ref3.patch_tokens(state, x, 6)).abs().max().item() < TOL
