"""COCO run-length encoding of binary masks, written from the COCO spec (no pycocotools needed).

Counts run over the mask in column-major (Fortran) order and start with a run of zeros (possibly 0).
The compressed string form is the one pycocotools' `frPyObjects`/`encode` produce: each count (from the
third on, as a difference to the count two before) is written in 5-bit groups, low bits first, with 0x20
as the 'more' flag and 0x10 as the sign bit of the last group, each group offset by 48 ('0').
"""

from __future__ import annotations

from typing import Any

import numpy as np


def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO counts of an HxW boolean mask."""
    flat = np.asarray(mask, dtype=bool).reshape(-1, order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return [int(r) for r in runs]


def counts_to_string(counts: list[int]) -> str:
    out: list[str] = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift, as in the C code on a signed long
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def string_to_counts(s: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray, compressed: bool = True) -> dict[str, Any]:
    """{'size': [h, w], 'counts': str (compressed) or list[int]}."""
    arr = np.asarray(mask, dtype=bool)
    counts = rle_counts(arr)
    return {"size": [int(arr.shape[0]), int(arr.shape[1])],
            "counts": counts_to_string(counts) if compressed else counts}


def decode(rle: dict[str, Any]) -> np.ndarray:
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = string_to_counts(counts)
    flat = np.zeros(h * w, dtype=bool)
    pos, value = 0, False
    for n in counts:
        if value:
            flat[pos:pos + int(n)] = True
        pos += int(n)
        value = not value
    if pos != h * w:
        raise ValueError(f"RLE counts cover {pos} pixels, expected {h * w}")
    return flat.reshape((h, w), order="F")


def bbox(mask: np.ndarray) -> list[float]:
    """[x, y, width, height] of the mask's pixels (COCO convention), zeros for an empty mask."""
    rows = np.flatnonzero(np.asarray(mask).any(axis=1))
    cols = np.flatnonzero(np.asarray(mask).any(axis=0))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]
