"""Integer column coding shared by the decimal codec (timestamp residuals, mantissas).

Layout, for a column whose length ``n`` the caller already knows::

    flags u8        bits 0-1: difference order d in {0, 1, 2}
                    bit 5:    sparse: the differences are listed, not a pcodec stream
                    bit 6:    a common divisor g > 1 follows the seeds
                    bit 7:    the d-th differences are all zero (no pcodec stream)
    d x varint      seeds: x[0], then (x[1] - x[0]) when d = 2 (zigzag, wrapping int64)
    [g uvarint]     the d-th differences are all multiples of g; the stream holds diff / g
    [pcodec i64]    the n - d differences of order d, when bits 7 and 5 are clear and n > d
    [sparse]        bit 5: k uvarint, then k x (gap uvarint, diff varint): the nonzero
                    differences, gap = zeros skipped since the previous one

The sparse form is written only when the caller allows it (codec tag 4, ``decimal_sparse``):
Prometheus scrape timestamps are exact multiples of the interval but for one or two shifted
scrapes per chunk, and many node-exporter counters change a few times an hour; pcodec spends
~1.5 bits on every element of such a column, the list ~3 bytes per nonzero.

All arithmetic wraps modulo 2^64, so any int64 column round-trips exactly.
Orders are ranked by a cheap size estimate, sum(log2(1 + |diff / g - median|)); only
the best, and the runner-up when the call is close, are compressed. The divisor is
found here rather than left to pcodec's IntMult detection, which samples and missed
the 4096-byte page multiples in node_memory_*_bytes differences (470 vs 287 bytes
for 156 points).
"""

from __future__ import annotations

import numpy as np
from pcodec import wrapped

from metricsflow.codecs import _pco
from metricsflow.codecs._wire import Reader, corrupt, uvarint, wrap_i64, zigzag

_ZERO_FLAG = 0x80
_DIVISOR_FLAG = 0x40
_SPARSE_FLAG = 0x20
_SPARSE_SHARE = 4  # try the list when at most 1 in 4 differences is nonzero
_ORDER_MASK = 0x03
_SEED_BITS = 24.0  # typical seed varint; a rough price for each extra order
_U64_MASK = (1 << 64) - 1
_I64_MIN = -(1 << 63)
DIVISOR_PROBE = 16  # first values whose gcd bounds a column's common divisor (rollup_codec too)


