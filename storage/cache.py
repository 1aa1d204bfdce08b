"""A small thread-safe in-process LRU of rendered label maps, keyed by (image id, label version).

The label version of an image increases in the same transaction as every change of its labels, so a
cached entry can never be stale, even when another process wrote the change. Entries are read-only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from .rasterize import Labels


class LabelCache:
    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[int, tuple[int, Labels]] = OrderedDict()  # image id -> (version, labels)
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, image_id: int, version: int) -> Labels | None:
        with self._lock:
            item = self._items.get(image_id)
            if item is None or item[0] != version:
                return None
            self._items.move_to_end(image_id)
            return item[1]

    def put(self, image_id: int, version: int, labels: Labels) -> None:
        codes = labels.codes
        if codes.flags.writeable:
            codes = codes.copy()
            codes.setflags(write=False)
        with self._lock:
            old = self._items.pop(image_id, None)
            if old is not None:
                if old[0] > version:  # never replace a newer entry by an older one
                    self._items[image_id] = old
                    return
                self._bytes -= old[1].codes.nbytes
            self._items[image_id] = (version, Labels(codes, labels.table))
            self._bytes += codes.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (_v, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted.codes.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
