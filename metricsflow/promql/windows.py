"""Window bounds and windowed reductions over flat per-series sample arrays.

All series' samples live in one flat array; series i owns ``[offsets[i],
offsets[i+1])``. Keying each sample as ``series_id * span + t`` makes the whole
array globally sorted, so a single ``np.searchsorted`` finds the bounds of every
window of every series at every step at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

# Above this many cells per block, windowed gathers are split to bound memory (~64 MB of float64).
GATHER_BLOCK_CELLS = 8_000_000


def common_grid(ts: np.ndarray, offsets: np.ndarray) -> np.ndarray | None:
    """The timestamps of every series when all of them have the same ones, else None.

    The common case: series pushed together (one scrape, one agent) and subquery
    grids; one search on the grid then serves every series.
    """
    n = offsets.size - 1
    if n < 1 or ts.size == 0:
        return None
    lengths = np.diff(offsets)
    if lengths[0] == 0 or not (lengths == lengths[0]).all():
        return None
    rows = ts.reshape(n, lengths[0])
    # Each row equal to the one before it: contiguous operands, twice as fast as against row 0.
    return rows[0] if np.array_equal(rows[1:], rows[:-1]) else None


_UNKNOWN = object()


def search(ts: np.ndarray, offsets: np.ndarray, queries: np.ndarray, side: str,
           grid: np.ndarray | object | None = _UNKNOWN) -> np.ndarray:
    """Global index ``searchsorted(series_i_ts, queries[i], side) + offsets[i]`` for every series.

    ``queries`` is (T,) shared by all series or (n, T). Returns (n, T) intp. ``grid`` is
    ``common_grid(ts, offsets)`` when the caller has it (``RangeVec.common_grid``).
    """
    n = offsets.size - 1
    q = np.broadcast_to(queries, (n, queries.shape[-1])) if queries.ndim == 1 else queries
    if n == 0:
        return np.zeros((0, q.shape[1]), dtype=np.intp)
    if ts.size == 0:
        return np.broadcast_to(offsets[:-1, None], q.shape).astype(np.intp)
    if queries.ndim == 1:
        if grid is _UNKNOWN:
            grid = common_grid(ts, offsets)
        if grid is not None:
            first = np.searchsorted(grid, queries, side=side)  # type: ignore[call-overload]
            return offsets[:-1, None].astype(np.intp, copy=False) + first[None, :]
    lengths = np.diff(offsets)
    lo = min(int(ts.min()), int(q.min()))
    hi = max(int(ts.max()), int(q.max()))
    span = hi - lo + 1
    if span > 0 and n * span < 2**62:
        sid = np.repeat(np.arange(n, dtype=np.int64), lengths)
        keys = sid * span + (ts - lo)
        qk = np.arange(n, dtype=np.int64)[:, None] * span + (q.astype(np.int64) - lo)
        return np.searchsorted(keys, qk, side=side).astype(np.intp)  # type: ignore[arg-type]
    out = np.empty(q.shape, dtype=np.intp)
    for i in range(n):
        a, b = offsets[i], offsets[i + 1]
        out[i] = np.searchsorted(ts[a:b], q[i], side=side) + a  # type: ignore[arg-type]
    return out


def reduceat(ufunc: np.ufunc, vals: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``ufunc.reduce(vals[lo:hi])`` for every window; empty windows give garbage (mask them)."""
    shape = lo.shape
    if lo.size == 0:
        return np.zeros(shape)
    ext = np.append(vals, vals.dtype.type(0))
    idx = np.empty(lo.size * 2, dtype=np.intp)
    idx[0::2] = lo.ravel()
    idx[1::2] = hi.ravel()
    np.clip(idx, 0, vals.size, out=idx)
    res = ufunc.reduceat(ext, idx)[0::2]
    return res.reshape(shape)


def sliding(ufunc: np.ufunc, x: np.ndarray, width: int) -> np.ndarray:
    """``ufunc.reduce(x[:, k:k + width])`` for every k, in log2(width) passes over ``x``.

    Level L holds reductions of 2**L consecutive columns; the window is assembled from
    the levels of width's binary digits, so the cost does not grow with the window.
    """
    steps = x.shape[1] - width + 1
    out: np.ndarray | None = None
    pos, span, level, rest = 0, 1, x, width
    while rest:
        if rest & 1:
            piece = level[:, pos : pos + steps]
            out = piece.copy() if out is None else ufunc(out, piece)
            pos += span
        rest >>= 1
        if rest:
            level = ufunc(level[:, :-span], level[:, span:])
            span *= 2
    assert out is not None
    return out


def gather_blocks(
    lo: np.ndarray, hi: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(cells, idx, mask, count)``: non-empty windows as padded rows of indices.

    ``cells`` are flat indices into ``lo.ravel()``; ``idx[k, j]`` is the flat sample
    index of the j-th sample of window ``cells[k]`` (0 where ``mask`` is False).
    """
    flo, fhi = lo.ravel(), hi.ravel()
    counts = np.maximum(fhi - flo, 0)
    cells = np.flatnonzero(counts > 0)
    if cells.size == 0:
        return
    width = int(counts[cells].max())
    per_block = max(1, GATHER_BLOCK_CELLS // max(width, 1))
    for start in range(0, cells.size, per_block):
        c = cells[start : start + per_block]
        cnt = counts[c]
        j = np.arange(width)
        mask = j[None, :] < cnt[:, None]
        idx = np.where(mask, flo[c][:, None] + j[None, :], 0)
        yield c, idx, mask, cnt


def per_window(
    lo: np.ndarray, hi: np.ndarray, fn: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """Apply ``fn(cells, idx, mask, count) -> (k,)`` over gathered windows; NaN where empty."""
    out = np.full(lo.size, np.nan)
    for cells, idx, mask, cnt in gather_blocks(lo, hi):
        out[cells] = fn(cells, idx, mask, cnt)
    return out.reshape(lo.shape)
