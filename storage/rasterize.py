"""Turning an image's annotation history into a label map. Pure functions, no database.

Conventions: a rendered map is `Labels`: uint8 codes (255 = nothing) plus a table code -> class id, so it
lives in *class-id space* (renaming or reordering classes never changes which pixels carry which class)
yet stays one byte per pixel; it is converted to current class indices (255 = unlabelled) at the end. A point
at (x, y) covers the pixels (row i, column j) with
(j - x)^2 + (i - y)^2 <= r^2, plus always the pixel nearest to (x, y).

A stroke (polyline `path` with radius r) covers the pixels whose centre lies within r of the polyline,
plus always the pixel nearest to each vertex (`stroke_mask`), so the server, not the browser, decides
which pixels a stroke labels.

Order: masks first, then the scribble layer (the latest whole-layer `scribble` raster with the strokes
drawn after it; a new whole layer replaces the strokes before it), then points on top; within a layer
later over earlier. An erase (a region raster, or a polyline with a radius) clears every mask, scribble,
stroke and point pixel drawn before it (later edits draw over it again). `noop` rows only record the
op_id of an operation that changed nothing (an undo with nothing to undo), so a retry stays a no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from core.labels import IGNORE
from storage.errors import ValidationError

NONE = IGNORE  # code of 'no label'


Owner = tuple[str, str | None]  # (author, client: a browser tab's id or None) of an edit


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
    path: tuple[tuple[float, float], ...] | None = None  # polyline of a stroke or erase stroke
    owner: Owner = ("", None)  # who made it: (author, client), see `fold`


@dataclass(frozen=True)
class Folded:
    """Result of replaying undo/redo: the edits that currently apply, in order, and each owner's redo
    stack (its last element is the next edit that owner's `redo` brings back)."""

    applied: tuple[Event, ...]
    redo: Mapping[Owner, tuple[Event, ...]]
    removed_points: frozenset[int]

    def undo_target(self, owner: Owner) -> Event | None:
        """The edit `owner`'s undo takes back: their newest that applies (never someone else's)."""
        return next((e for e in reversed(self.applied) if e.owner == owner), None)

    def redo_target(self, owner: Owner) -> Event | None:
        stack = self.redo.get(owner, ())
        return stack[-1] if stack else None

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
    """Replay a history (ordered by seq). Undo is per owner (author and client, e.g. one browser tab):
    an undo row takes its target out of the applied edits onto its owner's redo stack; a redo row puts it
    back on top, as if drawn at the redo's place in the history (a redone stroke shows, whatever others drew
    meanwhile); a new edit clears only its owner's redo stack. With one owner this is the plain stack.
    (Rows without a target act on the newest applied edit / the owner's last undone one.)"""
    done: dict[int, Event] = {}  # by id, in the order they apply (a dict keeps insertion order)
    redo: dict[Owner, list[Event]] = {}
    for ev in sorted(events, key=lambda e: e.seq):
        if ev.kind == "noop":
            continue
        if ev.kind == "undo":
            target = (
                done.get(ev.target_id) if ev.target_id is not None else next(reversed(done.values()), None)
            )
            if target is not None:
                del done[target.id]
                redo.setdefault(ev.owner, []).append(target)
        elif ev.kind == "redo":
            stack = redo.get(ev.owner, [])
            found = [e for e in stack if e.id == ev.target_id] if ev.target_id is not None else stack[-1:]
            if found:
                stack.remove(found[0])
                done[found[0].id] = replace(found[0], seq=ev.seq)
        else:
            done[ev.id] = ev
            redo.pop(ev.owner, None)
    removed = frozenset(
        e.target_id for e in done.values() if e.kind == "point_remove" and e.target_id is not None
    )
    return Folded(tuple(done.values()), {o: tuple(st) for o, st in redo.items() if st}, removed)


RasterLoader = Callable[[Event], np.ndarray]


def centre_pixel(shape: tuple[int, int], x: float, y: float) -> tuple[int, int]:
    """(row, column) of the pixel under image point (x, y), clamped to the image: always part of a mark."""
    h, w = shape
    return min(max(int(np.floor(y + 0.5)), 0), h - 1), min(max(int(np.floor(x + 0.5)), 0), w - 1)


def disk(shape: tuple[int, int], x: float, y: float, radius: float) -> tuple[slice, slice, np.ndarray]:
    """(row slice, column slice, boolean mask within them) of a point's disk, clipped to the image."""
    h, w = shape
    r = max(0.0, float(radius))
    i0, i1 = max(0, int(np.floor(y - r))), min(h, int(np.ceil(y + r)) + 1)
    j0, j1 = max(0, int(np.floor(x - r))), min(w, int(np.ceil(x + r)) + 1)
    ii = np.arange(i0, i1, dtype=np.float64)[:, None]
    jj = np.arange(j0, j1, dtype=np.float64)[None, :]
    mask = (jj - x) ** 2 + (ii - y) ** 2 <= r * r + 1e-9
    ci, cj = centre_pixel(shape, x, y)
    if i0 <= ci < i1 and j0 <= cj < j1:
        mask[ci - i0, cj - j0] = True
    return slice(i0, i1), slice(j0, j1), mask


def stroke_mask(
    shape: tuple[int, int], path: Sequence[Sequence[float]], radius: float
) -> tuple[slice, slice, np.ndarray]:
    """(row slice, column slice, boolean mask within them) of a polyline of radius r, clipped to the image:
    every pixel whose centre is within r of a segment, plus the pixel nearest each vertex. Computed per
    segment over its own bounding box, so a long thin stroke costs what it covers."""
    h, w = shape
    r = max(0.0, float(radius))
    pts = np.asarray(path, dtype=np.float64).reshape(-1, 2)
    i0 = max(0, int(np.floor(pts[:, 1].min() - r)))
    i1 = min(h, int(np.ceil(pts[:, 1].max() + r)) + 1)
    j0 = max(0, int(np.floor(pts[:, 0].min() - r)))
    j1 = min(w, int(np.ceil(pts[:, 0].max() + r)) + 1)
    mask = np.zeros((max(0, i1 - i0), max(0, j1 - j0)), dtype=bool)
    if mask.size == 0:
        return slice(0, 0), slice(0, 0), np.zeros((0, 0), dtype=bool)
    segments = zip(pts[:-1], pts[1:], strict=True) if len(pts) > 1 else [(pts[0], pts[0])]
    for (ax, ay), (bx, by) in segments:
        a0 = max(i0, int(np.floor(min(ay, by) - r)))
        a1 = min(i1, int(np.ceil(max(ay, by) + r)) + 1)
        b0 = max(j0, int(np.floor(min(ax, bx) - r)))
        b1 = min(j1, int(np.ceil(max(ax, bx) + r)) + 1)
        if a0 >= a1 or b0 >= b1:
            continue
        ii = np.arange(a0, a1, dtype=np.float64)[:, None]
        jj = np.arange(b0, b1, dtype=np.float64)[None, :]
        dx, dy = bx - ax, by - ay
        n2 = dx * dx + dy * dy
        t = np.clip(((jj - ax) * dx + (ii - ay) * dy) / n2, 0.0, 1.0) if n2 > 0 else 0.0
        d2 = (jj - ax - t * dx) ** 2 + (ii - ay - t * dy) ** 2
        mask[a0 - i0 : a1 - i0, b0 - j0 : b1 - j0] |= d2 <= r * r + 1e-9
    ci = np.clip(np.floor(pts[:, 1] + 0.5).astype(np.int64), 0, h - 1) - i0
    cj = np.clip(np.floor(pts[:, 0] + 0.5).astype(np.int64), 0, w - 1) - j0
    inside = (ci >= 0) & (ci < mask.shape[0]) & (cj >= 0) & (cj < mask.shape[1])
    mask[ci[inside], cj[inside]] = True
    return slice(i0, i1), slice(j0, j1), mask


def region_of(shape: tuple[int, int], ev: Event, load: RasterLoader) -> tuple[slice, slice, np.ndarray]:
    """Where an erase acts: its polyline, or (older erases and clears) its stored region raster."""
    if ev.path is not None:
        return stroke_mask(shape, ev.path, float(ev.radius or 0.0))
    return slice(0, shape[0]), slice(0, shape[1]), load(ev).astype(bool)


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
        if ev.class_id is not None and ev.kind in ("point", "stroke"):
            ids.add(int(ev.class_id))
        ids.update(int(v) for v in ev.class_map.values() if v is not None)
    table = tuple(sorted(ids))
    if len(table) > NONE:
        raise ValidationError(f"an image cannot use more than {NONE} classes")
    return table, {cid: code for code, cid in enumerate(table)}


def _lut(class_map: Mapping[str, int | None], code_of: Mapping[int, int]) -> np.ndarray:
    lut = np.full(256, NONE, dtype=np.uint8)
    for key, cid in class_map.items():
        if cid is not None and int(cid) in code_of:
            lut[int(key)] = code_of[int(cid)]
    return lut


def value_counts(arr: np.ndarray, n: int) -> np.ndarray:
    """How often each value 0..n-1 occurs in a uint8 array (a few comparisons beat bincount's int64 copy)."""
    if n > 16:
        return np.bincount(arr.ravel(), minlength=256)[:n]
    return np.array([np.count_nonzero(arr == v) for v in range(n)], dtype=np.int64)


def indices_to_class_map(raster: np.ndarray, class_ids: Sequence[int]) -> dict[str, int]:
    """{str(index): class_id} for every class index used in a raster (class_ids[i] = id of index i)."""
    counts = value_counts(np.asarray(raster, dtype=np.uint8), len(class_ids))
    return {str(v): int(class_ids[v]) for v in range(len(class_ids)) if counts[v]}


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
        after_layer = scribble_ev is None or ev.seq > scribble_ev.seq
        if ev.kind == "mask":
            codes = _lut(ev.class_map, code_of)[load(ev)]
            np.copyto(masks, codes, where=codes != NONE)
        elif ev.kind == "erase":
            rows, cols, m = region_of(shape, ev, load)
            for layer in (masks, points, scribbles) if after_layer else (masks, points):
                layer[rows, cols][m] = NONE
        elif ev.kind == "scribble" and ev is scribble_ev:
            scribbles = _lut(ev.class_map, code_of)[load(ev)]
        elif ev.kind == "stroke" and after_layer and ev.class_id is not None and ev.path:
            rows, cols, m = stroke_mask(shape, ev.path, float(ev.radius or 0.0))
            scribbles[rows, cols][m] = code_of[int(ev.class_id)]
        elif ev.kind == "point" and ev.id in active_points and ev.class_id is not None:
            rows, cols, m = disk((h, w), float(ev.x or 0.0), float(ev.y or 0.0), float(ev.radius or 0.0))
            points[rows, cols][m] = code_of[int(ev.class_id)]
    out = masks
    np.copyto(out, scribbles, where=scribbles != NONE)
    np.copyto(out, points, where=points != NONE)
    return Labels(out, table), Labels(scribbles, table)


def paint_on_top(labels: Labels, ev: Event, before: Folded) -> Labels | None:
    """Incremental update of the label map `labels` of history `before` by the new newest edit `ev`, or
    None when only a full `render_layers` is exact. A point lies on top of everything and an erase clears
    everything drawn before it, so both are exact; a stroke is exact where no point covers it (points stay
    on top), unless an older point was partly erased (then its disk no longer says what it covers)."""
    codes, table = labels.codes, labels.table
    if ev.kind == "erase" and ev.path is not None:
        rows, cols, m = stroke_mask(codes.shape, ev.path, float(ev.radius or 0.0))
        codes = codes.copy()
        codes[rows, cols][m] = NONE
        return Labels(codes, table)
    if ev.kind not in ("point", "stroke") or ev.class_id is None:
        return None
    if int(ev.class_id) not in table:
        if len(table) >= NONE:
            raise ValidationError(f"an image cannot use more than {NONE} classes")
        table = table + (int(ev.class_id),)
    code = table.index(int(ev.class_id))
    codes = codes.copy()
    if ev.kind == "point":
        rows, cols, m = disk(codes.shape, float(ev.x or 0.0), float(ev.y or 0.0), float(ev.radius or 0.0))
        codes[rows, cols][m] = code
        return Labels(codes, table)
    if not ev.path:
        return None
    points = before.points
    last_erase = max((e.seq for e in before.applied if e.kind == "erase"), default=-1)
    if any(p.seq < last_erase for p in points):
        return None
    rows, cols, m = stroke_mask(codes.shape, ev.path, float(ev.radius or 0.0))
    m = m.copy()
    for p in points:
        pr, pc, pm = disk(codes.shape, float(p.x or 0.0), float(p.y or 0.0), float(p.radius or 0.0))
        r0, r1 = max(pr.start, rows.start), min(pr.stop, rows.stop)
        c0, c1 = max(pc.start, cols.start), min(pc.stop, cols.stop)
        if r0 < r1 and c0 < c1:
            m[r0 - rows.start : r1 - rows.start, c0 - cols.start : c1 - cols.start] &= ~pm[
                r0 - pr.start : r1 - pr.start, c0 - pc.start : c1 - pc.start
            ]
    codes[rows, cols][m] = code
    return Labels(codes, table)


def render_scribble(shape: tuple[int, int], folded: Folded, load: RasterLoader) -> Labels:
    """Only the current scribble layer (the whole-layer raster, then later strokes and erases)."""
    table, code_of = _table(folded)
    ev = folded.scribble
    codes = np.full(shape, NONE, dtype=np.uint8) if ev is None else _lut(ev.class_map, code_of)[load(ev)]
    for later in folded.applied:
        if ev is not None and later.seq <= ev.seq:
            continue
        if later.kind == "erase":
            rows, cols, m = region_of(shape, later, load)
            codes[rows, cols][m] = NONE
        elif later.kind == "stroke" and later.class_id is not None and later.path:
            rows, cols, m = stroke_mask(shape, later.path, float(later.radius or 0.0))
            codes[rows, cols][m] = code_of[int(later.class_id)]
    return Labels(codes, table)


def raster_to_indices(
    raster: np.ndarray, class_map: Mapping[str, int | None], index_of: Mapping[int, int]
) -> np.ndarray:
    """Stored raster + its {str(value): class_id} -> current class indices (255 where unmapped / deleted)."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for key, cid in class_map.items():
        if cid is not None and int(cid) in index_of:
            lut[int(key)] = index_of[int(cid)]
    return lut[np.asarray(raster, dtype=np.uint8)]
