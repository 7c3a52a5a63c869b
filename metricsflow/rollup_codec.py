"""Rollup block format version 2: window starts on a grid, columns as predicted decimals.

Version 1 stored zstd(8 raw float64 columns): 4.19 bytes per raw point for the 1m
tier of the `metricsflow load` workload, 3.5x the raw chunk; version 2 takes 1.36.
The seven columns are values of one series, so they share its decimal scale and
predict one another:

* Predictors (``predict``): ``first`` from the previous window's ``last`` (one
  sample step apart), ``min``/``max`` from ``min``/``max(first, last)``, ``sum``
  from ``count * (min + max) / 2``, ``increase`` from ``max(last - first, 0)``
  (a counter without resets); ``count`` and ``last`` from nothing (``last`` is
  coded as differences instead).
* Each column is stored as integer mantissas ``m = rint(x * 10^k)`` minus the
  predictor's mantissa: an integer column, bit-packed from its minimum (zeros
  elided by a bitmap for the often-exact min/max) or pcodec, whichever is
  smaller; varints for short blocks, where pcodec's metadata costs more than the
  2 windows of a 1h block. Patches make the floats bit-exact, as in the decimal
  chunk codec: sums of 2-decimal floats land an ulp off the decimal; NaN, +-Inf
  and -0.0 get a full patch and repeat the predicted mantissa.
* A column equal to its predictor bit for bit (``increase`` of a steady counter
  chunk, ``sum`` when every window has one sample) costs its mode byte only.
* Window starts reuse the chunk timestamp section (``codecs._timecol``): a full
  2 h block of 1 m windows is t0, step and one zero byte.

Predictors are computed from columns decoded before (order ``ORDER``) with
comparisons and correctly rounded arithmetic, so encoder and decoder agree exactly.
Layout: docs/format/chunks.md, "Rollup blocks".

Speed: blocks of more than ``_SHORT`` windows (the 1m tier) go through numpy, all seven
columns per call where the steps allow, the packings of a seal's batch planned and written
together (``_long_sections``); shorter ones (the 1h tier, sparse series) are coded by a
scalar twin on Python floats and ints, which writes the same bytes
(``_encode_columns_scalar``, ``_decode_columns_scalar``; checked against the numpy path
in tests/test_rollup_format.py). CPU-µs per block: perf/RESULTS.md, "Rollup blocks".
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Sequence

import numpy as np
from pcodec import wrapped

from metricsflow import packed_ints, sketch
from metricsflow.codecs import _intcol, _pco, _timecol
from metricsflow.codecs._wire import Reader, corrupt, unzigzag, uvarint
from metricsflow.codecs.decimal_codec import MAX_MANTISSA, MAX_SCALE, reconstruct

VERSION = 2
ORDER = ("count", "last", "first", "min", "max", "sum", "increase")  # coding order

# Block flags.
_DIGESTS = 0x01
_PCO_HEADER = 0x02
_RAW_STARTS = 0x04  # starts not strictly increasing (only hand-built rollups): n x i64
_KNOWN_FLAGS = _DIGESTS | _PCO_HEADER | _RAW_STARTS

# Column mode byte: bits 0-4 the decimal scale k (0..18) or one of the kinds below;
# for decimals bit 5 = multiply (m x 10^-k) and bits 6-7 the residual coding.
_KIND_MASK = 0x1F
_PCO_FLOATS = 29
_PREDICTED = 30
_RAW_FLOATS = 31
_MULTIPLY = 0x20
_CODING_SHIFT = 6
_ZERO, _VARINTS, _PCODEC, _PACKED = range(4)
_DENSE_PCODEC, _DENSE_PACKED = 1, 3  # patch heads; even heads count sparse patches

_NEAR_ULPS = 4  # as the decimal chunk codec: a value this close is on the grid
_FAR_ULPS = 1 << 16
_U64 = np.uint64
_U64_MASK = (1 << 64) - 1
_POW10 = [float(10**k) for k in range(MAX_SCALE + 1)]
# Up to this many windows (the 1h tier holds 2 per block) residuals are varints or
# packed, never pcodec: its metadata alone is ~6-10 bytes, and a call costs ~30 µs.
_SHORT = 16
_FAR_SHARE = 4  # more than n/4 values off the decimal grid: store the floats
_TRY_MULTIPLY_SHARE = 32
# More than n/8 patches: a dense column (±1 ulp packs in 2 bits per window, where a
# sparse patch costs 2 bytes).
_DENSE_SHARE = 8
_ORDER0 = _pco.config(0)
_ORDER1 = _pco.config(1)
_NO_PATCHES = uvarint(0)


# ---------------------------------------------------------------- predictors


def _previous(col: np.ndarray, seed: float) -> np.ndarray:
    out = np.empty_like(col)
    out[:1] = seed
    out[1:] = col[:-1]
    return out


def predict(name: str, got: dict[str, np.ndarray], n: int) -> np.ndarray:
    """The float predictor of column ``name`` from the columns coded before it (``ORDER``).
    Callers silence numpy's float warnings (inf - inf is a valid NaN here).

    Comparisons and correctly rounded arithmetic on decoded bits, so encoder and
    decoder agree exactly. Not ``np.minimum``/``np.maximum``: which of -0.0 and +0.0
    (or of two NaNs) they return is up to the SIMD loop. The NaN payload of
    arithmetic on two NaNs is hardware-defined too, so a column holding a NaN is
    never stored as "equal to its predictor" (``encode_columns``).
    Choices measured on the load workload (plug-in entropy of the 2-decimal residual,
    bits per window): ``sum`` from (min + max) / 2 9.3 vs (first + last) / 2 10.3;
    ``first`` from the previous ``last`` 8.7 vs 10 for its own previous value.
    """
    if n == 0:
        return np.zeros(0)
    if name in ("count", "last"):  # count packs to 3 bytes when constant; last is coded as differences
        return np.zeros(n)
    last = got["last"]
    if name == "first":
        return _previous(last, float(last[0]))
    first = got["first"]
    if name == "min":
        return np.where(first <= last, first, last)
    if name == "max":
        return np.where(first >= last, first, last)
    if name == "sum":
        return got["count"] * ((got["min"] + got["max"]) / 2)
    if name == "increase":
        step = last - first
        return np.where(step > 0, step, 0.0)  # a counter without resets
    raise ValueError(f"no predictor for column {name!r}")


# ---------------------------------------------------------------- columns

# ``last`` moves like the series: its residuals (the mantissas) are coded as
# first-order differences; the others are residuals of predictors, coded as they are.
_DELTAS = frozenset({"last"})
_ZERO_PREDICTED = frozenset({"count", "last"})
_ELIDE_SHARE = 4  # try eliding zeros when at least n/4 values are 0 (min, max: ~40 %)


def _residual_section(
    residuals: np.ndarray, name: str, zeros: int, packed: packed_ints.Packing | None
) -> tuple[int, bytes, bool]:
    """Residual coding of one column of more than ``_SHORT`` windows, its bytes, and whether
    they hold a pcodec stream (``zeros``: how many residuals are 0; ``packed``: their
    packing, unless ``name`` is coded as deltas). The format's choice one column at a time:
    ``_long_sections`` makes it for many together and is tested against this."""
    deltas = name in _DELTAS
    if zeros == residuals.size:
        return _ZERO, b"", False
    if deltas:
        packed = packed_ints.plan(residuals, deltas)
    pcodec_size = _NOT_TRIED
    if packed is None or pcodec_may_win(residuals[None, :], deltas)[0]:  # without a packing only pcodec codes it
        pcodec = _pco.compress(residuals, _ORDER1 if deltas else _ORDER0)
        pcodec_size = len(pcodec)
    best: packed_ints.Packing | None = None  # the smallest packing, the first on ties
    if packed is not None and packed.size < pcodec_size:
        best = packed
    if not deltas and zeros * _ELIDE_SHARE >= residuals.size:
        elided = packed_ints.plan_zeros_elided(residuals)
        if elided is not None and elided.size < (pcodec_size if best is None else best.size):
            best = elided
    if best is None:  # pcodec wins ties
        return _PCODEC, pcodec, True
    return _PACKED, best.to_bytes(), False


# pcodec is tried on a long residual column only where it can beat packing, which spends
# the same bits on every value: a common divisor of the offsets (pcodec's IntMult mode) or
# outliers that make the width at least _TAIL_BITS wider than the middle 90 % needs (its
# bins then give the bulk fewer bits). Elsewhere it won 2 of 4,979 columns of the load
# workload and real node-exporter data, by 13 bytes in all, and a try costs ~3 µs: ~25 of a
# 1m block's ~150 µs (perf/RESULTS.md, "... pcodec where it can win").
_TAIL_BITS = 3
_TAIL_SHARE = 20  # the middle: all but the n // 20 lowest and highest
_NOT_TRIED = 1 << 62


def pcodec_may_win(rows: np.ndarray, deltas: bool) -> list[bool]:
    """Per row of a 2-D int64 array of residuals (their first differences if ``deltas``,
    as pcodec and the packing code them): whether pcodec is tried."""
    if deltas:
        rows = np.diff(rows, axis=1)  # wraps like the packing's differences
    n = rows.shape[1]
    if n == 0 or rows.shape[0] == 0:
        return [False] * rows.shape[0]
    k = n // _TAIL_SHARE
    offsets = rows.view(_U64) - rows.min(axis=1).view(_U64)[:, None]
    ranked = np.sort(offsets, axis=1)  # faster than np.partition at two ranks
    # A divisor of the first offsets (one is likely the 0 at the minimum) bounds the
    # common one: where they share none, no column-wide one exists.
    divisors = np.gcd.reduce(offsets[:, :_intcol.DIVISOR_PROBE], axis=1)
    out: list[bool] = []
    for top, inner_low, inner_high, divisor in zip(ranked[:, -1].tolist(), ranked[:, k].tolist(),
                                                   ranked[:, n - 1 - k].tolist(), divisors.tolist(), strict=True):
        width = top.bit_length()  # over 63 bits only pcodec codes the column
        out.append(divisor > 1 or width > packed_ints.WIDTH_MASK
                   or width - (inner_high - inner_low).bit_length() >= _TAIL_BITS)
    return out


_DENSE_PCODEC_HEAD = uvarint(_DENSE_PCODEC)
_DENSE_PACKED_HEAD = uvarint(_DENSE_PACKED)


def _dense_pcodec(patch: np.ndarray, packed: packed_ints.Packing | None, may_win: bool) -> bytes | None:
    """A dense patch column as pcodec where it is tried (no packing, or the residuals' gate lets
    it) and beats the packing with its head; None: the packing."""
    if packed is not None and not may_win:
        return None
    pcodec = _DENSE_PCODEC_HEAD + _pco.compress(patch, _ORDER0)
    return pcodec if packed is None or len(pcodec) < packed.size + 1 else None


def _patch_section(patch: np.ndarray) -> tuple[bytes, bool]:
    """``head uvarint`` then the patches: head 1 a dense pcodec column, 3 a dense packed
    column, even: head / 2 sparse (gap, patch) pairs."""
    if not patch.any():
        return _NO_PATCHES, False
    positions = np.flatnonzero(patch)
    if positions.size * _DENSE_SHARE > patch.size:  # sums: ~1/3 of the windows an ulp off
        packed = packed_ints.plan(patch, False)
        pcodec = _dense_pcodec(patch, packed, packed is not None and bool(pcodec_may_win(patch[None, :], False)[0]))
        if pcodec is not None:
            return pcodec, True
        assert packed is not None  # _dense_pcodec codes every column that has no packing
        return _DENSE_PACKED_HEAD + packed.to_bytes(), False
    gaps = np.diff(positions, prepend=-1) - 1
    pairs = np.empty(2 * positions.size, dtype=np.int64)
    pairs[0::2] = gaps
    pairs[1::2] = patch[positions]
    pairs[1::2] = ((pairs[1::2] << 1) ^ (pairs[1::2] >> 63))  # zigzag, wrapping like the decoder
    return uvarint(positions.size << 1) + b"".join(map(uvarint, pairs.view(_U64).tolist())), False


def _float_column(values: np.ndarray) -> tuple[bytes, bool]:
    raw = values.astype("<f8").tobytes()
    if values.size > _SHORT:
        floats = min((_pco.compress(values, config) for config in (_ORDER0, _ORDER1)), key=len)
        if len(floats) < len(raw):
            return bytes((_PCO_FLOATS,)) + floats, True
    return bytes((_RAW_FLOATS,)) + raw, False


def encode_columns(values: np.ndarray, predictors: np.ndarray, scales: np.ndarray) -> list[tuple[bytes, bool]]:
    """Sections of the rows of ``values`` (one column per row, in ``ORDER``, repeated for
    the blocks of ``encode_many``) and whether each holds a pcodec stream; ``scales[i] < 0``
    stores row i as floats.

    All rows go through each numpy step together: a block is 7 short columns, and
    per-column calls spent most of the encode time on numpy call overhead.
    """
    n = values.shape[1]
    k = np.maximum(scales, 0)
    pow10 = np.array([_POW10[d] for d in k.tolist()])[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        mantissas = _scaled(values * pow10)
        approx = mantissas.astype(np.float64)
        patch = _bit_diff(values, approx / pow10)
        alt = _bit_diff(values, approx * (1.0 / pow10))  # 1.0 / 10^k is float("1e-k") for k <= 18
        wrong = np.count_nonzero(patch, axis=1)
        use_alt = (np.count_nonzero(alt, axis=1) < wrong) & (wrong > n // _TRY_MULTIPLY_SHARE)
        if use_alt.any():
            patch = np.where(use_alt[:, None], alt, patch)
        off_grid = np.abs(patch) > _NEAR_ULPS  # also the NaN/Inf/huge slots, whose mantissa is 0
        predicted = _scaled(predictors * pow10)
        # Far values (NaN, +-Inf, -0.0, too many digits) take the predicted mantissa: no
        # residual, a 9-10 byte patch. Values tens of ulps off (a small increase summed
        # from inexact float deltas) keep theirs and get a 1-3 byte patch.
        far = np.abs(patch) > _FAR_ULPS
        if far.any():  # else the mantissas and so the patches stay
            mantissas = np.where(far, predicted, mantissas)
            approx = mantissas.astype(np.float64)
            patch = np.where(use_alt[:, None], _bit_diff(values, approx * (1.0 / pow10)),
                             _bit_diff(values, approx / pow10))
    residuals = (mantissas.view(_U64) - predicted.view(_U64)).view(np.int64)
    same = np.all(values.view(_U64) == predictors.view(_U64), axis=1)
    if same.any():
        same &= ~np.isnan(values).any(axis=1)
    floats = (scales < 0) | (np.count_nonzero(off_grid, axis=1) > n // _FAR_SHARE)
    patched = patch.any(axis=1).tolist()
    zeros = (n - np.count_nonzero(residuals, axis=1)).tolist()
    same_rows, float_rows, scales_k, multiply = same.tolist(), floats.tolist(), k.tolist(), use_alt.tolist()
    coded = [i for i in range(values.shape[0]) if not same_rows[i] and not float_rows[i]]
    if n > _SHORT:
        sections = _long_sections(residuals, patch, coded, zeros, patched)
    else:
        sections = _short_sections(residuals, patch, coded, patched)
    out: list[tuple[bytes, bool]] = []
    for i in range(values.shape[0]):
        if same_rows[i]:
            out.append((bytes((_PREDICTED,)), False))
        elif float_rows[i]:
            out.append(_float_column(values[i]))
        else:
            patches, coding, section, pco = sections[i]
            mode = scales_k[i] | (_MULTIPLY if multiply[i] else 0) | (coding << _CODING_SHIFT)
            out.append((bytes((mode,)) + patches + section, pco))
    return out


def _short_sections(
    residuals: np.ndarray, patch: np.ndarray, rows: list[int], patched: list[bool]
) -> dict[int, tuple[bytes, int, bytes, bool]]:
    """``_long_sections`` for rows of at most ``_SHORT`` windows (the 1h tier holds 2): each
    row's residuals as varints or packed, as ``_residual_section_scalar`` chooses and writes
    them, both codings of all rows sized together and only the kept ones written, also
    together. Row by row, the varint and packing calls were ~60 % of a short 1m block's encode."""
    if not rows:
        return {}
    sub = residuals[rows]
    last = np.fromiter((i % len(ORDER) == _LAST for i in rows), dtype=bool, count=len(rows))
    packing = packed_ints.RowsPacking(sub, last)
    varint_sizes = packed_ints.varint_sizes(packed_ints.zigzags(sub)).sum(axis=1)
    live = sub.any(axis=1)
    packs = live & (packing.sizes >= 0) & (packing.sizes < varint_sizes)  # varints win ties
    as_varints = np.flatnonzero(live & ~packs).tolist()
    as_packed = np.flatnonzero(packs).tolist()
    sections: dict[int, tuple[int, bytes]] = {}
    for j, body in zip(as_varints, packed_ints.zigzag_varint_rows(sub[as_varints]), strict=True):
        sections[rows[j]] = (_VARINTS, body)
    for j, body in zip(as_packed, packing.write(as_packed), strict=True):
        sections[rows[j]] = (_PACKED, body)
    patch_rows = patch.tolist() if any(patched[i] for i in rows) else []
    out: dict[int, tuple[bytes, int, bytes, bool]] = {}
    for i in rows:
        coding, section = sections.get(i, (_ZERO, b""))
        out[i] = (_patch_section_scalar(patch_rows[i]) if patched[i] else _NO_PATCHES, coding, section, False)
    return out


