from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.backbone import WeightsUnavailableError, checkpoint_layout, load_backbone, resolve_device

ROOT = Path(__file__).resolve().parents[2]


def test_random_backbone_is_frozen_seeded_and_gives_patch_grid(random_backbone):
    bb = random_backbone
    assert bb.is_random and not bb.model.training
    assert not any(p.requires_grad for p in bb.model.parameters())
    x = torch.randn(2, 3, 56, 84)
    out = bb.patch_tokens(x)
    assert out.shape == (2, 384, 4, 6)
    assert not out.requires_grad
    again = load_backbone("dinov2_vits14", weights="random", device="cpu")
    assert torch.equal(again.patch_tokens(x), out)  # same seed, same weights, same features


def test_input_not_multiple_of_patch_size_is_refused(random_backbone):
    with pytest.raises(ValueError, match="multiple of dinov2_vits14's patch size 14"):
        random_backbone.patch_tokens(torch.zeros(1, 3, 50, 56))


def test_hub_offline_error_names_the_three_fixes(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    with pytest.raises(WeightsUnavailableError) as err:
        load_backbone("dinov2_vits14", weights="hub", device="cpu")
    msg = str(err.value)
    assert (
        "--weights hub" in msg
        and "--weights /path/to/dinov2_vits14_pretrain.pth" in msg
        and "--weights random" in msg
    )


def _to_meta_layout(state: dict[str, torch.Tensor], registers: bool) -> dict[str, torch.Tensor]:
    """Invert timm's DINOv2 conversion: the key layout of Meta's dinov2_*_pretrain.pth files."""
    out = dict(state)
    out["mask_token"] = torch.zeros(1, state["cls_token"].shape[-1])
    if registers:
        # Meta keeps a pos-embed slot for CLS; timm folds it into cls_token. A zero slot inverts that exactly.
        out["register_tokens"] = out.pop("reg_token")
        pos = out.pop("pos_embed")
        out["pos_embed"] = torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1)
    return out


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov2_vits14_reg4"])
@pytest.mark.parametrize("layout", ["meta-pth", "timm-safetensors"])
def test_checkpoint_round_trip_in_each_layout(tmp_path, name, layout):
    src = load_backbone(name, weights="random", device="cpu")
    # Perturb so the reload cannot pass by coincidence with the seeded random init.
    with torch.no_grad():
        for p in src.model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    state = {k: v.clone().contiguous() for k, v in src.model.state_dict().items()}
    if layout == "meta-pth":
        path = tmp_path / f"{name}_pretrain.pth"
        torch.save(_to_meta_layout(state, registers="reg4" in name), path)
        assert checkpoint_layout(torch.load(path, weights_only=True)) == "Meta"
    else:
        path = tmp_path / "model.safetensors"
        save_file(state, str(path))
    loaded = load_backbone(name, weights=str(path), device="cpu")
    assert loaded.weights_id.startswith("file:")
    x = torch.randn(1, 3, 42, 70)
    assert torch.allclose(loaded.patch_tokens(x), src.patch_tokens(x), atol=1e-5)


def test_checkpoint_of_wrong_size_is_a_clear_error(tmp_path, random_backbone):
    path = tmp_path / "small.safetensors"
    save_file({k: v.contiguous() for k, v in random_backbone.model.state_dict().items()}, str(path))
    with pytest.raises(WeightsUnavailableError, match="does not fit dinov2_vitb14"):
        load_backbone("dinov2_vitb14", weights=str(path), device="cpu")


def test_missing_or_garbage_weights_file(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        load_backbone("dinov2_vits14", weights=str(tmp_path / "nope.pth"), device="cpu")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="not a loadable weights file"):
        load_backbone("dinov2_vits14", weights=str(bad), device="cpu")


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")


@pytest.mark.parametrize("offline", [True, False])
def test_hub_weights_load_offline_from_the_hugging_face_cache(tmp_path, random_backbone, offline):
    """The real `hub` path: timm/<model> is read from HF_HOME's cache without network, with HF_HUB_OFFLINE
    or without it (then the hub, here an unreachable address, is not asked at all). Run in a fresh
    interpreter because huggingface_hub reads HF_HOME and HF_HUB_OFFLINE when it is imported."""
    repo = tmp_path / "hub" / "models--timm--vit_small_patch14_dinov2.lvd142m"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    state = {k: (v + 0.01).contiguous() for k, v in random_backbone.model.state_dict().items()}
    save_file(state, str(snapshot / "model.safetensors"))
    code = (
        "from core.backbone import load_backbone; import torch;"
        "from safetensors.torch import load_file;"
        f"bb = load_backbone('dinov2_vits14', weights='hub', device='cpu');"
        f"ref = load_file({str(snapshot / 'model.safetensors')!r});"
        "assert not bb.is_random;"
        "assert torch.equal(bb.model.state_dict()['norm.weight'], ref['norm.weight']);"
        "print(bb.weights_id)"
    )
    env = (
        {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
        if offline
        else {
            **{k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"},
            "HF_HOME": str(tmp_path),
            "HF_ENDPOINT": "http://127.0.0.1:9",
        }
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("hub:timm/vit_small_patch14_dinov2.lvd142m")
    assert "Retrying" not in out.stderr and "127.0.0.1:9" not in out.stderr


def test_uncached_hub_weights_without_network_fail_at_once(tmp_path):
    """No network, nothing cached, no HF_HUB_OFFLINE: one quick check of the hub, then the clear error (the
    first release retried for about a minute, printing each retry)."""
    code = (
        "from core.backbone import load_backbone, WeightsUnavailableError\n"
        "try:\n    load_backbone('dinov2_vits14', weights='hub', device='cpu')\n"
        "except WeightsUnavailableError as e:\n    print('REFUSED', e)\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy")},
        "HF_HOME": str(tmp_path / "empty"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert "REFUSED" in out.stdout and "cannot be reached" in out.stdout and "--weights random" in out.stdout
    assert "Retrying" not in out.stderr
