"""The one thread that runs the backbone.

Every forward pass of the frozen backbone goes through `FeatureWorker`: images are queued (interactive
requests jump the queue), computed in small batches and written to the `FeatureStore`. Callers never block
on the backbone unless they ask to wait for one image, so the UI stays responsive while a large upload is
being processed, and several sessions share one model without racing for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from core.cache import FeatureStore
from core.features import PatchFeatures
from engine.results import FeatureProgress

log = logging.getLogger(__name__)

HIGH, NORMAL = 0, 1


@dataclass(frozen=True)
class ImageSource:
    """What the worker needs to compute one image: its pixels (loaded lazily), its cache identity and the
    store of its project's resolution."""

    image_id: int
    name: str
    image_hash: str
    load: Callable[[], np.ndarray]
    store: FeatureStore


class FeatureWorker:
    """A background thread owning every backbone forward pass (see the module docstring)."""

    def __init__(self, batch: int = 4, on_done: Callable[[list[int]], None] | None = None):
        self.on_done = on_done  # called (in the worker thread) with the ids of images just computed
        self.batch = max(1, int(batch))
        self._cond = threading.Condition()
        self._pending: dict[int, tuple[int, int, ImageSource]] = {}  # image id -> (priority, seq, source)
        self._seq = 0
        self._running: dict[int, FeatureStore] = {}  # image id -> the store (resolution) it is computed for
        self._events: dict[int, threading.Event] = {}
        self._failed: dict[int, str] = {}
        self._done = 0
        self._total = 0
        self._current = ""
        self._started = 0.0  # when the queue last became non-empty (monotonic)
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="probeseg-features", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public
    def submit(self, sources: Iterable[ImageSource], priority: int = NORMAL) -> int:
        """Queue images whose features are not cached yet; returns how many were queued."""
        queued = 0
        with self._cond:
            for src in sources:
                if self._running.get(src.image_id) is src.store:
                    continue
                if src.image_id in self._pending:
                    old_prio, seq, old = self._pending[src.image_id]
                    if priority < old_prio or old.store is not src.store:  # (its project's new resolution)
                        self._pending[src.image_id] = (min(priority, old_prio), seq, src)
                    continue
                # Bulk requests (a restart queues every image) only look for the file, so finished images
                # are neither redone nor read; an interactive one reads it (a torn file is then redone).
                done = (
                    src.store.contains(src.image_hash)
                    if priority != HIGH
                    else src.store.cached(src.image_hash) is not None
                )
                if done:
                    continue
                self._failed.pop(src.image_id, None)
                if not self._pending and not self._running:
                    self._done = self._total = 0  # progress counts from the moment the queue was empty
                    self._started = time.monotonic()
                self._seq += 1
                self._pending[src.image_id] = (priority, self._seq, src)
                self._events.setdefault(src.image_id, threading.Event()).clear()
                self._total += 1
                queued += 1
            if queued or priority == HIGH:
                self._cond.notify_all()
        return queued

    def get(self, src: ImageSource, timeout: float | None = None) -> PatchFeatures | None:
        """Features of one image: from the cache, or computed next (ahead of background work).
        Waits at most `timeout` seconds (None = until done); returns None on timeout or failure."""
        feats = src.store.cached(src.image_hash)
        if feats is not None:
            return feats
        self.submit([src], priority=HIGH)
        with self._cond:
            event = self._events.setdefault(src.image_id, threading.Event())
            if src.image_id not in self._pending and src.image_id not in self._running:
                event.set()  # computed between our cache check and the submit
        event.wait(timeout)
        return src.store.cached(src.image_hash)

    def failure(self, image_id: int) -> str | None:
        with self._cond:
            return self._failed.get(image_id)

    def progress(self) -> FeatureProgress:
        with self._cond:
            return FeatureProgress(
                done=self._done,
                total=self._total,
                current=self._current,
                failed=tuple(sorted(self._failed.items())),
                seconds=time.monotonic() - self._started if self._total else 0.0,
            )

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the queue is empty (for tests and batch jobs); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._running, timeout)

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the thread
    def _take(self) -> list[ImageSource]:
        order = sorted(self._pending.items(), key=lambda kv: kv[1][:2])[: self.batch]
        prio = order[0][1][0]
        chosen = [src for _, (p, _, src) in order if p == prio]  # never delay a HIGH item for NORMAL ones
        if prio == HIGH:
            chosen = chosen[:1]  # an interactive request is answered alone, as fast as possible
        for src in chosen:
            del self._pending[src.image_id]
        self._running = {src.image_id: src.store for src in chosen}
        return chosen

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or bool(self._pending))
                if self._stop:
                    return
                batch = self._take()
                self._current = ", ".join(src.name for src in batch)
            self._run(batch)
            with self._cond:
                for src in batch:
                    if src.image_id not in self._pending:  # (else queued again at a new resolution)
                        self._events.setdefault(src.image_id, threading.Event()).set()
                self._done += len(batch)
                self._running = {}
                self._current = ""
                self._cond.notify_all()

    def _run(self, batch: list[ImageSource]) -> None:
        images, ok = [], []
        for src in batch:
            try:
                images.append(src.load())
                ok.append(src)
            except Exception as exc:  # a deleted or unreadable image must not stop the worker
                log.warning("features: cannot load image %s (%s): %s", src.image_id, src.name, exc)
                with self._cond:
                    self._failed[src.image_id] = f"{src.name}: {exc}"
        if not ok:
            return
        try:
            for store in {id(src.store): src.store for src in ok}.values():  # (a batch may mix resolutions)
                mine = [i for i, src in enumerate(ok) if src.store is store]
                store.get_many([images[i] for i in mine], [ok[i].image_hash for i in mine])
        except Exception as exc:
            log.exception("features: backbone failed on %s", ", ".join(s.name for s in ok))
            with self._cond:
                for src in ok:
                    self._failed[src.image_id] = f"{src.name}: feature extraction failed ({exc})"
            return
        if self.on_done is not None:
            try:
                self.on_done([src.image_id for src in ok])
            except Exception:
                log.exception("features: post-processing of %s failed", ", ".join(s.name for s in ok))