def _long_sections(
    residuals: np.ndarray, patch: np.ndarray, rows: list[int], zeros: list[int], patched: list[bool]
) -> dict[int, tuple[bytes, int, bytes, bool]]:
    """Per row of more than ``_SHORT`` windows: its patch section, residual coding and section,
    and whether they hold a pcodec stream; the bytes of ``_patch_section`` and
    ``_residual_section`` (the per-column reference, tests/test_rollup_format.py), with the
    packings of all rows planned and written together: a 1m block is 7 such columns, and
    one at a time the numpy calls cost more than the bits."""
    n = residuals.shape[1]
    live = [i for i in rows if zeros[i] < n]
    lasts = [i for i in live if i % len(ORDER) == _LAST]
    others = [i for i in live if i % len(ORDER) != _LAST]
    elide = [i for i in others if zeros[i] * _ELIDE_SHARE >= n]
    plans = dict(zip(others, packed_ints.plan_rows(residuals[others]), strict=True))
    plans.update(zip(lasts, packed_ints.plan_rows(residuals[lasts], deltas=True), strict=True))
    elided = dict(zip(elide, packed_ints.plan_rows_zeros_elided(residuals[elide]), strict=True))
    tried = dict(zip(others, pcodec_may_win(residuals[others], False), strict=True))
    tried.update(zip(lasts, pcodec_may_win(residuals[lasts], True), strict=True))
    written: list[packed_ints.Packing] = []
    residual: dict[int, tuple[int, bytes | int, bool]] = {}  # an int: the index of a written packing
    for i in live:
        pcodec, pcodec_size = b"", _NOT_TRIED
        if tried[i] or plans[i] is None:  # without a packing only pcodec codes the column
            pcodec = _pco.compress(residuals[i], _ORDER1 if i % len(ORDER) == _LAST else _ORDER0)
            pcodec_size = len(pcodec)
        best = plans[i]
        if best is not None and best.size >= pcodec_size:
            best = None
        other = elided.get(i)
        if other is not None and other.size < (pcodec_size if best is None else best.size):
            best = other
        if best is None:  # pcodec wins ties
            residual[i] = (_PCODEC, pcodec, True)
        else:
            residual[i] = (_PACKED, len(written), False)
            written.append(best)
    patches: dict[int, tuple[bytes | int, bool]] = {}
    patch_rows = [i for i in rows if patched[i]]
    counts = np.count_nonzero(patch[patch_rows], axis=1).tolist() if patch_rows else []
    dense = [i for i, count in zip(patch_rows, counts, strict=True) if count * _DENSE_SHARE > n]
    # Dense patches try pcodec behind the residuals' gate: on the load workload (1,024 dense
    # columns in 512 blocks) it tries 167 and keeps 163 of pcodec's 227 wins, 159 of the 1,976
    # bytes they save, for 4 % of the 1m encode.
    for i, packed, may_win in zip(dense, packed_ints.plan_rows(patch[dense]), pcodec_may_win(patch[dense], False),
                                  strict=True):
        pcodec = _dense_pcodec(patch[i], packed, may_win)
        if pcodec is not None:
            patches[i] = (pcodec, True)
        else:
            patches[i] = (len(written), False)
            written.append(packed)
    for i in patch_rows:
        if i not in patches:
            patches[i] = _patch_section(patch[i])  # sparse: a few (gap, patch) varints
    bodies = packed_ints.write_many(written)
    out: dict[int, tuple[bytes, int, bytes, bool]] = {}
    for i in rows:
        patch_section, patch_pco = patches.get(i, (_NO_PATCHES, False))
        if isinstance(patch_section, int):
            patch_section = _DENSE_PACKED_HEAD + bodies[patch_section]
        coding, section, res_pco = residual.get(i, (_ZERO, b"", False))
        if isinstance(section, int):
            section = bodies[section]
        out[i] = (patch_section, coding, section, patch_pco or res_pco)
    return out



