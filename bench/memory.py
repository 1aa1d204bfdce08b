"""Part 5: memory while serving a project of many cached images.

A child process (`python -m bench.memory ...`, so its peak RSS is its own) loads the backbone, fills a disk
feature cache for N images, then serves them the way the app does: every image's features through a
`FeatureStore` with the default byte-bounded LRU, a prediction at full resolution for each, then a second
pass in random order. It reports peak RSS (VmHWM, reset after the cache is filled), the cache bytes per
image on disk and in memory, and whether the LRU's byte count ever exceeded its bound.

Filling the cache with the real backbone would take ~0.3 s per image on this CPU, so the fill uses an
extractor with the real one's identity and output shape that draws seeded random tokens; the serving phase
then uses the real `FeatureExtractor` and finds every image in the cache (asserted: no backbone runs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.config import BenchConfig
from bench.report import Report, mib, seconds
from bench.timing import rss_bytes

log = logging.getLogger("bench")


MMAP_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}  # glibc: fixed 128 KiB mmap threshold (no dynamic raise)


def _run_child(cfg: BenchConfig, extra_env: dict | None = None) -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    out = root / "result.json"
    cmd = [
        sys.executable,
        "-m",
        "bench.memory",
        "--images",
        str(cfg.memory_images),
        "--size",
        str(cfg.memory_size),
        "--lru-bytes",
        str(cfg.memory_lru_bytes),
        "--backbone",
        cfg.backbone,
        "--long-side",
        str(cfg.long_side),
        "--train-images",
        str(cfg.memory_train_images),
        "--classes",
        str(cfg.num_classes),
        "--seed",
        str(cfg.seed),
        "--cache-dir",
        str(root / "cache"),
        "--out",
        str(out),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | (extra_env or {})
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=1800,
            env=env,
            cwd=Path(__file__).resolve().parents[1],
        )
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"memory child failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        return json.loads(out.read_text())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_memory(cfg: BenchConfig, report: Report) -> None:
    r = _run_child(cfg)
    diag = None
    if cfg.memory_diagnostic:
        log.info("memory: diagnostic rerun with %s", MMAP_ENV)
        diag = _run_child(cfg, MMAP_ENV)
    n = r["images"]
    s = report.section(
        "memory",
        f"5. Memory serving a project of {n:,} cached images ({cfg.memory_size}x{cfg.memory_size}, {cfg.backbone} "
        "tokens)",
        ["quantity", "value"],
    )
    rows = [
        ("RSS after imports and backbone load (baseline)", mib(r["rss_baseline"])),
        ("peak RSS while serving (VmHWM)", mib(r["rss_peak_serving"])),
        ("peak RSS - baseline", mib(r["rss_peak_serving"] - r["rss_baseline"])),
        ("LRU bound (FeatureStore max_memory_bytes)", mib(r["lru_bound"])),
        ("largest LRU byte count seen", mib(r["lru_max_seen"])),
        ("LRU bound held after every access", "yes" if r["lru_held"] else "NO"),
        ("images resident in the LRU at the end", f"{r['lru_entries_end']:,} of {n:,}"),
        (
            "cache bytes per image on disk (safetensors, float16)",
            f"{r['disk_bytes_per_image'] / 2**10:,.1f} KiB",
        ),
        ("cache bytes per image in memory (token tensor)", f"{r['memory_bytes_per_image'] / 2**10:,.1f} KiB"),
        ("backbone runs while serving (must be 0)", str(r["misses_serving"])),
        ("serve one image (features + full-res prediction), median", seconds(r["serve_median_s"])),
        ("features from disk cache (LRU miss), median", seconds(r["disk_hit_median_s"])),
        ("features from the LRU, median", seconds(r["memory_hit_median_s"])),
        ("peak RSS while filling the cache", mib(r["rss_peak_fill"])),
    ]
    if diag is not None:
        rows.append(
            (
                "diagnostic: peak RSS - baseline with MALLOC_MMAP_THRESHOLD_=131072",
                mib(diag["rss_peak_serving"] - diag["rss_baseline"]),
            )
        )
    for name, value in rows:
        s.add_row([name, value])
    s.records.append(r)
    if diag is not None:
        s.records.append({"diagnostic_env": MMAP_ENV, **diag})
    s.notes.append(
        f"Child process: fill the disk cache for {n:,} distinct images (seeded random tokens with the real "
        "backbone's identity and shape), reset the peak-RSS counter, then serve: pass 1 fetches every image's "
        "features and predicts at full resolution (core.predict.predict) with a head trained on "
        f"{cfg.memory_train_images} labelled images; pass 2 fetches all images again in random order."
    )
    if diag is not None:
        s.notes.append(
            "Diagnostic row: the same child with glibc's mmap threshold pinned at 128 KiB. glibc raises the "
            "threshold dynamically after large blocks are freed (prediction temporaries of a few MiB each), after "
            "which the 768 KiB token tensors and those temporaries share the heap and freed space is not "
            "returned: a large gap between the two rows is allocator fragmentation, not data the app holds."
        )
    growth = r["rss_peak_serving"] - r["rss_baseline"]
    dgrowth = diag["rss_peak_serving"] - diag["rss_baseline"] if diag is not None else None
    report.target(
        "LRU byte bound holds",
        "never above bound",
        mib(r["lru_max_seen"]) + " max",
        r["lru_held"],
        f"bound {mib(r['lru_bound'])}",
    )
    # Judged as the server runs: webapp/server.py pins glibc's mmap threshold at start (the diagnostic child).
    served, served_growth = (diag, dgrowth) if diag is not None else (r, growth)
    limit = 1.25 * r["lru_bound"]
    report.target(
        f"peak RSS serving {n:,} cached images",
        "growth <= LRU bound + 25% (server's allocator setting)",
        mib(served["rss_peak_serving"]),
        served_growth <= limit,
        f"growth over baseline {mib(served_growth)} (limit {mib(limit)})"
        + (
            f"; without the pinned mmap threshold the growth is {mib(growth)}"
            if diag is not None
            else "; measured without the server's pinned mmap threshold (diagnostic child off)"
        ),
    )


# -- the child --------------------------------------------------------------------------------------


def _images(n: int, size: int, classes: int, seed: int):
    """n distinct images, cheaply: 8 synthetic scenes, each copy stamped with its index in the first row."""
    from bench import synth

    bases = [synth.make_scene(size, size, classes, seed + i) for i in range(min(8, n))]

    def get(i: int) -> tuple[np.ndarray, np.ndarray]:
        scene = bases[i % len(bases)]
        rgb = scene.rgb.copy()
        stamp = np.frombuffer(int(i).to_bytes(6, "little"), np.uint8)
        rgb[0, :2, :] = stamp.reshape(2, 3)
        return rgb, scene.gt

    return get


def child(args: argparse.Namespace) -> dict:
    import torch

    from core.backbone import load_backbone
    from core.cache import FeatureStore
    from core.features import FeatureConfig, FeatureExtractor, PatchFeatures, resized_size_for
    from core.imageio import pixel_hash
    from core.predict import predict
    from core.train import LabelledImage, TrainConfig, train_head

    class RandomTokens(FeatureExtractor):
        """The real extractor's identity and output shape; seeded random tokens instead of a forward."""

        def extract_many(self, images, progress=None):
            out = []
            for rgb in images:
                p = self.backbone.spec.patch_size
                rh, rw = resized_size_for(rgb.shape[:2], self.config.long_side, p)
                g = torch.Generator().manual_seed(int(rgb[0, :2].sum()) + rgb.size)
                t = torch.randn(self.backbone.spec.embed_dim, rh // p, rw // p, generator=g)
                out.append(PatchFeatures(tokens=t, resized_size=(rh, rw), original_size=tuple(rgb.shape[:2])))
            return out

    backbone = load_backbone(args.backbone, weights="random", device="cpu")
    fcfg = FeatureConfig(long_side=args.long_side)
    get = _images(args.images, args.size, args.classes, args.seed)
    hashes = []
    filler = FeatureStore(RandomTokens(backbone, fcfg), cache_dir=args.cache_dir, max_memory_bytes=0)
    for i in range(args.images):
        rgb, _ = get(i)
        h = pixel_hash(rgb)
        hashes.append(h)
        filler.get(rgb, h)
    _, peak_fill = rss_bytes()
    files = list(Path(args.cache_dir).rglob("*.safetensors"))
    disk_per_image = sum(p.stat().st_size for p in files) / max(1, len(files))
    del filler
    try:  # reset VmHWM so the serving peak is the serving phase's own
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    store = FeatureStore(
        FeatureExtractor(backbone, fcfg), cache_dir=args.cache_dir, max_memory_bytes=args.lru_bytes
    )
    baseline, _ = rss_bytes()
    # A head trained on the first few images, as a project would have.
    labelled = []
    for i in range(min(args.train_images, args.images)):
        rgb, gt = get(i)
        lab = np.full(gt.shape, 255, np.uint8)
        lab[::16, ::16] = gt[::16, ::16]
        labelled.append(LabelledImage(store.get(rgb, hashes[i]), lab))
    head = train_head(labelled, args.classes, TrainConfig(max_iter=20)).head
    del labelled
    lru_max = store.memory_bytes
    held = True
    serve_t, disk_t, mem_t = [], [], []
    misses0 = store.misses
    for i in range(args.images):
        rgb, _ = get(i)
        t0 = time.perf_counter()
        was_cached = store.key(hashes[i]) in getattr(store, "_lru", {})
        feats = store.get(rgb, hashes[i])
        t1 = time.perf_counter()
        predict(head, feats)
        serve_t.append(time.perf_counter() - t0)
        (mem_t if was_cached else disk_t).append(t1 - t0)
        lru_max = max(lru_max, store.memory_bytes)
        held &= store.memory_bytes <= args.lru_bytes
    order = np.random.default_rng(args.seed).permutation(args.images)
    for i in order:
        rgb, _ = get(int(i))
        t0 = time.perf_counter()
        was_cached = store.key(hashes[i]) in getattr(store, "_lru", {})
        store.get(rgb, hashes[i])
        (mem_t if was_cached else disk_t).append(time.perf_counter() - t0)
        lru_max = max(lru_max, store.memory_bytes)
        held &= store.memory_bytes <= args.lru_bytes
    current, peak = rss_bytes()
    feats = store.get(*get(0)[:1], hashes[0])
    return {
        "images": args.images,
        "rss_baseline": baseline,
        "rss_peak_serving": peak,
        "rss_end": current,
        "rss_peak_fill": peak_fill,
        "peak_reset": reset,
        "lru_bound": args.lru_bytes,
        "lru_max_seen": lru_max,
        "lru_held": bool(held),
        "lru_entries_end": len(getattr(store, "_lru", ())),
        "disk_bytes_per_image": disk_per_image,
        "memory_bytes_per_image": feats.tokens.numel() * feats.tokens.element_size(),
        "misses_serving": store.misses - misses0,
        "serve_median_s": float(np.median(serve_t)),
        "disk_hit_median_s": float(np.median(disk_t)) if disk_t else None,
        "memory_hit_median_s": float(np.median(mem_t)) if mem_t else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description="memory benchmark child process")
    p.add_argument("--images", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--lru-bytes", type=int, required=True)
    p.add_argument("--backbone", default="dinov2_vits14")
    p.add_argument("--long-side", type=int, default=448)
    p.add_argument("--train-images", type=int, default=20)
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    result = child(args)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
