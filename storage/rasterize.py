"""Turning an image's annotation history into a label map. Pure functions, no database.

Conventions: a rendered map is `Labels`: uint8 codes (255 = nothing) plus a table code -> class id, so it
lives in *class-id space* (renaming or reordering classes never changes which pixels carry which class)
yet stays one byte per pixel; it is converted to current class indices (255 = unlabelled) at the end. A point at (x, y) covers the pixels (row i, column j) with
(j - x)^2 + (i - y)^2 <= r^2, plus always the pixel nearest to (x, y).

Order: masks first, then the scribble layer, then points on top; within a layer later over earlier.
An erase clears every mask, scribble and point pixel drawn before it (later edits draw over it again).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.labels import IGNORE

NONE = IGNORE  # code of 'no label'


@dataclass(frozen=True)
class Event:
    """Metadata of one history row (the raster bytes are loaded separately, only when needed)."""

    id: int
    seq: int
    kind: str
    class_id: int | None = None
    x: float | None = None
    y: float | None = None
    radius: float | None = None
    target_id: int | None = None
    class_map: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Folded:
    """Result of replaying undo/redo: the edits that currently apply, in order, and the redo stack
    (its last element is the next edit `redo` brings back)."""

    applied: tuple[Event, ...]
    redo_stack: tuple[Event, ...]
    removed_points: frozenset[int]

    @property
    def scribble(self) -> Event | None:
        for ev in reversed(self.applied):
            if ev.kind == "scribble":
                return ev
        return None

    @property
    def points(self) -> list[Event]:
        return [e for e in self.applied if e.kind == "point" and e.id not in self.removed_points]

    def active_ids(self) -> set[int]:
        ids = {e.id for e in self.applied}
        return ids - set(self.removed_points)


def fold(events: Iterable[Event]) -> Folded:
    """Replay a history (ordered by seq): edits push, undo pops to the redo stack, redo pops back,
    and a new edit clears the redo stack."""
    done: list[Event] = []
    redo: list[Event] = []
    for ev in sorted(events, key=lambda e: e.seq):
        if ev.kind == "undo":
            if done:
                redo.append(done.pop())
        elif ev.kind == "redo":
            if redo:
                done.append(redo.pop())
        else:
            done.append(ev)
            redo.clear()
    removed = frozenset(e.target_id for e in done if e.kind == "point_remove" and e.target_id is not None)
    return Folded(tuple(done), tuple(redo), removed)


def disk(shape: tuple[int, int], x: float, y: float, radius: float) -> tuple[slice, slice, np.ndarray]:
    """(row slice, column slice, boolean mask within them) of a point's disk, clipped to the image."""
    h, w = shape
    r = max(0.0, float(radius))
    i0, i1 = max(0, int(np.floor(y - r))), min(h, int(np.ceil(y + r)) + 1)
    j0, j1 = max(0, int(np.floor(x - r))), min(w, int(np.ceil(x + r)) + 1)
    ii = np.arange(i0, i1, dtype=np.float64)[:, None]
    jj = np.arange(j0, j1, dtype=np.float64)[None, :]
    mask = (jj - x) ** 2 + (ii - y) ** 2 <= r * r + 1e-9
    ci, cj = min(max(int(np.floor(y + 0.5)), 0), h - 1), min(max(int(np.floor(x + 0.5)), 0), w - 1)
    if i0 <= ci < i1 and j0 <= cj < j1:
        mask[ci - i0, cj - j0] = True
    return slice(i0, i1), slice(j0, j1), mask


@dataclass(frozen=True)
class Labels:
    """A label map in class-id space: codes (HxW uint8, 255 = unlabelled) and table[code] = class id."""

    codes: np.ndarray
    table: tuple[int, ...]

    def ids(self) -> np.ndarray:
        """int32 class ids, -1 where unlabelled (for tests and debugging)."""
        lut = np.full(256, -1, dtype=np.int32)
        lut[: len(self.table)] = self.table
        return lut[self.codes]

    def counts(self) -> dict[int, int]:
        """{class_id: pixels}."""
        hist = value_counts(self.codes, len(self.table))
        return {cid: int(hist[code]) for code, cid in enumerate(self.table) if hist[code]}

    def to_indices(self, index_of: Mapping[int, int]) -> np.ndarray:
        """uint8 current class indices (255 where unlabelled or the class no longer exists)."""
        lut = np.full(256, IGNORE, dtype=np.uint8)
        for code, cid in enumerate(self.table):
            idx = index_of.get(cid)
            if idx is not None:
                lut[code] = idx
        return lut[self.codes]


def _table(folded: Folded) -> tuple[tuple[int, ...], dict[int, int]]:
    ids: set[int] = set()
    for ev in folded.applied:
        if ev.class_id is not None and ev.kind == "point":
            ids.add(int(ev.class_id))
        ids.update(int(v) for v in ev.class_map.values() if v is not None)
    table = tuple(sorted(ids))
    if len(table) > NONE:
        raise ValueError(f"an image cannot use more than {NONE} classes")
    return table, {cid: code for code, cid in enumerate(table)}