def _scaled(x: np.ndarray) -> np.ndarray:
    """rint(x) as int64 where it fits in +-2^53, else 0 (NaN, +-Inf, huge)."""
    if x.size and np.abs(x).max() <= MAX_MANTISSA:  # all fit (a NaN fails): one call fewer
        return np.rint(x).astype(np.int64)
    scaled = np.rint(x)
    return np.where(np.abs(scaled) <= MAX_MANTISSA, scaled, 0.0).astype(np.int64)


def _bit_diff(values: np.ndarray, approx: np.ndarray) -> np.ndarray:
    return (values.view(_U64) - approx.view(_U64)).view(np.int64)


def decode_column(
    reader: Reader, n: int, predictor: np.ndarray, pco_file: wrapped.FileDecompressor | None,
    zero_predicted: bool = False,
) -> np.ndarray:
    """One column; ``zero_predicted``: ``predictor`` is all zeros (count, last)."""
    mode = reader.byte()
    k = mode & _KIND_MASK
    if mode == _PREDICTED:
        return predictor.copy()
    if mode == _RAW_FLOATS:
        return reader.array("<f8", n)
    if mode == _PCO_FLOATS:
        return _pco.decompress(reader, _need(pco_file), n, "f64")
    if k > MAX_SCALE:
        raise corrupt(f"unknown rollup column mode {mode:#04x}")
    patch = _read_patches(reader, n, pco_file)  # None: no patches
    coding = mode >> _CODING_SHIFT
    if coding == _ZERO:
        residuals = np.zeros(n, dtype=np.int64)
    elif coding == _VARINTS:
        residuals = np.array(_read_varints(reader, n), dtype=np.int64)
    elif coding == _PCODEC:
        residuals = _pco.decompress(reader, _need(pco_file), n, "i64")
    else:
        residuals = packed_ints.unpack(reader, n)
    mantissas = residuals
    if not zero_predicted:  # count and last are predicted by zeros
        mantissas = (residuals.view(_U64) + _scaled(predictor * _POW10[k]).view(_U64)).view(np.int64)
    values = reconstruct(mantissas, k, bool(mode & _MULTIPLY))
    if patch is not None:
        bits = values.view(_U64)
        bits += patch.view(_U64)  # wraps mod 2^64 like the encoder
    return values