def estimate_bits(diffs: np.ndarray) -> float:
    """Rough coded size of a column: bits of distance from the median per element.

    Centred because pcodec codes offsets from bin bounds: residuals in [0, 6] cost
    what [-3, 3] costs (uncentred, the estimate preferred order 1 at +27% size).
    """
    if diffs.size == 0:
        return 0.0
    as_float = diffs.astype(np.float64)
    sample = np.sort(as_float[:: max(1, as_float.size // 63)])  # median of <= 64: np.median is slow
    return float(np.log2(1.0 + np.abs(as_float - sample[sample.size // 2])).sum())


def _divisor(diffs: np.ndarray) -> int:
    nonzero = diffs[diffs != 0]
    if nonzero.size == 0:
        return 1
    g = int(np.gcd.reduce(nonzero))
    # np.gcd misbehaves on INT64_MIN (no positive abs); only trust a divisor that divides back.
    if g <= 1 or not np.array_equal((diffs // g) * g, diffs):
        return 1
    return g


ZERO_COLUMN = bytes((_ZERO_FLAG,))  # any all-zero column
# Compress the runner-up order too when its estimate is within 5% of the best: the
# estimate misranks close calls (node_pressure_*: 328 vs 307 bytes), not clear ones.
# 5% keeps that gain on B-real (0.482 -> 0.480 B/point) without doubling the pcodec
# work on Gaussian walks, whose order-2 estimate sits ~6% above order 1.
_CLOSE_CALL = 1.05


def _candidate(seeds: list[int], diffs: np.ndarray, order: int, sparse: bool = False,
               divisor: int | None = None) -> tuple[bytes, bool]:
    """``divisor``: ``_divisor(diffs)`` when the caller has it (0 for an all-zero column)."""
    if divisor is None:
        divisor = _divisor(diffs) if np.any(diffs) else 0
    zero = divisor == 0
    divisor = max(divisor, 1)
    flags = order | (_ZERO_FLAG if zero else 0) | (_DIVISOR_FLAG if divisor > 1 else 0)
    parts = [uvarint(zigzag(seed)) for seed in seeds]
    if divisor > 1:
        parts.append(uvarint(divisor))
        diffs = diffs // divisor
    if zero:
        return b"".join((bytes((flags,)), *parts)), False
    stream = _pco.compress(diffs, _pco.config(0))
    if sparse:
        nonzero = np.flatnonzero(diffs)
        if nonzero.size * _SPARSE_SHARE <= diffs.size:
            listed = _sparse_list(diffs, nonzero)
            if len(listed) < len(stream):
                return b"".join((bytes((flags | _SPARSE_FLAG,)), *parts, listed)), False
    return b"".join((bytes((flags,)), *parts, stream)), True


def _sparse_list(diffs: np.ndarray, nonzero: np.ndarray) -> bytes:
    gaps = np.diff(nonzero, prepend=-1) - 1
    out = [uvarint(int(nonzero.size))]
    for gap, value in zip(gaps.tolist(), diffs[nonzero].tolist(), strict=True):
        out.append(uvarint(gap))
        out.append(uvarint(zigzag(value)))
    return b"".join(out)


def _read_sparse(reader: Reader, size: int) -> np.ndarray:
    out = np.zeros(size, dtype=np.int64)
    k = reader.uvarint()
    if k > size:
        raise corrupt(f"sparse column lists {k} of {size} differences")
    index = -1
    for _ in range(k):
        index += reader.uvarint() + 1
        if index >= size:
            raise corrupt("sparse column index past its end")
        out[index] = wrap_i64(reader.varint())
    return out


def encode(column: np.ndarray, sparse: bool = False) -> tuple[bytes, bool]:
    """Encoded column and whether it contains a pcodec stream (needs the pcodec header).

    ``sparse`` allows the listed form of mostly-zero differences (bit 5)."""
    if not np.any(column):
        return ZERO_COLUMN, False
    ranked: list[tuple[float, int, list[int], np.ndarray]] = []
    seeds: list[int] = []
    diffs = column
    for order in range(min(2, column.size) + 1):
        if order:
            seeds = [*seeds, int(diffs[0])]
            diffs = np.diff(diffs)
        if not np.any(diffs):  # constant or an exact line: no stream at all
            return _candidate(seeds, diffs, order, sparse)
        bits = estimate_bits(diffs // _divisor(diffs)) + _SEED_BITS * order
        ranked.append((bits, order, seeds, diffs))
    ranked.sort(key=lambda c: c[0])
    tried = [c for c in ranked[:2] if c[0] <= ranked[0][0] * _CLOSE_CALL]
    return min((_candidate(s, d, o, sparse) for _, o, s, d in tried), key=lambda c: len(c[0]))


def encode_rows(columns: np.ndarray, sparse: bool = False) -> list[tuple[bytes, bool]]:
    """``encode`` of every row of a 2-D int64 array, the same bytes: the differences, divisors
    and size estimates of all rows in one pass each (per row they were half a chunk's encode)."""
    rows, n = columns.shape
    if rows == 0:
        return []
    levels: list[np.ndarray] = [columns]
    for _ in range(min(2, n)):
        levels.append(np.diff(levels[-1], axis=1))
    nonzero = [level.any(axis=1) for level in levels]
    # np.gcd on INT64_MIN has no positive abs: such rows take the one-row path.
    odd = np.zeros(rows, dtype=bool)
    for level in levels:
        odd |= (level == _I64_MIN).any(axis=1)
    estimates = []
    divisors = []
    for order, level in enumerate(levels):
        divisor = _divisors(level)
        divided = level // divisor[:, None] if (divisor > 1).any() else level  # int64 division is slow
        estimates.append((_estimate_rows(divided) + _SEED_BITS * order).tolist())
        divisors.append(np.where(nonzero[order], divisor, 0).tolist())
    out: list[tuple[bytes, bool]] = []
    for i in range(rows):
        if odd[i] or not nonzero[0][i]:
            out.append(encode(columns[i], sparse))
            continue
        ranked: list[tuple[float, int, list[int], np.ndarray]] = []
        seeds: list[int] = []
        done = None
        for order, level in enumerate(levels):
            if order:
                seeds = [*seeds, int(levels[order - 1][i, 0])]
            if not nonzero[order][i]:  # constant or an exact line: no stream at all
                done = _candidate(seeds, level[i], order, sparse, 0)
                break
            ranked.append((estimates[order][i], order, seeds, level[i]))
        if done is None:
            ranked.sort(key=lambda c: c[0])
            tried = [c for c in ranked[:2] if c[0] <= ranked[0][0] * _CLOSE_CALL]
            done = min((_candidate(s, d, o, sparse, divisors[o][i]) for _, o, s, d in tried),
                       key=lambda c: len(c[0]))
        out.append(done)
    return out


def _divisors(diffs: np.ndarray) -> np.ndarray:
    """``_divisor`` of every row (rows holding INT64_MIN excepted: the caller codes those alone)."""
    g = np.ones(diffs.shape[0], dtype=np.int64)
    if not diffs.shape[1]:
        return g
    # A row's divisor divides that of its first values: where those share none (most mantissa
    # columns of the load workload), the whole row's gcd is not needed (4 of a chunk's 107 µs).
    probe = np.gcd.reduce(diffs[:, :DIVISOR_PROBE], axis=1)
    maybe = probe != 1
    if maybe.any():
        whole = np.gcd.reduce(diffs[maybe], axis=1)
        g[maybe] = np.where(whole > 1, whole, 1)
    if (g > 1).any():
        divides = ((diffs // g[:, None]) * g[:, None] == diffs).all(axis=1)
        g = np.where(divides, g, 1)
    return g


def _estimate_rows(diffs: np.ndarray) -> np.ndarray:
    """``estimate_bits`` of every row, the same floats."""
    if diffs.shape[1] == 0:
        return np.zeros(diffs.shape[0])
    as_float = diffs.astype(np.float64)
    sample = np.sort(as_float[:, :: max(1, diffs.shape[1] // 63)], axis=1)
    median = sample[:, sample.shape[1] // 2]
    return np.log2(1.0 + np.abs(as_float - median[:, None])).sum(axis=1)


def decode(reader: Reader, n: int, pco_file: wrapped.FileDecompressor | None) -> np.ndarray:
    flags = reader.byte()
    order = flags & _ORDER_MASK
    if (flags & ~(_ZERO_FLAG | _DIVISOR_FLAG | _SPARSE_FLAG | _ORDER_MASK) or order == 3 or order > n
            or (flags & _ZERO_FLAG and flags & _SPARSE_FLAG)):
        raise corrupt(f"bad integer column flags {flags:#04x} for {n} values")
    seeds = [reader.varint() for _ in range(order)]
    divisor = reader.uvarint() if flags & _DIVISOR_FLAG else 1
    if flags & _ZERO_FLAG:
        return _polynomial(seeds, n)
    if flags & _SPARSE_FLAG:
        current = _read_sparse(reader, n - order)
    elif pco_file is None or n == order:
        raise corrupt("integer column claims a pcodec stream the block does not declare")
    else:
        current = _pco.decompress(reader, pco_file, n - order, "i64")
    if divisor > 1:
        current = (current.view(np.uint64) * np.uint64(divisor)).view(np.int64)  # wraps like int64
    # Undo the differences innermost first; cumsum on int64 wraps like the encoder's np.diff.
    for seed in reversed(seeds):
        restored = np.empty(current.size + 1, dtype=np.int64)
        restored[0] = wrap_i64(seed)
        restored[1:] = current
        current = np.cumsum(restored, out=restored)
    return current


def _polynomial(seeds: list[int], n: int) -> np.ndarray:
    """The column whose differences of order len(seeds) are all zero: constant or a line."""
    if not seeds:
        return np.zeros(n, dtype=np.int64)
    if len(seeds) == 1:
        return np.full(n, wrap_i64(seeds[0]), dtype=np.int64)
    start, slope = seeds[0] & _U64_MASK, seeds[1] & _U64_MASK
    line = np.arange(n, dtype=np.uint64) * np.uint64(slope) + np.uint64(start)  # wraps mod 2^64
    return line.view(np.int64)
