"""A trained head as one ONNX graph, for running it outside probeseg (onnxruntime, TensorRT, a browser).

`export_onnx` writes backbone + head: input a normalised float32 image [1, 3, H, W] (H, W multiples of the patch,
both dynamic), output class logits [1, K, H, W] (the patch-grid logits upsampled bilinearly,
align_corners=False: the rule `predict` uses). `head_only=True` writes just the 1x1 head (standardisation
included): tokens [1, C, h, w] -> logits [1, K, h, w]. The preprocessing, classes and feature identity are
in the model's metadata (key "probeseg", JSON).

Why a table for the position embedding: Meta's rule resizes it with a scale factor of (grid + 0.1) / 37,
which the exporter can only bake in for the traced grid. Bicubic resizing is separable, so the embedding at
(h, w) is A_h P A_w^T with A_n the [n, 37] matrix of the 1-D resize to n; the export computes every A_n up to
`max_side` pixels with the runtime rule itself (`meta_position_embedding`) and looks the two up in the graph.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from core.atomic import atomic_path
from core.backbone import Backbone, ViT, meta_position_embedding, vit_tokens
from core.backbones import get_spec
from core.errors import UserError
from core.features import upsample_logits
from core.head import HeadMeta, LinearHead, feature_recipe

OPSET = 18
METADATA_KEY = "probeseg"


class OnnxExportError(UserError, ValueError):
    pass


def _require_onnx():
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise OnnxExportError(
            "ONNX export needs the onnx and onnxscript packages: pip install 'probeseg[onnx]' "
            "(or pip install onnx onnxscript onnxruntime)"
        ) from None
    return onnx


def axis_tables(model: ViT, max_grid: int) -> torch.Tensor:
    """[max_grid, max_grid, M] float32: entry [n - 1, :n] is the [n, M] matrix of the 1-D position-embedding
    resize from M to n cells, read off the runtime rule applied to indicator channels (channel c is 1 on row
    c of the M x M grid), so the table cannot drift from the rule."""
    pos = model.pos_embed
    prefix = 0 if model.no_embed_class else 1
    m = int(round((pos.shape[1] - prefix) ** 0.5))
    rows = torch.eye(m).repeat_interleave(m, dim=0)  # [M*M, M]: cell (y, x) -> e_y
    probe = SimpleNamespace(
        pos_embed=torch.cat([torch.zeros(1, prefix, m), rows[None]], dim=1),
        no_embed_class=model.no_embed_class,
        probeseg_spec=model.probeseg_spec,
    )
    table = torch.zeros(max_grid, max_grid, m)
    with torch.no_grad():
        for n in range(1, max_grid + 1):
            out = meta_position_embedding(probe, (n, n))[0, prefix:].reshape(n, n, m)
            table[n - 1, :n] = out[:, 0]  # rows of a 1-D kernel sum to 1, so column 0 is A_n itself
    return table


class _TablePosition:
    """`probeseg_position` for the export: A_h P A_w^T from the tables (same values as the runtime rule)."""

    def __init__(self, table: torch.Tensor):
        self.table = table

    def __call__(self, model: ViT, grid: tuple[int, int]) -> torch.Tensor:
        h, w = grid
        pos = model.pos_embed
        prefix = 0 if model.no_embed_class else 1
        m = self.table.shape[-1]
        patch = pos[0, prefix:].reshape(m, m, -1)  # [M, M, C]
        a_h, a_w = self.table[h - 1, :h], self.table[w - 1, :w]  # [h, M], [w, M]
        resized = torch.einsum("ym,xk,mkc->yxc", a_h, a_w, patch).reshape(1, h * w, -1)
        return torch.cat([pos[:, :prefix], resized], dim=1)


class _Segmenter(nn.Module):
    def __init__(self, model: nn.Module, head: LinearHead):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return upsample_logits(self.head(vit_tokens(self.model, image)), image.shape[-2:])


def export_onnx(
    head: LinearHead,
    meta: HeadMeta,
    out: str | os.PathLike,
    backbone: Backbone | None = None,
    head_only: bool = False,
    max_side: int | None = None,
) -> Path:
    """Write the ONNX graph of `backbone` + `head` (or the head alone) to `out`; returns the path.
    `max_side`: the largest H or W (pixels) the graph accepts, a multiple of the backbone's patch (default:
    the largest such up to 2048)."""
    onnx = _require_onnx()
    spec = get_spec(meta.backbone)
    p = spec.patch_size
    if not head_only and backbone is None:
        raise OnnxExportError("a backbone + head graph needs the backbone; pass backbone= or head_only=True")
    max_side = p * (2048 // p) if max_side is None else max_side
    if max_side < p or max_side % p:
        raise OnnxExportError(f"max_side must be a multiple of {spec.name}'s patch size {p}, got {max_side}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    head = copy.deepcopy(head).cpu().eval()
    max_grid = max_side // p
    module: nn.Module
    if head_only:
        module, name, example = head, "tokens", torch.zeros(1, head.dim, 4, 5)
        dims = {2: torch.export.Dim("h", min=1, max=max_grid), 3: torch.export.Dim("w", min=1, max=max_grid)}
        dynamic = {"tokens": dims}
    else:
        assert backbone is not None  # checked above
        model: ViT = copy.deepcopy(backbone.model).cpu().float().eval()
        if (
            spec.position == "learned"
        ):  # a rotary embedding (DINOv3) is computed from the grid: it traces as is
            model.probeseg_position = _TablePosition(axis_tables(model, max_grid))
        module, name = _Segmenter(model, head).eval(), "image"
        example = torch.zeros(1, 3, 4 * p, 5 * p)
        h, w = torch.export.Dim("h", min=1, max=max_grid), torch.export.Dim("w", min=1, max=max_grid)
        dynamic = {"image": {2: p * h, 3: p * w}}
    with atomic_path(out) as tmp, torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            str(tmp),
            dynamo=True,
            input_names=[name],
            output_names=["logits"],
            dynamic_shapes=dynamic,
            opset_version=OPSET,
            verbose=False,
            external_data=False,
        )
        graph = onnx.load(str(tmp))
        graph.metadata_props.add(key=METADATA_KEY, value=json.dumps(onnx_metadata(meta, head_only, max_side)))
        onnx.save(graph, str(tmp))
    return out


def onnx_metadata(meta: HeadMeta, head_only: bool, max_side: int) -> dict:
    """What the graph's input and output are, and how to make the input from an image."""
    recipe = meta.features or feature_recipe(meta.backbone, meta.feature_config)
    if head_only:
        io = {"input": "tokens [1, C, h, w] float32 (see features.tokens)", "output": "logits [1, K, h, w]"}
    else:
        io = {
            "input": f"image [1, 3, H, W] float32, RGB in 0..1 minus image_mean, divided by image_std; H and W "
            f"multiples of {get_spec(meta.backbone).patch_size}, at most {max_side}",
            "output": "logits [1, K, H, W] (argmax over K: the class index)",
        }
    return {
        "format": "probeseg-onnx",
        "graph": "head" if head_only else "backbone+head",
        **io,
        "backbone": meta.backbone,
        "weights_id": meta.weights_id,
        "feature_version": meta.feature_version,
        "long_side": meta.long_side,
        "resolution": meta.feature_config.resolution,
        "classes": list(meta.classes),
        "class_details": meta.extra.get("classes"),  # colours and ids, from a web-app export
        "features": recipe,
    }