def _need(pco_file: wrapped.FileDecompressor | None) -> wrapped.FileDecompressor:
    if pco_file is None:
        raise corrupt("pcodec column in a block without a pcodec header")
    return pco_file


def _read_patches(reader: Reader, n: int, pco_file: wrapped.FileDecompressor | None) -> np.ndarray | None:
    head = reader.uvarint()
    if head == 0:
        return None
    if head in (_DENSE_PCODEC, _DENSE_PACKED):
        return _read_dense_patches(reader, head, n, pco_file)
    count = head >> 1
    if head & 1 or count > n:
        raise corrupt(f"bad patch header {head} for a column of {n} windows")
    patch = np.zeros(n, dtype=np.int64)
    position = -1
    for _ in range(count):
        position += reader.uvarint() + 1
        if position >= n:
            raise corrupt("patch position beyond the column")
        patch[position] = unzigzag(reader.uvarint())
    return patch


def _read_dense_patches(
    reader: Reader, head: int, n: int, pco_file: wrapped.FileDecompressor | None
) -> np.ndarray:
    if head == _DENSE_PCODEC:
        return _pco.decompress(reader, _need(pco_file), n, "i64")
    return packed_ints.unpack(reader, n)


# ---------------------------------------------------------------- blocks


_POW10_COLUMN = np.array(_POW10)[:, None]
_DIGIT_COST_BITS = float(np.log2(10.0))
_FAR_COST_BITS = 80.0


