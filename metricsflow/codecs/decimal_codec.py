"""Decimal chunks (tags 3 and 4): values as integer mantissas x 10^-k, like VictoriaMetrics.

Most metric values are short decimals (exposition text, rounded gauges, counters of
whole bytes). Their float64 bits look random to XOR coding, but as integers
``m = round(v * 10^k)`` consecutive values differ by small numbers that pcodec packs
to near their entropy. Lossless by construction: the decoder computes ``m / 10^k``
(or ``m * 10^-k``) and then applies *patches*, ``bits(v) - bits(reconstruction)``,
stored for every value where the two differ. Patches are tiny for values a few ulps
off a decimal (producers that multiply) and 9-10 bytes for the rest (NaN incl. the
stale marker, +-Inf, -0.0, values with too many digits), whose mantissa slot repeats
its neighbour. When too many values need big patches the block stores the float64
column with pcodec instead.

Tag 4 (``decimal_sparse``, the default) is tag 3 plus the listed form of mostly-zero
integer columns (``_intcol`` bit 5) for timestamp residuals and mantissa differences;
one decoder reads both, tag 3 blocks are still written byte for byte as before.

Layout (see docs/format/chunks.md)::

    tag u8 = 3 or 4 | n uvarint | (n > 0:) layout u8 | [pcodec header, 2 B] |
    timestamps (_timecol) | values: decimal (patches, mantissa column) or float
"""

from __future__ import annotations

import numpy as np
from pcodec import wrapped

from metricsflow.codecs import _intcol, _pco, _timecol
from metricsflow.codecs._wire import Reader, corrupt, unzigzag, uvarint, zigzag

TAG = 3
NAME = "decimal"
SPARSE_TAG = 4
SPARSE_NAME = "decimal_sparse"

MAX_SCALE = 18  # 10^18 is an exact float64; mantissas are capped at 2^53 anyway
MAX_MANTISSA = float(1 << 53)  # every integer up to here is exact in float64
# Exact powers (int -> float is exact up to 10^22) and correctly rounded 10^-k (parsed
# from text, so identical on every platform, unlike pow()).
_POW10 = [float(10**k) for k in range(MAX_SCALE + 1)]
_INV_POW10 = [float(f"1e-{k}") for k in range(MAX_SCALE + 1)]
# Two reconstructions exist: m / 10^k, and m * 10^-k for producers that scale by
# multiplying (node_exporter diskstats: ms * 0.001, 21 of 156 values off by an ulp
# under division); the encoder tries the second only when the first needs many patches.
_TRY_MULTIPLY_SHARE = 32
_TRY_FLOAT_SCALE = 10  # from 10 digits on, mantissas are as wide as the floats: try both
# Other arithmetic (node_pressure_*: us / 1000 / 1000 = 10.362058999999999) lands a
# few ulps off the decimal; such values keep their mantissa and get a 1-byte patch.
_NEAR_ULPS = 4
_DIGIT_COST_BITS = float(np.log2(10.0))  # one more decimal digit widens every delta
_FAR_COST_BITS = 80.0  # position gap + ~9-byte patch
_FLOAT_FALLBACK_SHARE = 4  # more than n/4 far values: plain float pcodec is smaller

# Layout byte: bit 0 float mode, bits 1-5 the scale k, bit 6 multiply, bit 7 pcodec header.
_FLOAT_MODE = 0x01
_SCALE_SHIFT = 1
_SCALE_MASK = 0x3E
_MULTIPLY = 0x40
_HAS_PCO_HEADER = 0x80
_U64 = np.uint64
_U64_MASK = (1 << 64) - 1


_NO_PATCHES = uvarint(0)
_POW10_ARRAY = np.array(_POW10)
_INV_POW10_ARRAY = np.array(_INV_POW10)
Digits = int | np.ndarray  # one scale k, or a column of them for the rows of a 2-D array


def reconstruct(mantissas: np.ndarray, digits: Digits, multiply: bool) -> np.ndarray:
    """The decoder's view of a mantissa column: m / 10^k, or m * 10^-k."""
    as_float = mantissas.astype(np.float64)
    return as_float * _INV_POW10_ARRAY[digits] if multiply else as_float / _POW10_ARRAY[digits]


