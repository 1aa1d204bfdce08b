"""The `hub` weights path, offline: a timm state written where huggingface_hub's cache keeps it, and a
fresh interpreter (huggingface_hub reads HF_HOME and HF_HUB_OFFLINE when it is imported) that loads it as
`--weights hub` does and returns the patch tokens of an input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]


def hub_tokens(tmp_path: Path, name: str, timm_name: str, state: dict[str, torch.Tensor], x: torch.Tensor):
    """Tokens of `x` from backbone `name` loaded with weights='hub' from a cache holding `state`."""
    repo = tmp_path / "hub" / f"models--timm--{timm_name}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))
    torch.save(x, tmp_path / "x.pt")
    code = (
        "import torch; from core.backbone import load_backbone;"
        f"bb = load_backbone({name!r}, weights='hub', device='cpu'); assert bb.weights_id.startswith('hub:');"
        f"torch.save(bb.patch_tokens(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'out.pt')!r})"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return torch.load(tmp_path / "out.pt", weights_only=True)