def _value_scale(first: np.ndarray, last: np.ndarray) -> int:
    """One decimal scale for the six value columns, from the samples ``first`` and ``last``;
    -1 for floats.

    Sums and differences of k-digit decimals are k-digit decimals (an ulp or two off,
    which patches absorb), so one scan serves all six. The cost model is the decimal
    chunk codec's (``choose_scale``), evaluated for every k in two numpy passes (its
    loop over k cost ~100 µs of numpy call overhead per block): k < 4 for all values,
    then the larger k for those not on a grid yet (one 19-row pass spent ~5x the
    arithmetic on series that are all integers or 2-decimal).
    """
    values = np.concatenate([first, last])
    hit = _grid_hits(values, _POW10_COLUMN[:_FIRST_SCALES])
    digits = np.argmax(hit, axis=0)  # the first k on the grid
    found = hit.any(axis=0)
    if not found.all():
        rest = np.flatnonzero(~found)
        more = _grid_hits(values[rest], _POW10_COLUMN[_FIRST_SCALES:])
        digits[rest] = np.where(more.any(axis=0), _FIRST_SCALES + np.argmax(more, axis=0), MAX_SCALE + 1)
    return _best_scale(np.bincount(digits, minlength=MAX_SCALE + 2).tolist(), values.size)


_FIRST_SCALES = 4  # integers, tenths, percentages, milliseconds


def _grid_hits(values: np.ndarray, pow10: np.ndarray) -> np.ndarray:
    """Row i: which values are within ``_NEAR_ULPS`` of rint(v * pow10[i]) / pow10[i]."""
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.rint(values * pow10)
        patch = _bit_diff(values, scaled / pow10)  # values broadcast over the rows
    return (np.abs(scaled) <= MAX_MANTISSA) & (np.abs(patch) <= _NEAR_ULPS)


def _best_scale(counts: list[int], n: int) -> int:
    """The cheapest k given how many of the n values first fit the grid at each k
    (``counts[MAX_SCALE + 1]``: at none); -1 for floats. Python floats: the same
    products and sums as numpy's float64, the first minimum as ``np.argmin``."""
    best, best_cost, best_below, below = -1, 0.0, 0, n
    for k in range(MAX_SCALE + 1):
        below -= counts[k]
        if counts[k]:
            cost = k * (_DIGIT_COST_BITS * n) + _FAR_COST_BITS * below
            if best < 0 or cost < best_cost:
                best, best_cost, best_below = k, cost, below
    return -1 if best < 0 or best_below > n // _FAR_SHARE else best


def _encode_columns_vector(values: np.ndarray, n: int, sections: list[bytes]) -> bool:
    """Append the column sections of a block of more than ``_SHORT`` windows; whether
    one holds a pcodec stream."""
    by_name = dict(zip(ORDER, values, strict=True))
    with np.errstate(all="ignore"):
        predictors = np.stack([predict(name, by_name, n) for name in ORDER])
    k = _value_scale(values[ORDER.index("first")], values[ORDER.index("last")])
    scales = np.array([0 if name == "count" else k for name in ORDER])
    uses_pco = False
    for section, col_pco in encode_columns(values, predictors, scales):
        sections.append(section)
        uses_pco |= col_pco
    return uses_pco


def _increasing(starts: np.ndarray) -> bool:
    if starts.size <= _SHORT:  # Python ints: 3 numpy calls cost more
        values = starts.tolist()
        return all(a < b for a, b in itertools.pairwise(values))
    return bool(np.all(starts[1:] > starts[:-1]))


def encode(starts: np.ndarray, columns: dict[str, np.ndarray], digests: list[sketch.Digest] | None) -> bytes:
    """``version u8 | flags u8 | n uvarint | [pcodec header] | starts | 7 columns | [digests]``."""
    n = starts.size
    flags = _DIGESTS if digests is not None else 0
    sections: list[bytes] = []
    uses_pco = False
    if n:
        starts = np.ascontiguousarray(starts, dtype=np.int64)
        if n > 1 and not _increasing(starts):
            flags |= _RAW_STARTS
            sections.append(starts.astype("<i8").tobytes())
        else:
            section, uses_pco = _timecol.encode(starts)
            sections.append(section)
        values = np.array([columns[name] for name in ORDER], dtype=np.float64)
        if n <= _SHORT:
            sections += _encode_columns_scalar(values)
        else:
            uses_pco |= _encode_columns_vector(values, n, sections)
    return _block(n, flags, uses_pco, sections, digests)


