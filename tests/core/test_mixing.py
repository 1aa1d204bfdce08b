"""The per-image sparse mixing blocks: S and S^T equal the dense bilinear weights, side by side."""

import numpy as np
import torch

from core.mixing import Block, stack


def _dense(idx: np.ndarray, wts: np.ndarray, r: int) -> np.ndarray:
    out = np.zeros((idx.shape[0], r), np.float32)
    np.add.at(out, (np.repeat(np.arange(idx.shape[0]), 4), idx.ravel()), wts.ravel())
    return out


def _corners(rng, n, r):
    idx = rng.integers(0, r, (n, 4))
    idx[::3, 2:] = idx[::3, :2]  # coinciding corners, as at an image border (y0 == y1)
    idx[::5, 1] = idx[::5, 0]  # (x0 == x1)
    wts = rng.random((n, 4)).astype(np.float32)
    wts[::7, 3] = 0  # a pixel exactly on a token row
    return idx, wts / wts.sum(1, keepdims=True)


def test_blocks_side_by_side_equal_the_dense_block_diagonal_matrix():
    rng = np.random.default_rng(0)
    parts = [_corners(rng, 50, 9), _corners(rng, 30, 70_000)]  # the second takes the int64-key sort
    blocks = [Block.bilinear(i, w, r) for (i, w), r in zip(parts, (9, 70_000), strict=True)] + [
        Block.identity(4)
    ]
    s, s_t = stack(blocks)
    want = np.zeros((84, 9 + 70_000 + 4), np.float32)
    want[:50, :9] = _dense(*parts[0], 9)
    want[50:80, 9:70_009] = _dense(*parts[1], 70_000)
    want[80:, 70_009:] = np.eye(4)
    assert np.allclose(s.to_dense().numpy(), want, atol=1e-6)
    assert np.allclose(s_t.to_dense().numpy(), want.T, atol=1e-6)
    for b in blocks[:2]:  # each row: sorted, unique columns, weights summing to 1
        for i in range(b.n):
            cols = b.col[b.crow[i] : b.crow[i + 1]]
            assert (np.diff(cols) > 0).all()
        assert np.allclose(np.add.reduceat(b.val, b.crow[:-1]), 1, atol=1e-6)
    u = torch.randn(9 + 70_000 + 4, 3)
    assert torch.allclose(s @ u, torch.from_numpy(want) @ u, atol=1e-4)
