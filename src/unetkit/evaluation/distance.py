"""Exact Euclidean distance transform with nearest-pixel indices, in numpy (what MATLAB's
bwdist / scipy's distance_transform_edt(return_indices=True) give; scipy is not a dependency).

Separable, after Felzenszwalb & Huttenlocher (2012): per column the nearest truth pixel
(vectorised scans), then per row the lower envelope of the parabolas (j - k)^2 + g(k)^2. The
envelope is built one candidate column at a time for all rows together. Only columns that hold
truth can be nearest, so the loop runs over those, along the shorter extent of the truth.
Between equally near pixels it may pick another one than scipy does (same distance).
"""

from __future__ import annotations

import numpy as np


def _column_nearest(fg: np.ndarray, big: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the row of the nearest True pixel in its column and the distance to it
    (`big` or more where the column has none)."""
    rows = np.arange(fg.shape[0], dtype=np.int32)[:, None]
    above = np.maximum.accumulate(np.where(fg, rows, np.int32(-big)), axis=0)
    below = np.minimum.accumulate(np.where(fg, rows, np.int32(big))[::-1], axis=0)[::-1]
    near = np.where(rows - above <= below - rows, above, below)
    return near, np.abs(rows - near)


def distance_transform(fg: np.ndarray, region: tuple[slice, slice] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(d2, rows, cols) for a bool mask with at least one True: the squared distance of every
    pixel to the nearest True pixel, and that pixel's row and column (only for the pixels of
    `region`, a pair of slices with steps of 1, when given)."""
    if fg.any(1).sum() < fg.any(0).sum():  # loop over the shorter extent of the truth
        d2, rows, cols = distance_transform(fg.T, region and region[::-1])
        return d2.T, cols.T, rows.T
    h, w = fg.shape
    near, g = _column_nearest(fg, 4 * (h + w))
    col, d2 = _envelope(g, np.flatnonzero(fg.any(0)))
    ys, xs = region or (slice(None), slice(None))
    col_r = col[ys, xs]
    return d2, near[np.arange(h)[ys][:, None], col_r], col_r


def _envelope(g: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the column k in `cols` minimising (j - k)^2 + g[k]^2 for each j, and that
    minimum."""
    n, w = g.shape
    size = len(cols) + 1
    cost = np.ascontiguousarray((g[:, cols].astype(np.float64) ** 2 + cols.astype(np.float64)
                                 ** 2).T)  # (candidate, row): g^2 + k^2
    p = np.arange(n) * size  # each row's top of the envelope, in flat per-row stacks
    v2 = np.zeros(n * size)  # 2k of the envelope's parabolas
    cv = np.zeros(n * size)  # their g^2 + k^2
    z = np.full(n * size, -np.inf)  # where each starts to be the lowest
    v2[p], cv[p] = 2.0 * cols[0], cost[0]
    for i in range(1, len(cols)):
        cq, q2 = cost[i], 2.0 * cols[i]
        while True:  # pop the parabolas the new one hides
            s = (cq - cv.take(p)) / (q2 - v2.take(p))
            pop = s <= z.take(p)
            if not pop.any():
                break
            p = p - pop
        p = p + 1
        v2[p], cv[p], z[p] = q2, cq, s
    # Pixel j takes the last parabola starting before it: count the starts at or below j.
    top = p - np.arange(n) * size
    start = np.floor(z.reshape(n, size)[:, 1:]).clip(-1, w - 1).astype(np.int64) + 1
    valid = np.arange(1, size)[None, :] <= top[:, None]
    hits = np.bincount((np.arange(n)[:, None] * (w + 1) + start)[valid], minlength=n * (w + 1))
    seg = np.cumsum(hits.reshape(n, w + 1)[:, :w], axis=1)
    col = (v2.reshape(n, size)[np.arange(n)[:, None], seg] / 2).astype(np.int64)
    d2 = (np.arange(w)[None, :] - col) ** 2 + g[np.arange(n)[:, None], col].astype(np.int64) ** 2
    return col, d2