def _block(n: int, flags: int, uses_pco: bool, sections: list[bytes], digests: list[sketch.Digest] | None) -> bytes:
    """The block around its starts and column ``sections``: digests, pcodec header, head."""
    if digests is not None:
        for d in digests:
            raw = d.to_bytes()
            sections += [uvarint(len(raw)), raw]
    if uses_pco:
        flags |= _PCO_HEADER
        sections.insert(0, _pco.HEADER)
    return b"".join((bytes((VERSION, flags)), uvarint(n), *sections))


Block = tuple[np.ndarray, dict[str, np.ndarray], list[sketch.Digest] | None]  # starts, columns, digests
_COUNT, _LAST, _FIRST, _MIN, _MAX, _SUM, _INCREASE = range(len(ORDER))


def encode_many(blocks: Sequence[Block]) -> list[bytes]:
    """``encode`` of every block, the same bytes, with the numpy steps of all blocks of one
    length done together: a seal codes a block per series (120 windows in the 1m tier, 2 in
    the 1h tier), and one at a time spent most of its time on numpy call overhead
    (perf/RESULTS.md, "Seals in batches")."""
    out = [b""] * len(blocks)
    by_length: dict[int, list[int]] = {}
    for i, (starts, _, _) in enumerate(blocks):
        n = starts.size
        if n and (n == 1 or _increasing(np.ascontiguousarray(starts, dtype=np.int64))):
            by_length.setdefault(n, []).append(i)
        else:  # empty, or hand-built starts stored raw
            out[i] = encode(*blocks[i])
    for n, members in by_length.items():
        values = np.array([[blocks[i][1][name] for name in ORDER] for i in members], dtype=np.float64)
        with np.errstate(all="ignore"):
            predictors = _predictors_many(values)
        scales = np.repeat(np.array(_value_scales(values[:, _FIRST], values[:, _LAST]), dtype=np.int64)[:, None],
                           len(ORDER), axis=1)
        scales[:, _COUNT] = 0
        rows = len(members) * len(ORDER)
        columns = encode_columns(values.reshape(rows, n), predictors.reshape(rows, n), scales.reshape(rows))
        starts_sections: dict[bytes, tuple[bytes, bool]] = {}  # blocks of one tier mostly share their starts
        for j, i in enumerate(members):
            starts, _, digests = blocks[i]
            key = np.ascontiguousarray(starts, dtype=np.int64).tobytes()
            starts_section = starts_sections.get(key)
            if starts_section is None:
                starts_section = starts_sections[key] = _timecol.encode(np.frombuffer(key, dtype=np.int64))
            own = columns[j * len(ORDER):(j + 1) * len(ORDER)]
            sections = [starts_section[0], *(section for section, _ in own)]
            uses_pco = starts_section[1] or any(pco for _, pco in own)
            out[i] = _block(n, _DIGESTS if digests is not None else 0, uses_pco, sections, digests)
    return out


def _predictors_many(values: np.ndarray) -> np.ndarray:
    """``predict`` of every column of blocks x ``ORDER`` x windows, the same operations."""
    out = np.zeros_like(values)
    last, first = values[:, _LAST], values[:, _FIRST]
    out[:, _FIRST, :1] = last[:, :1]
    out[:, _FIRST, 1:] = last[:, :-1]
    out[:, _MIN] = np.where(first <= last, first, last)
    out[:, _MAX] = np.where(first >= last, first, last)
    out[:, _SUM] = values[:, _COUNT] * ((values[:, _MIN] + values[:, _MAX]) / 2)
    step = last - first
    out[:, _INCREASE] = np.where(step > 0, step, 0.0)
    return out


def _value_scales(first: np.ndarray, last: np.ndarray) -> list[int]:
    """``_value_scale`` of every row pair of blocks x windows."""
    values = np.concatenate([first, last], axis=1)
    blocks, width = values.shape
    hit = _grid_hits(values[:, None, :], _POW10_COLUMN[:_FIRST_SCALES])
    digits = np.argmax(hit, axis=1)
    found = hit.any(axis=1)
    if not found.all():
        rest = np.flatnonzero(~found)
        more = _grid_hits(values.ravel()[rest], _POW10_COLUMN[_FIRST_SCALES:])
        digits.ravel()[rest] = np.where(more.any(axis=0), _FIRST_SCALES + np.argmax(more, axis=0), MAX_SCALE + 1)
    kinds = MAX_SCALE + 2
    counts = np.bincount((digits + np.arange(blocks)[:, None] * kinds).ravel(), minlength=blocks * kinds)
    return [_best_scale(row, width) for row in counts.reshape(blocks, kinds).tolist()]


def _decode_columns_vector(
    reader: Reader, n: int, pco_file: wrapped.FileDecompressor | None
) -> dict[str, np.ndarray]:
    got: dict[str, np.ndarray] = {}
    with np.errstate(all="ignore"):
        for name in ORDER:
            got[name] = decode_column(reader, n, predict(name, got, n), pco_file, name in _ZERO_PREDICTED)
    return got


def decode(data: bytes) -> tuple[np.ndarray, dict[str, np.ndarray], list[sketch.Digest] | None]:
    """Starts, columns by name and digests of a version 2 block; corrupt_chunk on bad input."""
    reader = Reader(data, 1)
    flags = reader.byte()
    if flags & ~_KNOWN_FLAGS:
        raise corrupt(f"unknown rollup block flags {flags:#04x}")
    n = reader.count()
    pco_file = _pco.file_decompressor(reader.take(_pco.HEADER_SIZE)) if flags & _PCO_HEADER else None
    if n:
        starts = reader.array("<i8", n) if flags & _RAW_STARTS else _timecol.decode(reader, n, pco_file)
        if n <= _SHORT:
            got = dict(zip(ORDER, _decode_columns_scalar(reader, n, pco_file), strict=True))
        else:
            got = _decode_columns_vector(reader, n, pco_file)
    else:
        starts = np.zeros(0, dtype=np.int64)
        got = {name: np.zeros(0) for name in ORDER}
    digests = None
    if flags & _DIGESTS:
        digests = []
        for _ in range(n):
            size = reader.uvarint()
            try:
                digests.append(sketch.Digest.from_bytes(reader.take(size)))
            except (ValueError, OverflowError) as exc:
                raise corrupt(f"digest: {exc}") from None
    reader.finish()
    return starts, got, digests


