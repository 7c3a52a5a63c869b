"""Timestamp section of the decimal codec: a regular grid plus integer residuals.

``t0 varint | step uvarint | residuals`` where the n residuals
r_i = t_i - (t0 + i * step) (r_0 = 0) form an integer column (see ``_intcol``);
all arithmetic wraps mod 2^64; a single point stores only t0.
Why a grid and not delta-of-delta: with independent scrape jitter of +-3 ms the
residuals carry one jitter sample each (~2.8 bits), while delta-of-delta mixes
three (e_i - 2e_{i-1} + e_{i-2}, ~3.9 bits); measured 283 vs 445 bytes per 720
points. Exactly regular series cost one flag byte; a missed scrape turns into a
step in the residuals, which the order-1 column absorbs.
"""

from __future__ import annotations

import numpy as np
from pcodec import wrapped

from metricsflow.codecs import _intcol
from metricsflow.codecs._wire import Reader, check_increasing, corrupt, uvarint, zigzag

_U64 = np.uint64
_U64_MASK = (1 << 64) - 1
_I64_MAX = (1 << 63) - 1


def _residuals(ts: np.ndarray, step: int) -> np.ndarray:
    grid = np.arange(ts.size, dtype=_U64) * _U64(step) + ts[:1].view(_U64)
    return (ts.view(_U64) - grid).view(np.int64)


def encode(ts: np.ndarray, sparse: bool = False) -> tuple[bytes, bool]:
    """Section bytes and whether they hold a pcodec stream; ``ts`` is non-empty.

    ``sparse`` lets the residual column use the listed form (``_intcol``, bit 5)."""
    head = uvarint(zigzag(int(ts[0])))
    if ts.size == 1:
        return head, False
    deltas = np.diff(ts).view(_U64)  # > 0 when sorted; uint64 so huge spans do not go negative
    if np.all(deltas == deltas[0]):  # exactly regular: the common case after Prometheus alignment
        return b"".join((head, uvarint(int(deltas[0])), _intcol.ZERO_COLUMN)), False
    span = int(ts[-1]) - int(ts[0])
    candidates = {int(np.median(deltas)), round(span / (ts.size - 1))}
    best: tuple[float, int, np.ndarray] | None = None
    for step in candidates:
        step &= _U64_MASK
        residuals = _residuals(ts, step)
        cost = _intcol.estimate_bits(np.diff(residuals)) if residuals.any() else 0.0
        cost = min(cost, _intcol.estimate_bits(residuals))
        if best is None or cost < best[0]:
            best = (cost, step, residuals)
    assert best is not None
    _, step, residuals = best
    column, uses_pco = _intcol.encode(residuals, sparse)
    return b"".join((head, uvarint(step), column)), uses_pco


def decode(reader: Reader, n: int, pco_file: wrapped.FileDecompressor | None) -> np.ndarray:
    t0 = reader.varint()
    if n == 1:
        return np.array([t0], dtype=np.int64)
    step = reader.uvarint()
    if reader.buf[reader.pos : reader.pos + 1] == _intcol.ZERO_COLUMN and 0 < step <= _I64_MAX:
        reader.pos += 1
        end = t0 + (n - 1) * step
        if end <= _I64_MAX:  # exactly regular and in range: increasing by construction
            # Integer multiply-add (wrapping in between is harmless): np.arange(t0, end, step)
            # sizes itself in float64 and drops points once the span passes 2^53.
            return np.arange(n, dtype=np.int64) * np.int64(step) + np.int64(t0)
        raise corrupt("regular timestamps overflow int64")
    residuals = _intcol.decode(reader, n, pco_file)
    grid = np.arange(n, dtype=_U64) * _U64(step) + _U64(t0 & _U64_MASK)
    return check_increasing((grid + residuals.view(_U64)).view(np.int64))
