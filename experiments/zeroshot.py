"""Zero-shot vision-language labels, the paper's cheapest kind: dense masks from the class names alone.

MaskCLIP (Zhou, Loy and Dai, ECCV 2022): CLIP's image tower pools its patch tokens through the last attention
layer into one image embedding, so the patch tokens themselves do not live in the text space. MaskCLIP drops
the query-key attention of the last layer and keeps, for every patch, its value embedding passed through the
layer's output projection, the final layer norm and the image projection. Those dense embeddings are matched
(cosine similarity) against text embeddings of the class names, each averaged over a prompt ensemble
("a photo of a {}.", ...). The arg-max class at every pixel (bilinear upsampling of the patch scores) is the
label; `min_confidence` can leave uncertain pixels unlabelled (255) and `denoise` removes classes whose best
patch probability in an image stays below a threshold (MaskCLIP's prompt denoising).

A class may have several names: its score is the best over them. The VOC "background" class uses a list of
stuff words (sky, wall, grass, ...) as many open-vocabulary segmenters do.

Weights come through open_clip: `hub` (the Hugging Face cache; offline with HF_HUB_OFFLINE=1 once cached), a
local open_clip checkpoint file, or `random` (tests only). The default is MaskCLIP's ViT-B/16 from OpenAI.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.backbone import WeightsUnavailableError, _file_digest, resolve_device
from core.labels import IGNORE, write_label_png
from experiments.config import (  # noqa: F401  (re-exported)
    DEFAULT_MODEL,
    DEFAULT_TAG,
    TEMPLATES,
    ZeroShotConfig,
    ZeroShotError,
)

log = logging.getLogger(__name__)

RANDOM_SEED = 0

# Class names written as words (PASCAL VOC's ids run words together) and the background's stuff words.
NATURAL_NAMES = {
    "aeroplane": ("aeroplane", "airplane"),
    "diningtable": ("dining table", "table"),
    "pottedplant": ("potted plant",),
    "tvmonitor": ("tv monitor", "television"),
    "motorbike": ("motorbike", "motorcycle"),
    "person": ("person", "people"),
}
BACKGROUND_WORDS: tuple[str, ...] = (
    "sky",
    "wall",
    "tree",
    "wood",
    "grass",
    "road",
    "sea",
    "river",
    "mountain",
    "sand",
    "desk",
    "bed",
    "building",
    "cloud",
    "lamp",
    "door",
    "window",
    "wardrobe",
    "ceiling",
    "shelf",
    "curtain",
    "stair",
    "floor",
    "hill",
    "rail",
    "fence",
    "ground",
    "field",
)


class ClipWeightsUnavailableError(WeightsUnavailableError):
    pass


def class_prompts(
    classes: Sequence[str], synonyms: Mapping[str, Sequence[str]] | None = None
) -> list[tuple[str, ...]]:
    """The names each class is described by: user synonyms, else VOC's natural names, else the name itself
    (underscores as spaces); a class called background gets the stuff words."""
    out = []
    for name in classes:
        if synonyms and name in synonyms:
            words = tuple(synonyms[name])
        elif name.strip().lower() in ("background", "bg", "_background_"):
            words = BACKGROUND_WORDS
        else:
            words = NATURAL_NAMES.get(name, (name.replace("_", " "),))
        if not words:
            raise ZeroShotError(f"class {name!r} has no prompt words")
        out.append(tuple(words))
    return out


def _hub_help(model: str, tag: str, reason: str) -> str:
    return (
        f"could not load pretrained CLIP {model} ({tag}) weights through open_clip ({reason}).\n"
        "Fix it with one of:\n"
        f"  1. --clip-weights hub with network access once: open_clip downloads the {tag} weights of {model} into "
        "the Hugging Face cache (HF_HOME); later runs work offline with HF_HUB_OFFLINE=1;\n"
        f"  2. --clip-weights /path/to/open_clip_model.safetensors (an open_clip checkpoint of {model});\n"
        "  3. --clip-weights random for architecture-true random weights (testing only: labels are meaningless)."
    )


class ClipDense:
    """A frozen open_clip model that labels images densely from class names (MaskCLIP)."""

    def __init__(
        self, model: torch.nn.Module, tokenizer, model_name: str, weights_id: str, device: torch.device
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.weights_id = weights_id
        self.device = device
        visual = model.visual
        from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

        if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None:
            raise ZeroShotError(
                f"{model_name}: dense MaskCLIP features need an open_clip VisionTransformer image tower without "
                "attentional pooling (e.g. ViT-B-16, ViT-B-32, ViT-L-14)"
            )
        last = visual.transformer.resblocks[-1]
        if not isinstance(last, ResidualAttentionBlock) or not isinstance(
            last.attn, torch.nn.MultiheadAttention
        ):
            raise ZeroShotError(
                f"{model_name}: unsupported attention block; use a standard ViT such as ViT-B-16"
            )
        cfg = getattr(visual, "preprocess_cfg", {}) or {}
        self.mean = torch.tensor(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))).view(3, 1, 1)
        self.std = torch.tensor(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))).view(3, 1, 1)
        self.patch = int(visual.patch_size[0])

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.device.type == "cuda" else None

    # -- text ----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def text_embeddings(
        self, prompts: Sequence[Sequence[str]], templates: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For each class's names: the template-averaged, normalised text embedding of every name.
        Returns ([S, D] embeddings, [S] owning class index)."""
        texts, owner = [], []
        for k, words in enumerate(prompts):
            for word in words:
                texts += [t.format(word) for t in templates]
                owner.append(k)
        feats = []
        for start in range(0, len(texts), 256):
            tokens = self.tokenizer(texts[start : start + 256]).to(self.device)
            feats.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1))
        per_word = torch.cat(feats).view(len(owner), len(templates), -1).mean(1)
        return F.normalize(per_word, dim=-1), torch.tensor(owner, device=self.device)

    # -- image ---------------------------------------------------------------------------------------
    def preprocess(self, rgb: np.ndarray, long_side: int) -> torch.Tensor:
        H, W = rgb.shape[:2]
        scale = long_side / max(H, W)
        h = max(self.patch, int(round(H * scale / self.patch)) * self.patch)
        w = max(self.patch, int(round(W * scale / self.patch)) * self.patch)
        img = Image.fromarray(rgb).resize((w, h), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - self.mean) / self.std

    def tokens_before_last_block(self, batch: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] normalised -> [B, 1 + N, C] tokens entering the last transformer block, with the
        position embedding interpolated (bicubic) to the input's patch grid."""
        v = self.model.visual
        b, _, H, W = batch.shape
        if H % self.patch or W % self.patch:
            raise ZeroShotError(f"input size {H}x{W} is not a multiple of the patch size {self.patch}")
        gh, gw = H // self.patch, W // self.patch
        x = v.conv1(batch).flatten(2).transpose(1, 2)  # [B, N, C]
        pos = v.positional_embedding.to(x.dtype)
        g0 = int(round((pos.shape[0] - 1) ** 0.5))
        grid_pos = pos[1:].reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
        if (gh, gw) != (g0, g0):
            grid_pos = F.interpolate(grid_pos.float(), size=(gh, gw), mode="bicubic", align_corners=False).to(
                x.dtype
            )
        grid_pos = grid_pos.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
        cls = (v.class_embedding.to(x.dtype) + pos[0]).view(1, 1, -1).expand(b, -1, -1)
        x = v.ln_pre(torch.cat([cls, x + grid_pos], dim=1))
        batch_first = getattr(v.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        for blk in v.transformer.resblocks[:-1]:
            x = blk(x)
        return x if batch_first else x.transpose(0, 1)

    @torch.inference_mode()
    def dense_embeddings(self, batch: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] normalised -> [B, D, H/p, W/p] unit-norm patch embeddings in the text space."""
        v = self.model.visual
        batch = batch.to(self.device)
        b, _, H, W = batch.shape
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            x = self.tokens_before_last_block(batch)
            last = v.transformer.resblocks[-1]
            attn = last.attn
            dim = attn.embed_dim
            w_v = attn.in_proj_weight[2 * dim :]
            b_v = attn.in_proj_bias[2 * dim :] if attn.in_proj_bias is not None else None
            # MaskCLIP: the value path of the last attention layer, without query-key attention, then the
            # output projection, the final norm and the image projection into the text space.
            val = attn.out_proj(F.linear(last.ln_1(x[:, 1:]), w_v, b_v))
            emb = v.ln_post(val) @ v.proj
        emb = F.normalize(emb.float(), dim=-1)
        return emb.transpose(1, 2).reshape(b, -1, H // self.patch, W // self.patch)

    @torch.inference_mode()
    def class_logits(
        self,
        rgb: np.ndarray,
        text: tuple[torch.Tensor, torch.Tensor],
        num_classes: int,
        config: ZeroShotConfig,
    ) -> torch.Tensor:
        """[K, h, w] scores (temperature x cosine; best over each class's names) on the patch grid."""
        emb = self.dense_embeddings(self.preprocess(rgb, config.long_side).unsqueeze(0))[0]  # [D, h, w]
        t, owner = text
        sims = torch.einsum("sd,dhw->shw", t, emb) * config.temperature
        out = torch.full((num_classes, *sims.shape[1:]), -torch.inf, device=sims.device)
        for k in range(num_classes):  # a class scores its best name
            out[k] = sims[owner == k].amax(0)
        return out

    @torch.inference_mode()
    def label(
        self,
        rgb: np.ndarray,
        text: tuple[torch.Tensor, torch.Tensor],
        num_classes: int,
        config: ZeroShotConfig,
    ) -> np.ndarray:
        logits = self.class_logits(rgb, text, num_classes, config)
        if config.denoise > 0:
            best = logits.softmax(0).flatten(1).amax(1)
            weak = best < config.denoise
            if weak.all():
                weak[best.argmax()] = False
            logits[weak] = -torch.inf
        H, W = rgb.shape[:2]
        up = F.interpolate(
            logits.unsqueeze(0).clamp(min=-1e4), size=(H, W), mode="bilinear", align_corners=False
        )[0]
        prob = up.softmax(0)
        conf, labels = prob.max(0)
        labels = labels.to(torch.uint8)
        if config.min_confidence > 0:
            labels[conf < config.min_confidence] = IGNORE
        return labels.cpu().numpy()


def load_clip(
    model: str = DEFAULT_MODEL,
    weights: str = "hub",
    pretrained: str = DEFAULT_TAG,
    device: str | torch.device | None = "auto",
) -> ClipDense:
    """Build a frozen open_clip model for MaskCLIP labels. `weights`: "hub", "random" or a checkpoint path."""
    try:
        import open_clip
    except ImportError:
        raise ZeroShotError(
            "zero-shot labels need open_clip: pip install 'probeseg[clip]' (or 'open_clip_torch>=2.24,<4')"
        ) from None
    if model not in open_clip.list_models():
        vit = [m for m in open_clip.list_models() if m.startswith("ViT-") and "SigLIP" not in m][:12]
        raise ZeroShotError(
            f"unknown CLIP model {model!r}; e.g. {', '.join(vit)} (see open_clip.list_models())"
        )
    dev = resolve_device(device)
    quick_gelu = pretrained == "openai" and not model.endswith("-quickgelu")
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            net = _quiet_create(open_clip, model, None, quick_gelu)
        weights_id = f"random:seed={RANDOM_SEED}"
    elif weights == "hub":
        tags = open_clip.list_pretrained_tags_by_model(model)
        if pretrained not in tags:
            raise ZeroShotError(
                f"{model} has no pretrained tag {pretrained!r}; available: {', '.join(tags) or 'none'}"
            )
        try:
            net = _quiet_create(open_clip, model, pretrained, False)
        except Exception as exc:
            raise ClipWeightsUnavailableError(
                _hub_help(model, pretrained, f"{type(exc).__name__}: {exc}".splitlines()[0])
            ) from None
        weights_id = f"hub:open_clip/{model}/{pretrained}"
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ClipWeightsUnavailableError(
                _hub_help(model, pretrained, f"weights file {path} does not exist")
            )
        try:
            net = _quiet_create(open_clip, model, str(path), quick_gelu)
        except Exception as exc:
            raise ClipWeightsUnavailableError(
                f"{path}: not an open_clip checkpoint of {model} ({str(exc).splitlines()[0]}); pass the matching "
                "--clip-model or an open_clip_model.safetensors file"
            ) from None
        weights_id = f"file:{path.name}:{_file_digest(path)}"
    net.eval().requires_grad_(False).to(dev)
    return ClipDense(net, open_clip.get_tokenizer(model), model, weights_id, dev)


def _quiet_create(open_clip, model: str, pretrained: str | None, quick_gelu: bool):
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip logs "initialized randomly" at WARNING on the root logger
    try:
        return open_clip.create_model(model, pretrained=pretrained, force_quick_gelu=quick_gelu)
    finally:
        root.setLevel(level)


def make_zeroshot_labels(
    dataset,
    split: str,
    out_dir: str | os.PathLike,
    clip: ClipDense,
    config: ZeroShotConfig = ZeroShotConfig(),
    synonyms: Mapping[str, Sequence[str]] | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    """Label every image of a split from the class names alone; writes `<out>/<id>.png` and `labels.json`
    (with the labels' quality against the ground truth where the ground truth exists)."""
    from experiments.labelgen import LabelQuality, _clean, write_manifest

    ids = dataset.ids(split)[:limit] if limit else dataset.ids(split)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k = len(dataset.classes)
    prompts = class_prompts(dataset.classes, synonyms)
    text = clip.text_embeddings(prompts, config.templates)
    quality = LabelQuality(k)
    measured = 0
    start = time.perf_counter()
    iterator = ids
    if progress:
        from tqdm import tqdm

        iterator = tqdm(ids, desc="zero-shot labels", unit="img", dynamic_ncols=True)
    for image_id in iterator:
        rgb = dataset.image(image_id)
        labels = clip.label(rgb, text, k, config)
        write_label_png(out / f"{image_id}.png", labels)
        gt_path = dataset.root / "SegmentationClass" / f"{image_id}.png"
        if gt_path.is_file():
            quality.update(dataset.ground_truth(image_id, labels.shape), labels)
            measured += 1
    manifest = {
        "kind": "zeroshot",
        "split": split,
        "images": len(ids),
        "clip_model": clip.model_name,
        "clip_weights": clip.weights_id,
        "config": asdict(config),
        "prompts": {name: list(words) for name, words in zip(dataset.classes, prompts, strict=True)},
        "classes": list(dataset.classes),
        "quality": _clean(quality.summary()) if measured else None,
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_manifest(out, manifest)
    return manifest


def read_synonyms(path: str | os.PathLike) -> dict[str, list[str]]:
    """A JSON file {"class name": ["word", ...]} overriding the words a class is prompted with."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ZeroShotError(f"{path}: not a readable JSON file of class prompts ({exc})") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(w, str) for w in v) for v in data.values()
    ):
        raise ZeroShotError(f'{path}: expected {{"class name": ["word", ...], ...}}')
    return data