# ---------------------------------------------------------------- short blocks, scalar twin
#
# A 1h block holds 2 windows and a node-exporter 1m block ~4: there the numpy path
# above spent ~200 µs on ~150 calls of a few elements each. These functions do the
# same IEEE operations on Python floats (correctly rounded like numpy's, ``round`` is
# rint's ties-to-even) and must write the same bytes: tests/test_rollup_format.py checks
# both paths against each other. Bits go through ``struct`` (a memcpy: NaN payloads keep).

_I64_MIN = -(1 << 63)
_I64_HALF = 1 << 63  # ((x + half) & mask) - half wraps x into int64 like numpy
_INV_POW10 = [1.0 / p for p in _POW10]  # equals float("1e-k"), the decoder's, for k <= 18


def _structs(count: int) -> tuple[struct.Struct, struct.Struct]:
    """Compiled ``<count d`` and ``<count Q``: formatting the string per call cost ~10 %
    of a short block's encode."""
    found = _STRUCTS.get(count)
    if found is None:
        found = _STRUCTS[count] = (struct.Struct(f"<{count}d"), struct.Struct(f"<{count}Q"))
    return found


_STRUCTS: dict[int, tuple[struct.Struct, struct.Struct]] = {}  # counts up to 7 x _SHORT


def _bits(floats: list[float]) -> tuple[int, ...]:
    as_floats, as_bits = _structs(len(floats))
    return as_bits.unpack(as_floats.pack(*floats))


def _floats(bits: list[int]) -> list[float]:
    as_floats, as_bits = _structs(len(bits))
    return list(as_floats.unpack(as_bits.pack(*bits)))


def _far(x: int, limit: int) -> bool:
    """``np.abs(x) > limit`` for an int64 x: the absolute value of -2^63 stays negative."""
    return x > limit or (x < -limit and x != _I64_MIN)


def _rint_fit(floats: list[float], scale: float) -> list[int]:
    """``_scaled(floats * scale)``: rint where within +-2^53, else 0 (NaN, +-Inf, huge)."""
    top = MAX_MANTISSA
    return [round(s) if -top <= (s := x * scale) <= top else 0 for x in floats]


def _predict_scalar(name: str, got: dict[str, list[float]], n: int) -> list[float]:
    """``predict`` on Python floats: the same comparisons and operations, element by element."""
    if name in ("count", "last"):
        return [0.0] * n
    last = got["last"]
    if name == "first":
        return last[:1] + last[:-1]
    first = got["first"]
    if name == "min":
        return [f if f <= x else x for f, x in zip(first, last, strict=True)]
    if name == "max":
        return [f if f >= x else x for f, x in zip(first, last, strict=True)]
    if name == "sum":
        return [c * ((a + b) / 2) for c, a, b in zip(got["count"], got["min"], got["max"], strict=True)]
    if name == "increase":
        return [s if (s := x - f) > 0 else 0.0 for f, x in zip(first, last, strict=True)]
    raise ValueError(f"no predictor for column {name!r}")


def _value_scale_scalar(values: list[float], bits: list[int]) -> int:
    """``_value_scale`` of a few floats: the first k at which each is on the grid, then
    the same cost model."""
    n = len(values)
    counts = [0] * (MAX_SCALE + 2)
    for x, xb in zip(values, bits, strict=True):
        digits = MAX_SCALE + 1
        for k in range(MAX_SCALE + 1):
            scaled = x * _POW10[k]
            if not -MAX_MANTISSA <= scaled <= MAX_MANTISSA:  # NaN, +-Inf; |scaled| grows with k
                break
            back = math.copysign(round(scaled), scaled) / _POW10[k]  # np.rint keeps the sign of 0
            if back == x or not _far(((xb - _bits([back])[0] + _I64_HALF) & _U64_MASK) - _I64_HALF, _NEAR_ULPS):
                digits = k
                break
        counts[digits] += 1
    return _best_scale(counts, n)


def _uvarints(values: list[int]) -> bytes:
    """Zigzag varints of int64 values."""
    return b"".join([packed_ints.zigzag_varint(x) for x in values])


def _patch_section_scalar(patch: list[int]) -> bytes:
    parts, previous = [], -1
    for position, delta in enumerate(patch):
        if delta:
            parts += [uvarint(position - previous - 1), packed_ints.zigzag_varint(delta)]
            previous = position
    return uvarint(len(parts)) + b"".join(parts)


def _residual_section_scalar(values: list[int], name: str) -> tuple[int, bytes]:
    if not any(values):
        return _ZERO, b""
    varints = _uvarints(values)
    packed = packed_ints.pack_small(values, name in _DELTAS)
    if packed is None or len(varints) <= len(packed):
        return _VARINTS, varints
    return _PACKED, packed


