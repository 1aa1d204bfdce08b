from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import torch

from core.cache import FeatureStore
from core.features import FeatureConfig, FeatureExtractor
from core.imageio import pixel_hash


def _store(bb, tmp_path, long_side=56, max_bytes=1 << 30):
    return FeatureStore(
        FeatureExtractor(bb, FeatureConfig(long_side=long_side)), tmp_path / "cache", max_bytes
    )


def test_cache_round_trip_is_float16_and_bit_identical(random_backbone, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    store = _store(random_backbone, tmp_path)
    first = store.get(rgb)
    assert first.tokens.dtype == torch.float16
    files = list((tmp_path / "cache").rglob("*.safetensors"))
    assert len(files) == 1
    fresh = _store(random_backbone, tmp_path)  # new process-like store: empty LRU, same disk
    again = fresh.get(rgb)
    assert fresh.hits == 1 and fresh.misses == 0
    assert torch.equal(again.tokens, first.tokens)
    assert again.original_size == (40, 60) and again.resized_size == first.resized_size
    assert fresh.cached(pixel_hash(rgb)) is not None
    assert fresh.contains(pixel_hash(rgb)) and not fresh.contains("another-image")


def test_key_depends_on_image_backbone_weights_and_size(random_backbone, tmp_path):
    a = _store(random_backbone, tmp_path, long_side=56)
    b = _store(random_backbone, tmp_path, long_side=70)
    assert a.key("h1") != a.key("h2")
    assert a.key("h1") != b.key("h1")
    other = FeatureStore(FeatureExtractor(random_backbone, FeatureConfig(56)), None)
    other.extractor.backbone = type(random_backbone)(
        random_backbone.spec, random_backbone.model, "file:x:123", random_backbone.device
    )
    assert other.key("h1") != a.key("h1")


def test_a_store_at_another_resolution_shares_the_folder_and_the_memory_bound(random_backbone, tmp_path):
    one = 384 * 4 * 4 * 2  # 4x4 grid of 384-d float16 tokens
    store = _store(random_backbone, tmp_path, long_side=56, max_bytes=int(2.5 * one))
    fine = store.at(FeatureConfig.parse("7px"))
    assert store.at(store.extractor.config) is store and store.at(FeatureConfig.parse("7px")) is fine
    assert fine.key("h1") != store.key("h1") and fine.cache_dir == store.cache_dir
    rgb = np.random.default_rng(2).integers(0, 255, (28, 28, 3), dtype=np.uint8)
    assert store.get(rgb).grid == (4, 4) and fine.get(rgb).grid == (4, 4)  # 28 px / 7 px a token
    big = np.random.default_rng(3).integers(0, 255, (56, 56, 3), dtype=np.uint8)
    assert fine.get(big).grid == (8, 8)
    assert store.memory_bytes == fine.memory_bytes <= 2.5 * one  # one LRU, one bound
    assert len(list(tmp_path.rglob("*.safetensors"))) == 3


def test_lru_stays_within_its_byte_bound(random_backbone, tmp_path):
    one = 384 * 4 * 4 * 2  # 4x4 grid of 384-d float16 tokens
    store = _store(random_backbone, tmp_path, max_bytes=int(2.5 * one))
    rng = np.random.default_rng(1)
    for _ in range(5):
        store.get(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8))
        assert store.memory_bytes <= 2.5 * one
    assert store.memory_bytes == 2 * one


def test_torn_cache_file_is_a_miss_not_an_error(random_backbone, tmp_path):
    rgb = np.zeros((28, 28, 3), np.uint8)
    store = _store(random_backbone, tmp_path)
    store.get(rgb)
    path = next((tmp_path / "cache").rglob("*.safetensors"))
    path.write_bytes(path.read_bytes()[:50])
    fresh = _store(random_backbone, tmp_path)
    assert fresh.get(rgb).grid == (4, 4) and fresh.misses == 1


def _worker(cache_dir: str, barrier, out):
    from core.backbone import load_backbone

    bb = load_backbone("dinov2_vits14", weights="random", device="cpu")
    store = FeatureStore(FeatureExtractor(bb, FeatureConfig(56)), cache_dir)
    rgb = np.full((56, 56, 3), 77, np.uint8)
    barrier.wait()
    for _ in range(5):
        store._write(store.key(pixel_hash(rgb)), store.extractor.extract(rgb))
    out.put(float(store.get(rgb).tokens.float().sum()))


def test_two_processes_writing_the_same_key(tmp_path):
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    sums = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sums[0] == sums[1]
    files = [p for p in Path(tmp_path).rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].suffix == ".safetensors"  # no temp files left behind


def test_the_one_lru_bounds_count_and_bytes():
    from core.lru import LRU

    by_count = LRU(capacity=2)
    for k in "abc":
        by_count.put(k, k.upper())
    assert by_count.get("a") is None and by_count.get("b") == "B" and len(by_count) == 2
    by_bytes = LRU(max_bytes=10, size=len)
    by_bytes.put("x", "12345")
    by_bytes.put("y", "123456")  # 11 bytes: the least recently used goes
    assert by_bytes.get("x") is None and by_bytes.nbytes == 6
    by_bytes.put("z", "x" * 11)  # larger than the bound on its own: not kept
    assert "z" not in by_bytes and by_bytes.get("y") == "123456"
    by_bytes.put("y", "1")  # replacing an entry updates the byte count
    assert by_bytes.nbytes == 1 and by_bytes.pop("y") == "1" and by_bytes.nbytes == 0
    by_count.discard(lambda k: k == "b")
    assert len(by_count) == 1 and by_count.get_or_compute("q", lambda: "Q") == "Q"
