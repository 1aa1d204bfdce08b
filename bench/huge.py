"""A 12,000 x 9,000 photo end to end, in a child process so that its peak RSS is its own
(`python -m bench.huge PNG OUT`): decode the PNG (core.imageio, as every import does), extract its features
at `auto` (overlapping tiles, batched), predict at full size with the boundary rule (core.predict, the path
of `predict` and the exports) and write the label PNG. Part `resolution` runs it and states the bound.

The child reports its peak RSS (VmHWM) after loading the backbone (the baseline) and each step's own peak
and seconds. It runs with glibc's default allocator, as the CLI does: the server's fixed mmap threshold
(webapp/server.py) lowers this peak by about 1.1 GiB but doubles `predict`'s time on such a photo (every
band's temporaries then come fresh from the OS)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def child(png: Path, out: Path, backbone_name: str, classes: int, seed: int) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from bench.timing import rss_bytes
    from core.backbone import load_backbone
    from core.config import FeatureConfig
    from core.features import FeatureExtractor
    from core.head import LinearHead
    from core.imageio import load_rgb
    from core.predict import Predictor

    backbone = load_backbone(backbone_name, weights="random", device="cpu")
    torch.manual_seed(seed)
    head = LinearHead(backbone.spec.embed_dim, classes)
    torch.nn.init.normal_(head.conv.weight, std=0.05)  # (a trained head costs the same; zeros would tie)
    _, baseline = rss_bytes()
    seconds, peaks = {}, {}

    def step(name: str, t0: float) -> None:  # its seconds and its own peak RSS (VmHWM, then reset)
        seconds[name] = time.perf_counter() - t0
        peaks[name] = rss_bytes()[1]
        Path("/proc/self/clear_refs").write_text("5")

    t0 = time.perf_counter()
    rgb = load_rgb(png)
    step("decode", t0)
    t0 = time.perf_counter()
    feats = FeatureExtractor(backbone, FeatureConfig.parse("auto")).extract(rgb)
    step("features", t0)
    t0 = time.perf_counter()
    predictor = Predictor()
    predictor.set_features(feats, rgb)
    labels = predictor.predict(head).labels
    step("predict", t0)
    t0 = time.perf_counter()
    Image.fromarray(labels).save(out, format="PNG", compress_level=1)
    step("write", t0)
    return {
        "size": list(rgb.shape[:2]),
        "grid": list(feats.grid),
        "classes_seen": int(np.unique(labels).size),
        "rss_baseline": baseline,
        "rss_peak": max(peaks.values()),
        "rss_peak_by_step": peaks,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.huge", description="one huge photo end to end")
    p.add_argument("png", type=Path)
    p.add_argument("out", type=Path, help="the label PNG to write; its JSON report goes beside it")
    p.add_argument("--backbone", default="dinov2_vits14")
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    result = child(args.png, args.out, args.backbone, args.classes, args.seed)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
