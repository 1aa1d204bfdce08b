"""The ONE in-memory LRU: thread-safe, bounded by entry count and/or by bytes (an entry's size is the
caller's `size(value)`). Feature tokens (core.cache), rendered label maps (storage.cache) and the engine's
predictions, thumbnails and views all use it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class LRU(Generic[V]):
    def __init__(
        self,
        capacity: int | None = None,
        max_bytes: int | None = None,
        size: Callable[[V], int] = lambda _v: 0,
    ):
        """`capacity`: most entries (None: no count bound); `max_bytes`: most summed `size` (None: none).
        An entry larger than `max_bytes` on its own is not kept."""
        self.capacity = None if capacity is None else max(1, int(capacity))
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self._size = size
        self._data: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            self._data.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: V) -> V:
        n = int(self._size(value))
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if self.max_bytes is not None and n > self.max_bytes:
                return value
            self._data[key] = (value, n)
            self._bytes += n
            while (self.capacity is not None and len(self._data) > self.capacity) or (
                self.max_bytes is not None and self._bytes > self.max_bytes
            ):
                _, (_v, dropped) = self._data.popitem(last=False)
                self._bytes -= dropped
        return value

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        value = self.get(key)
        return value if value is not None else self.put(key, compute())

    def pop(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._data.pop(key, None)
            if item is None:
                return None
            self._bytes -= item[1]
            return item[0]

    def discard(self, predicate: Callable[[Any], bool]) -> None:
        with self._lock:
            for key in [k for k in self._data if predicate(k)]:
                self._bytes -= self._data.pop(key)[1]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0
