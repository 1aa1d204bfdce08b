"""The sparse bilinear mixing matrix S of a training problem (pixel = S @ feature rows), built per image.

Each labelled pixel's feature is the bilinear mix of (up to) 4 rows. Built once per image when its pixels
are gathered, as CSR arrays of S and of S^T, so that a refit after one stroke rebuilds only that image's
part: the whole problem's matrices are the images' blocks side by side (block-diagonal), which is a
concatenation of arrays, not a new sort of every pixel (that sort was ~50 ms at 100,000 pixels).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Block:
    """One image's [n, r] block of S as CSR arrays, and of S^T (int32 indices, float32 weights)."""

    n: int  # pixels (rows of S)
    r: int  # feature rows (columns of S)
    crow: np.ndarray  # [n + 1]
    col: np.ndarray  # [nnz]
    val: np.ndarray  # [nnz]
    crow_t: np.ndarray  # [r + 1]
    col_t: np.ndarray  # [nnz]
    val_t: np.ndarray  # [nnz]

    identity_like: bool = False  # made by `identity`: pixel i is row i

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.crow, self.col, self.val, self.crow_t, self.col_t, self.val_t))

    @classmethod
    def identity(cls, n: int) -> Block:
        """Pixel i is feature row i (the rows are the pixels' own features)."""
        crow = np.arange(n + 1, dtype=np.int32)
        ones = np.ones(n, dtype=np.float32)
        return cls(n, n, crow, crow[:-1], ones, crow, crow[:-1], ones, identity_like=True)

    @classmethod
    def bilinear(cls, idx: np.ndarray, wts: np.ndarray, r: int) -> Block:
        """From each pixel's 4 corner rows `idx` ([n, 4], < r) and weights `wts`. Corners that coincide (at
        the image border) are merged and zero weights dropped, so each CSR row has sorted, unique columns."""
        n = idx.shape[0]
        order = np.argsort(idx, axis=1, kind="stable")
        cols = np.take_along_axis(idx, order, 1)
        w = np.take_along_axis(wts, order, 1).astype(np.float32)
        for j in (3, 2, 1):  # right to left, so a run of equal columns sums into its first entry
            same = cols[:, j] == cols[:, j - 1]
            w[same, j - 1] += w[same, j]
            w[same, j] = 0
        keep = w != 0
        counts = keep.sum(1)
        crow = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(counts, out=crow[1:])
        col, val = cols[keep].astype(np.int32), w[keep]
        # S^T: the same entries ordered by column (a stable sort keeps the rows ascending within a column;
        # 16-bit keys take numpy's radix sort)
        by_col = np.argsort(col.astype(np.uint16) if r <= 2**16 else col, kind="stable")
        crow_t = np.zeros(r + 1, dtype=np.int32)
        np.cumsum(np.bincount(col, minlength=r), out=crow_t[1:])
        rows_of = np.repeat(np.arange(n, dtype=np.int32), counts)
        return cls(n, r, crow, col, val, crow_t, rows_of[by_col], val[by_col])


def stack(blocks: Sequence[Block]) -> tuple[torch.Tensor, torch.Tensor]:
    """S and S^T of the images' blocks side by side (block-diagonal), as torch CSR tensors."""
    n = sum(b.n for b in blocks)
    r = sum(b.r for b in blocks)
    nnz = np.cumsum([0] + [b.col.size for b in blocks])
    n_off = np.cumsum([0] + [b.n for b in blocks])
    r_off = np.cumsum([0] + [b.r for b in blocks])

    def part(crow_of, col_of, val_of, col_offset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        crow = np.concatenate([[0]] + [crow_of(b)[1:] + nnz[i] for i, b in enumerate(blocks)])
        col = np.concatenate([col_of(b) + col_offset[i] for i, b in enumerate(blocks)])
        val = np.concatenate([val_of(b) for b in blocks])
        index = np.int32 if max(n, r, col.size) < 2**31 else np.int64
        return (
            torch.from_numpy(crow.astype(index)),
            torch.from_numpy(col.astype(index)),
            torch.from_numpy(val),
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR is beta" is not news for the user
        s = torch.sparse_csr_tensor(*part(lambda b: b.crow, lambda b: b.col, lambda b: b.val, r_off), (n, r))
        s_t = torch.sparse_csr_tensor(
            *part(lambda b: b.crow_t, lambda b: b.col_t, lambda b: b.val_t, n_off), (r, n)
        )
    return s, s_t