def _lut(class_map: Mapping[str, int | None], code_of: Mapping[int, int]) -> np.ndarray:
    lut = np.full(256, NONE, dtype=np.uint8)
    for key, cid in class_map.items():
        if cid is not None and int(cid) in code_of:
            lut[int(key)] = code_of[int(cid)]
    return lut


def raster_to_ids(raster: np.ndarray, class_map: Mapping[str, int | None]) -> np.ndarray:
    """Class-indexed raster + {str(value): class_id} -> int32 class ids (-1 where unmapped)."""
    lut = np.full(256, -1, dtype=np.int32)
    for key, cid in class_map.items():
        if cid is not None:
            lut[int(key)] = int(cid)
    return lut[np.asarray(raster, dtype=np.uint8)]


def value_counts(arr: np.ndarray, n: int) -> np.ndarray:
    """How often each value 0..n-1 occurs in a uint8 array (a few comparisons beat bincount's int64 copy)."""
    if n > 16:
        return np.bincount(arr.ravel(), minlength=256)[:n]
    return np.array([np.count_nonzero(arr == v) for v in range(n)], dtype=np.int64)


def indices_to_class_map(raster: np.ndarray, class_ids: Sequence[int]) -> dict[str, int]:
    """{str(index): class_id} for every class index used in a raster (class_ids[i] = id of index i)."""
    counts = value_counts(np.asarray(raster, dtype=np.uint8), len(class_ids))
    return {str(v): int(class_ids[v]) for v in range(len(class_ids)) if counts[v]}


RasterLoader = Callable[[Event], np.ndarray]


def render_layers(shape: tuple[int, int], folded: Folded, load: RasterLoader) -> tuple[Labels, Labels]:
    """(label map, scribble layer) of an image, sharing one code table."""
    h, w = shape
    table, code_of = _table(folded)
    masks = np.full((h, w), NONE, dtype=np.uint8)
    points = np.full((h, w), NONE, dtype=np.uint8)
    scribble_ev = folded.scribble
    scribbles = np.full((h, w), NONE, dtype=np.uint8)
    active_points = {e.id for e in folded.points}
    for ev in folded.applied:
        if ev.kind == "mask":
            codes = _lut(ev.class_map, code_of)[load(ev)]
            np.copyto(masks, codes, where=codes != NONE)
        elif ev.kind == "erase":
            region = load(ev).astype(bool)
            masks[region] = NONE
            points[region] = NONE
            if scribble_ev is not None and ev.seq > scribble_ev.seq:
                scribbles[region] = NONE
        elif ev.kind == "scribble" and ev is scribble_ev:
            scribbles = _lut(ev.class_map, code_of)[load(ev)]
        elif ev.kind == "point" and ev.id in active_points and ev.class_id is not None:
            rows, cols, m = disk((h, w), float(ev.x or 0.0), float(ev.y or 0.0), float(ev.radius or 0.0))
            points[rows, cols][m] = code_of[int(ev.class_id)]
    out = masks
    np.copyto(out, scribbles, where=scribbles != NONE)
    np.copyto(out, points, where=points != NONE)
    return Labels(out, table), Labels(scribbles, table)


def paint_point(labels: Labels, ev: Event) -> Labels:
    """Incremental update: a new point goes on top of everything, so painting it on the previous map is exact."""
    if ev.class_id is None:
        return labels
    table = labels.table
    if ev.class_id not in table:
        if len(table) >= NONE:
            raise ValueError(f"an image cannot use more than {NONE} classes")
        table = table + (int(ev.class_id),)
    codes = labels.codes.copy()
    rows, cols, m = disk(codes.shape, float(ev.x or 0.0), float(ev.y or 0.0), float(ev.radius or 0.0))
    codes[rows, cols][m] = table.index(int(ev.class_id))
    return Labels(codes, table)


def render_scribble(shape: tuple[int, int], folded: Folded, load: RasterLoader) -> Labels:
    """Only the current scribble layer (with later erases applied): cheaper than `render_layers`."""
    table, code_of = _table(folded)
    ev = folded.scribble
    if ev is None:
        return Labels(np.full(shape, NONE, dtype=np.uint8), table)
    codes = _lut(ev.class_map, code_of)[load(ev)]
    for later in folded.applied:
        if later.kind == "erase" and later.seq > ev.seq:
            codes[load(later).astype(bool)] = NONE
    return Labels(codes, table)


def raster_to_indices(raster: np.ndarray, class_map: Mapping[str, int | None], index_of: Mapping[int, int]) -> np.ndarray:
    """Stored raster + its {str(value): class_id} -> current class indices (255 where unmapped / deleted)."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for key, cid in class_map.items():
        if cid is not None and int(cid) in index_of:
            lut[int(key)] = index_of[int(cid)]
    return lut[np.asarray(raster, dtype=np.uint8)]
