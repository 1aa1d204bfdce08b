"""A small thread-safe in-process LRU of rendered label maps, keyed by (image id, label version).

The label version of an image increases in the same transaction as every change of its labels, so a
cached entry can never be stale, even when another process wrote the change. Entries are read-only.
"""

from __future__ import annotations

from core.lru import LRU

from .rasterize import Labels


class LabelCache:
    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        # image id -> (label version, labels); sized by the label raster
        self._lru: LRU[tuple[int, Labels]] = LRU(max_bytes=max_bytes, size=lambda item: item[1].codes.nbytes)

    def get(self, image_id: int, version: int) -> Labels | None:
        item = self._lru.get(image_id)
        return None if item is None or item[0] != version else item[1]

    def put(self, image_id: int, version: int, labels: Labels) -> None:
        codes = labels.codes
        if codes.flags.writeable:
            codes = codes.copy()
            codes.setflags(write=False)
        old = self._lru.get(image_id)
        if old is not None and old[0] > version:  # never replace a newer entry by an older one
            return
        self._lru.put(image_id, (version, Labels(codes, labels.table)))

    def clear(self) -> None:
        self._lru.clear()