def _encode_columns_scalar(values: np.ndarray) -> list[bytes]:
    """Sections of the rows of ``values`` (``ORDER``) of a block of at most ``_SHORT``
    windows: what ``_encode_columns_vector`` writes."""
    n = values.shape[1]
    rows = values.tolist()
    row_bits = values.view(_U64).tolist()
    got = dict(zip(ORDER, rows, strict=True))
    scale = _value_scale_scalar(got["first"] + got["last"], row_bits[2] + row_bits[1])
    out: list[bytes] = []
    for name, v, vb in zip(ORDER, rows, row_bits, strict=True):
        pred = _predict_scalar(name, got, n)
        if pred == v and list(_bits(pred)) == vb and all(x == x for x in v):  # never for NaN: hardware payloads
            out.append(bytes((_PREDICTED,)))
            continue
        k = 0 if name == "count" else scale
        if k < 0:
            out.append(bytes((_RAW_FLOATS,)) + struct.pack(f"<{n}Q", *vb))
            continue
        pw, inv = _POW10[k], _INV_POW10[k]
        mantissas = _rint_fit(v, pw)
        approx = [float(m) for m in mantissas]
        back = _bits([a / pw for a in approx] + [a * inv for a in approx])
        patch = [((b - a + _I64_HALF) & _U64_MASK) - _I64_HALF for b, a in zip(vb, back[:n], strict=True)]
        wrong = n - patch.count(0)
        multiply = False
        if wrong:
            alt = [((b - a + _I64_HALF) & _U64_MASK) - _I64_HALF for b, a in zip(vb, back[n:], strict=True)]
            if n - alt.count(0) < wrong and wrong > n // _TRY_MULTIPLY_SHARE:
                multiply, patch = True, alt
            if sum(_far(d, _NEAR_ULPS) for d in patch) > n // _FAR_SHARE:
                out.append(bytes((_RAW_FLOATS,)) + struct.pack(f"<{n}Q", *vb))
                continue
        zero_predicted = name in ("count", "last")
        predicted = [0] * n if zero_predicted else _rint_fit(pred, pw)
        if wrong:
            for i, d in enumerate(patch):
                if _far(d, _FAR_ULPS):  # NaN, +-Inf, -0.0, many digits: the predicted mantissa, a full patch
                    mantissas[i] = predicted[i]
                    a = float(predicted[i])
                    a = _bits([a * inv if multiply else a / pw])[0]
                    patch[i] = ((vb[i] - a + _I64_HALF) & _U64_MASK) - _I64_HALF
        if zero_predicted:
            residuals = mantissas
        else:
            residuals = [((m - p + _I64_HALF) & _U64_MASK) - _I64_HALF
                         for m, p in zip(mantissas, predicted, strict=True)]
        coding, section = _residual_section_scalar(residuals, name)
        mode = k | (_MULTIPLY if multiply else 0) | (coding << _CODING_SHIFT)
        out.append(bytes((mode,)) + (_patch_section_scalar(patch) if wrong else _NO_PATCHES) + section)
    return out


def _decode_columns_scalar(reader: Reader, n: int, pco_file: wrapped.FileDecompressor | None) -> np.ndarray:
    """The 7 x n columns of a short block (``decode_column`` on Python ints and floats)."""
    got: dict[str, list[float]] = {}
    rows: list[list[int]] = []
    for name in ORDER:
        mode = reader.byte()
        k = mode & _KIND_MASK
        if mode == _PREDICTED:
            floats = _predict_scalar(name, got, n)
            bits = list(_bits(floats))
        elif mode == _RAW_FLOATS:
            raw = reader.take(8 * n)
            floats, bits = list(struct.unpack(f"<{n}d", raw)), list(struct.unpack(f"<{n}Q", raw))
        elif mode == _PCO_FLOATS:
            column = _pco.decompress(reader, _need(pco_file), n, "f64")
            floats, bits = column.tolist(), column.view(_U64).tolist()
        elif k > MAX_SCALE:
            raise corrupt(f"unknown rollup column mode {mode:#04x}")
        else:
            patch = _read_patches_scalar(reader, n, pco_file)
            coding = mode >> _CODING_SHIFT
            if coding == _ZERO:
                mantissas = [0] * n
            elif coding == _VARINTS:
                mantissas = _read_varints(reader, n)
            elif coding == _PCODEC:
                mantissas = _pco.decompress(reader, _need(pco_file), n, "i64").tolist()
            else:
                mantissas = packed_ints.unpack(reader, n).tolist()
            pw = _POW10[k]
            if name not in ("count", "last"):  # the others are predicted by zeros
                predicted = _rint_fit(_predict_scalar(name, got, n), pw)
                mantissas = [((r + p + _I64_HALF) & _U64_MASK) - _I64_HALF
                             for r, p in zip(mantissas, predicted, strict=True)]
            if mode & _MULTIPLY:
                inv = _INV_POW10[k]
                floats = [float(m) * inv for m in mantissas]
            else:
                floats = [float(m) / pw for m in mantissas]
            if patch is None:
                bits = list(_bits(floats))
            else:
                bits = [(b + d) & _U64_MASK for b, d in zip(_bits(floats), patch, strict=True)]
                floats = _floats(bits)
        got[name] = floats
        rows.append(bits)
    return np.array(rows, dtype=_U64).view(np.float64)


def _read_patches_scalar(reader: Reader, n: int, pco_file: wrapped.FileDecompressor | None) -> list[int] | None:
    """``_read_patches`` as a list, None for no patches."""
    head = reader.uvarint()
    if head == 0:
        return None
    if head in (_DENSE_PCODEC, _DENSE_PACKED):
        return _read_dense_patches(reader, head, n, pco_file).tolist()
    count = head >> 1
    if head & 1 or count > n:
        raise corrupt(f"bad patch header {head} for a column of {n} windows")
    patch = [0] * n
    position = -1
    for _ in range(count):
        position += reader.uvarint() + 1
        if position >= n:
            raise corrupt("patch position beyond the column")
        patch[position] = unzigzag(reader.uvarint())
    return patch


def _read_varints(reader: Reader, count: int) -> list[int]:
    """``count`` zigzag varints (``Reader.varint`` inlined: two calls per value were a
    third of a short block's decode)."""
    buf, pos, end = reader.buf, reader.pos, len(reader.buf)
    out = []
    for _ in range(count):
        value = shift = 0
        while True:
            if pos >= end:
                raise corrupt(f"truncated varint at byte {pos}")
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift >= 70:
                raise corrupt(f"varint longer than 10 bytes at byte {pos}")
        if value > _U64_MASK:
            raise corrupt(f"varint overflows 64 bits at byte {pos}")
        out.append((value >> 1) ^ -(value & 1))
    reader.pos = pos
    return out
