"""The feature store: patch tokens cached on disk (float16 safetensors) and in a byte-bounded LRU.

Key = (image pixel hash, backbone, weights identity, input size, FEATURE_VERSION). Writes are atomic
(core.atomic: temp file, fsync, rename), so two processes computing the same key both end with one valid file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from core.atomic import atomic_path
from core.features import FeatureConfig, FeatureExtractor, PatchFeatures
from core.imageio import pixel_hash
from core.lru import LRU


class FeatureStore:
    """Get features for images, computing them only once per (image, backbone, weights, size)."""

    def __init__(
        self,
        extractor: FeatureExtractor,
        cache_dir: str | os.PathLike | None = None,
        max_memory_bytes: int = 512 * 2**20,
    ):
        self.extractor = extractor
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_memory_bytes = int(max_memory_bytes)
        self._lru: LRU[PatchFeatures] = LRU(max_bytes=self.max_memory_bytes, size=self._nbytes)
        self.hits = self.misses = 0
        # one store per resolution (`at`), so an image batch at one resolution stays one batch
        self._siblings: dict[FeatureConfig, FeatureStore] = {}

    def at(self, config: FeatureConfig) -> FeatureStore:
        """The store of the same backbone at another resolution (a project's own): the same folder and the
        same memory budget (one LRU; the keys tell the resolutions apart)."""
        if config == self.extractor.config:
            return self
        other = self._siblings.get(config)
        if other is None:
            other = FeatureStore(FeatureExtractor(self.extractor.backbone, config), self.cache_dir, 0)
            other.max_memory_bytes, other._lru = self.max_memory_bytes, self._lru
            other = self._siblings.setdefault(config, other)
        return other

    # -- keys and files -------------------------------------------------------------------------
    def key(self, image_hash: str) -> str:
        # The identity includes core.features.FEATURE_VERSION: entries of older code stop matching.
        ident = f"{image_hash}|{self.extractor.identity}"
        return hashlib.sha256(ident.encode()).hexdigest()

    def _path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.safetensors"

    def _read(self, key: str) -> PatchFeatures | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:  # sizes live in the header metadata
                tokens = f.get_tensor("tokens")
                meta = f.metadata()
            return PatchFeatures(
                tokens=tokens,
                resized_size=tuple(json.loads(meta["resized_size"])),
                original_size=tuple(json.loads(meta["original_size"])),
            )
        except Exception:  # a torn or foreign file is a cache miss, never an error for the user
            return None

    def _write(self, key: str, feats: PatchFeatures) -> None:
        path = self._path(key)
        if path is None:
            return
        meta = {
            "resized_size": json.dumps(list(feats.resized_size)),
            "original_size": json.dumps(list(feats.original_size)),
            "identity": self.extractor.identity,
        }
        with atomic_path(path) as tmp:
            save_file({"tokens": feats.tokens.contiguous()}, str(tmp), metadata=meta)

    # -- LRU --------------------------------------------------------------------------------------
    @staticmethod
    def _nbytes(feats: PatchFeatures) -> int:
        return feats.tokens.numel() * feats.tokens.element_size()

    def _remember(self, key: str, feats: PatchFeatures) -> None:
        if self._lru.get(key) is None:  # (a hit only refreshes the entry)
            self._lru.put(key, feats)

    @property
    def memory_bytes(self) -> int:
        return self._lru.nbytes

    def _lookup(self, key: str) -> PatchFeatures | None:
        feats = self._lru.get(key)
        if feats is not None:
            return feats
        feats = self._read(key)
        if feats is not None:
            self._remember(key, feats)
        return feats

    # -- public ----------------------------------------------------------------------------------
    def contains(self, image_hash: str) -> bool:
        """Whether features for this image exist (memory or disk), without reading them."""
        key = self.key(image_hash)
        if key in self._lru:
            return True
        path = self._path(key)
        return path is not None and path.is_file()

    def cached(self, image_hash: str) -> PatchFeatures | None:
        """Features if already computed (memory or disk), else None. Never runs the backbone."""
        return self._lookup(self.key(image_hash))

    def get(self, rgb: np.ndarray, image_hash: str | None = None) -> PatchFeatures:
        return self.get_many([rgb], [image_hash] if image_hash else None)[0]

    def get_many(
        self,
        images: Sequence[np.ndarray],
        image_hashes: Sequence[str] | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> list[PatchFeatures]:
        """Features for many images; cache misses are computed in batches and written back."""
        hashes = list(image_hashes) if image_hashes is not None else [pixel_hash(im) for im in images]
        keys = [self.key(h) for h in hashes]
        out: list[PatchFeatures | None] = [self._lookup(k) for k in keys]
        todo = [i for i, f in enumerate(out) if f is None]
        self.hits += len(out) - len(todo)
        self.misses += len(todo)
        if progress is not None and len(out) > len(todo):
            progress(len(out) - len(todo))
        if todo:
            computed = self.extractor.extract_many([images[i] for i in todo], progress=progress)
            for i, full in zip(todo, computed, strict=True):
                # Round to float16 now, so fresh and cached features are bit-identical (reproducible heads).
                feats = dataclasses.replace(full, tokens=full.tokens.to(torch.float16))
                self._write(keys[i], feats)
                self._remember(keys[i], feats)
                out[i] = feats
        return out  # type: ignore[return-value]