def _patches(values: np.ndarray, mantissas: np.ndarray, digits: Digits, multiply: bool) -> np.ndarray:
    """bits(value) - bits(reconstruction), wrapping: 0 where exact, small where a few ulps off."""
    approx = reconstruct(mantissas, digits, multiply)
    return (values.view(_U64) - approx.view(_U64)).view(np.int64)


def _approximate(values: np.ndarray, digits: Digits, multiply: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mantissas at 10^digits and their patches (INT64_MAX where the mantissa exceeds 2^53)."""
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.rint(values * _POW10_ARRAY[digits])
    fits = np.abs(scaled) <= MAX_MANTISSA  # False for NaN/Inf
    mantissas = np.where(fits, scaled, 0.0).astype(np.int64)
    patch = _patches(values, mantissas, digits, multiply)
    return mantissas, np.where(fits, patch, np.iinfo(np.int64).max)


def _classify(patch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    exact = patch == 0
    return exact, ~exact & (np.abs(patch) <= _NEAR_ULPS)


def _min_digits(values: np.ndarray) -> np.ndarray:
    """Per value, the smallest k <= MAX_SCALE giving an exact or near decimal, else MAX_SCALE + 1."""
    digits = np.full(values.size, MAX_SCALE + 1, dtype=np.int64)
    pending = np.flatnonzero(np.isfinite(values))
    for k in range(MAX_SCALE + 1):
        if pending.size == 0:
            break
        candidates = values[pending]
        # ``_approximate``'s patches without its int64 mantissas: a float that fits 2^53 and is
        # an integer converts to int64 and back unchanged, so the float divides as the decoder's
        # would. A rounded -0.0 comes back +0.0 from int64, so it is made +0.0 here too (a tiny
        # negative value such as -5e-324 is then as far from it as there). Encoding keeps
        # ``_approximate``.
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = np.rint(candidates * _POW10[k])
            scaled += 0.0
        patch = (candidates.view(_U64) - (scaled / _POW10[k]).view(_U64)).view(np.int64)
        hit = (np.abs(scaled) <= MAX_MANTISSA) & (np.abs(patch) <= _NEAR_ULPS)
        digits[pending[hit]] = k
        pending = pending[~hit]
    return digits


def choose_scale(values: np.ndarray) -> int | None:
    """The k with the smallest estimated size, or None when plain floats will do better.

    Cost per candidate k, from the histogram of per-value minimal digits: k digits on
    every point plus a far patch for each value that needs more digits than k.
    """
    n = values.size
    counts = np.bincount(_min_digits(values), minlength=MAX_SCALE + 2)
    candidates = np.flatnonzero(counts[: MAX_SCALE + 1])
    if candidates.size == 0:
        return None
    needs_more = n - np.cumsum(counts)  # needs_more[k] = count(digits > k)
    costs = candidates * (_DIGIT_COST_BITS * n) + _FAR_COST_BITS * needs_more[candidates]
    best = int(candidates[int(np.argmin(costs))])
    if needs_more[best] > n // _FLOAT_FALLBACK_SHARE:
        return None
    return best


def choose_scales(rows: np.ndarray) -> list[int | None]:
    """``choose_scale`` of every row of a 2-D array (blocks of equal length), each value's
    digits found in one pass over all rows: per row, ~30 numpy calls on 720 values were
    a third of a chunk's encode."""
    blocks, n = rows.shape
    kinds = MAX_SCALE + 2
    digits = _min_digits(rows.ravel()).reshape(blocks, n)
    counts = np.bincount((digits + np.arange(blocks)[:, None] * kinds).ravel(),
                         minlength=blocks * kinds).reshape(blocks, kinds)[:, :MAX_SCALE + 1]
    needs_more = n - np.cumsum(counts, axis=1)
    costs = np.arange(MAX_SCALE + 1) * (_DIGIT_COST_BITS * n) + _FAR_COST_BITS * needs_more
    best = np.argmin(np.where(counts > 0, costs, np.inf), axis=1)  # the first minimum, as choose_scale
    usable = counts.any(axis=1) & (needs_more[np.arange(blocks), best] <= n // _FLOAT_FALLBACK_SHARE)
    return [k if ok else None for k, ok in zip(best.tolist(), usable.tolist(), strict=True)]


def _fill_far(mantissas: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Repeat the previous usable mantissa at far slots so they add no deltas."""
    index = np.where(usable, np.arange(mantissas.size), 0)
    np.maximum.accumulate(index, out=index)
    filled = mantissas[index]
    first = int(np.argmax(usable))
    filled[:first] = mantissas[first]
    return filled


def _encode_decimal(values: np.ndarray, k: int, sparse: bool = False) -> tuple[bytes, bool, bool]:
    """Decimal value section, whether it uses pcodec, and whether it reconstructs by multiplying."""
    mantissas, patch = _approximate(values, k)
    multiply = False
    if np.count_nonzero(patch) > values.size // _TRY_MULTIPLY_SHARE:
        alt_mantissas, alt_patch = _approximate(values, k, multiply=True)
        if np.count_nonzero(alt_patch) < np.count_nonzero(patch):
            mantissas, patch, multiply = alt_mantissas, alt_patch, True
    exact, near = _classify(patch)
    mantissas = _fill_far(mantissas, exact | near)
    # Recompute patches against the filled mantissas: far slots patch from a neighbour.
    patch = _patches(values, mantissas, k, multiply)
    section, uses_pco = _decimal_section(mantissas, patch, sparse)
    return section, uses_pco, multiply


def _decimal_section(mantissas: np.ndarray, patch: np.ndarray, sparse: bool,
                     column: tuple[bytes, bool] | None = None) -> tuple[bytes, bool]:
    """Patches and mantissa column (``column``: the mantissas already coded): the value
    section of a decimal block, and whether it holds a pcodec stream."""
    positions = np.flatnonzero(patch)
    coded, uses_pco = column if column is not None else _intcol.encode(mantissas, sparse)
    if not positions.size:  # the common case: every value on its decimal grid
        return _NO_PATCHES + coded, uses_pco
    gaps = np.diff(positions, prepend=-1) - 1
    parts = [uvarint(positions.size)]
    for gap, delta in zip(gaps.tolist(), patch[positions].tolist(), strict=True):
        parts.append(uvarint(gap))
        parts.append(uvarint(zigzag(delta)))
    parts.append(coded)
    return b"".join(parts), uses_pco


Simple = tuple[np.ndarray, np.ndarray, tuple[bytes, bool]]  # mantissas, patches, coded mantissas


def _simple_rows(rows: np.ndarray, scales: list[int | None], sparse: bool) -> list[Simple | None]:
    """Per row of blocks of equal length: its mantissas, patches and coded mantissa column at
    its scale, when ``_encode_decimal`` would keep them as they are (few patches, so no
    multiply reconstruction, and no far value to fill); None for the other rows."""
    n = rows.shape[1]
    mantissas, patch = _approximate(rows, np.array([k or 0 for k in scales])[:, None])
    exact, near = _classify(patch)
    simple = (exact | near).all(axis=1) & (np.count_nonzero(patch, axis=1) <= n // _TRY_MULTIPLY_SHARE)
    simple &= np.array([k is not None for k in scales])
    picked = np.flatnonzero(simple)
    out: list[Simple | None] = [None] * len(scales)
    for i, column in zip(picked.tolist(), _intcol.encode_rows(mantissas[picked], sparse), strict=True):
        out[i] = (mantissas[i], patch[i], column)
    return out


def _decode_decimal(
    reader: Reader, n: int, k: int, multiply: bool, pco_file: wrapped.FileDecompressor | None
) -> np.ndarray:
    n_patches = reader.uvarint()
    if n_patches > n:
        raise corrupt(f"{n_patches} patches in a block of {n} points")
    positions: list[int] = []
    deltas: list[int] = []
    position = -1
    for _ in range(n_patches):
        position += reader.uvarint() + 1
        positions.append(position)
        deltas.append(unzigzag(reader.uvarint()) & _U64_MASK)
    if position >= n:
        raise corrupt("patch position beyond the block")
    mantissas = _intcol.decode(reader, n, pco_file)
    values = reconstruct(mantissas, k, multiply)
    if positions:
        bits = values.view(_U64)
        bits[positions] += np.array(deltas, dtype=_U64)  # wraps mod 2^64 like the encoder
    return values


class DecimalCodec:
    """Tag 3, or with ``sparse`` tag 4 (same decoder; see the module docstring)."""

    def __init__(self, sparse: bool = False) -> None:
        self.sparse = sparse
        self.tag = SPARSE_TAG if sparse else TAG
        self.name = SPARSE_NAME if sparse else NAME

    def encode(self, timestamps_ms: np.ndarray, values: np.ndarray) -> bytes:
        n = timestamps_ms.size
        tag = self.tag
        if n == 0:
            return bytes((tag, 0))
        return self._block(timestamps_ms, values, choose_scale(values))

    def encode_many(self, blocks: list[tuple[np.ndarray, np.ndarray]]) -> list[bytes]:
        """``encode`` of every (timestamps, values) block, the same bytes; the scales of
        blocks of one length are chosen together."""
        out = [b""] * len(blocks)
        by_length: dict[int, list[int]] = {}
        for i, (ts, _) in enumerate(blocks):
            if ts.size:
                by_length.setdefault(ts.size, []).append(i)
            else:
                out[i] = bytes((self.tag, 0))
        ts_sections: dict[bytes, tuple[bytes, bool]] = {}  # series scraped together share their timestamps
        for members in by_length.values():
            rows = np.stack([blocks[i][1] for i in members])
            scales = choose_scales(rows)
            for i, row, k, simple in zip(members, rows, scales, _simple_rows(rows, scales, self.sparse), strict=True):
                ts = blocks[i][0]
                key = ts.tobytes()
                ts_section = ts_sections.get(key)
                if ts_section is None:
                    ts_section = ts_sections[key] = _timecol.encode(ts, self.sparse)
                out[i] = self._block(ts, row, k, simple, ts_section)
        return out

    def _block(self, timestamps_ms: np.ndarray, values: np.ndarray, k: int | None,
               simple: Simple | None = None, ts_section: tuple[bytes, bool] | None = None) -> bytes:
        ts_section, ts_pco = ts_section or _timecol.encode(timestamps_ms, self.sparse)
        layout, value_section, value_pco = _encode_values(values, k, self.sparse, simple)
        uses_pco = ts_pco or value_pco
        if uses_pco:
            layout |= _HAS_PCO_HEADER
        header = _pco.HEADER if uses_pco else b""
        return b"".join((bytes((self.tag,)), uvarint(timestamps_ms.size), bytes((layout,)), header, ts_section,
                         value_section))

    def decode(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        reader = Reader(data, 1)
        n = reader.count()
        if n == 0:
            reader.finish()
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        layout = reader.byte()
        k = (layout & _SCALE_MASK) >> _SCALE_SHIFT
        float_mode = bool(layout & _FLOAT_MODE)
        multiply = bool(layout & _MULTIPLY)
        if k > MAX_SCALE or (float_mode and (k or multiply)):
            raise corrupt(f"unknown decimal layout {layout:#04x}")
        pco_file = None
        if layout & _HAS_PCO_HEADER:
            pco_file = _pco.file_decompressor(reader.take(_pco.HEADER_SIZE))
        timestamps = _timecol.decode(reader, n, pco_file)
        if not float_mode:
            values = _decode_decimal(reader, n, k, multiply, pco_file)
        elif pco_file is None:
            raise corrupt("float values without a pcodec header")
        else:
            values = _pco.decompress(reader, pco_file, n, "f64")
        reader.finish()
        return timestamps, values


def _encode_values(values: np.ndarray, k: int | None, sparse: bool = False,
                   simple: Simple | None = None) -> tuple[int, bytes, bool]:
    """Layout bits (without the pcodec flag), value section, whether it uses pcodec; ``k``
    is ``choose_scale(values)``, ``simple`` what ``_simple_rows`` found for them."""
    if k is not None:
        if simple is not None:
            section, uses_pco = _decimal_section(simple[0], simple[1], sparse, simple[2])
            multiply = False
        else:
            section, uses_pco, multiply = _encode_decimal(values, k, sparse)
        layout = (k << _SCALE_SHIFT) | (_MULTIPLY if multiply else 0)
        if k < _TRY_FLOAT_SCALE:
            return layout, section, uses_pco
    floats = min((_pco.compress(values, _pco.config(order)) for order in (0, 1)), key=len)
    if k is not None and len(section) <= len(floats):
        return layout, section, uses_pco
    return _FLOAT_MODE, floats, True
