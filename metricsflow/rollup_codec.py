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
"""

from __future__ import annotations

import numpy as np
from pcodec import wrapped

from metricsflow import packed_ints, sketch
from metricsflow.codecs import _pco, _timecol
from metricsflow.codecs._wire import Reader, corrupt, unzigzag, uvarint, zigzag
from metricsflow.codecs.decimal_codec import MAX_SCALE, reconstruct

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

_MAX_MANTISSA = float(1 << 53)
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
_ELIDE_SHARE = 4  # try eliding zeros when at least n/4 values are 0 (min, max: ~40 %)


def _residual_section(residuals: np.ndarray, name: str) -> tuple[int, bytes, bool]:
    """Residual coding, its bytes, and whether they hold a pcodec stream."""
    deltas = name in _DELTAS
    if residuals.size <= _SHORT:  # Python ints: a dozen numpy calls cost more here
        values = residuals.tolist()
        if not any(values):
            return _ZERO, b"", False
        packed = packed_ints.pack_small(values, deltas)
        varints = b"".join(uvarint(zigzag(x)) for x in values)
        if packed is None or len(varints) <= len(packed):
            return _VARINTS, varints, False
        return _PACKED, packed, False
    zeros = residuals.size - np.count_nonzero(residuals)
    if zeros == residuals.size:
        return _ZERO, b"", False
    packed = packed_ints.pack(residuals, deltas)
    if packed is not None and packed[0] & packed_ints.WIDTH_MASK == 0:  # constant (count): 2-3 bytes
        return _PACKED, packed, False
    candidates = [(_PCODEC, _pco.compress(residuals, _pco.config(1 if deltas else 0)))]
    if packed is not None:
        candidates.append((_PACKED, packed))
    if not deltas and zeros * _ELIDE_SHARE >= residuals.size:
        elided = packed_ints.pack_zeros_elided(residuals)
        if elided is not None:
            candidates.append((_PACKED, elided))
    coding, section = min(candidates, key=lambda c: len(c[1]))
    return coding, section, coding == _PCODEC


def _patch_section(patch: np.ndarray) -> tuple[bytes, bool]:
    """``head uvarint`` then the patches: head 1 a dense pcodec column, 3 a dense packed
    column, even: head / 2 sparse (gap, patch) pairs."""
    if not patch.any():
        return _NO_PATCHES, False
    if patch.size <= _SHORT:  # the 1h tier: a few Python ints beat a dozen numpy calls
        parts, previous = [], -1
        for position, delta in enumerate(patch.tolist()):
            if delta:
                parts += [uvarint(position - previous - 1), uvarint(zigzag(delta))]
                previous = position
        return uvarint(len(parts)) + b"".join(parts), False
    positions = np.flatnonzero(patch)
    if positions.size * _DENSE_SHARE > patch.size:  # sums: ~1/3 of the windows an ulp off
        packed = packed_ints.pack(patch, False)
        pcodec = uvarint(_DENSE_PCODEC) + _pco.compress(patch, _ORDER0)
        if packed is None or len(pcodec) < len(packed) + 1:
            return pcodec, True
        return uvarint(_DENSE_PACKED) + packed, False
    gaps = np.diff(positions, prepend=-1) - 1
    pairs = np.empty(2 * positions.size, dtype=np.int64)
    pairs[0::2] = gaps
    pairs[1::2] = patch[positions]
    pairs[1::2] = ((pairs[1::2] << 1) ^ (pairs[1::2] >> 63))  # zigzag, wrapping like the decoder
    return uvarint(positions.size << 1) + b"".join(map(uvarint, pairs.view(_U64).tolist())), False


def _float_column(values: np.ndarray) -> tuple[bytes, bool]:
    raw = values.astype("<f8").tobytes()
    if values.size > _SHORT:
        floats = min((_pco.compress(values, _pco.config(order)) for order in (0, 1)), key=len)
        if len(floats) < len(raw):
            return bytes((_PCO_FLOATS,)) + floats, True
    return bytes((_RAW_FLOATS,)) + raw, False


def encode_columns(values: np.ndarray, predictors: np.ndarray, scales: np.ndarray) -> list[tuple[bytes, bool]]:
    """Sections of the rows of ``values`` (one column per row, in ``ORDER``) and whether
    each holds a pcodec stream; ``scales[i] < 0`` stores row i as floats.

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
        use_alt = np.count_nonzero(alt, axis=1) < np.count_nonzero(patch, axis=1)
        use_alt &= np.count_nonzero(patch, axis=1) > n // _TRY_MULTIPLY_SHARE
        patch = np.where(use_alt[:, None], alt, patch)
        off_grid = np.abs(patch) > _NEAR_ULPS  # also the NaN/Inf/huge slots, whose mantissa is 0
        predicted = _scaled(predictors * pow10)
        # Far values (NaN, +-Inf, -0.0, too many digits) take the predicted mantissa: no
        # residual, a 9-10 byte patch. Values tens of ulps off (a small increase summed
        # from inexact float deltas) keep theirs and get a 1-3 byte patch.
        far = np.abs(patch) > _FAR_ULPS
        mantissas = np.where(far, predicted, mantissas)
        approx = mantissas.astype(np.float64)
        patch = np.where(use_alt[:, None], _bit_diff(values, approx * (1.0 / pow10)),
                         _bit_diff(values, approx / pow10))
    residuals = (mantissas.view(_U64) - predicted.view(_U64)).view(np.int64)
    same = np.all(values.view(_U64) == predictors.view(_U64), axis=1) & ~np.isnan(values).any(axis=1)
    floats = (scales < 0) | (np.count_nonzero(off_grid, axis=1) > n // _FAR_SHARE)
    out: list[tuple[bytes, bool]] = []
    for i, name in enumerate(ORDER):
        if same[i]:
            out.append((bytes((_PREDICTED,)), False))
        elif floats[i]:
            out.append(_float_column(values[i]))
        else:
            patches, patch_pco = _patch_section(patch[i])
            coding, section, res_pco = _residual_section(residuals[i], name)
            mode = int(k[i]) | (_MULTIPLY if use_alt[i] else 0) | (coding << _CODING_SHIFT)
            out.append((bytes((mode,)) + patches + section, patch_pco or res_pco))
    return out


def _scaled(x: np.ndarray) -> np.ndarray:
    """rint(x) as int64 where it fits in +-2^53, else 0 (NaN, +-Inf, huge)."""
    scaled = np.rint(x)
    return np.where(np.abs(scaled) <= _MAX_MANTISSA, scaled, 0.0).astype(np.int64)


def _bit_diff(values: np.ndarray, approx: np.ndarray) -> np.ndarray:
    return (values.view(_U64) - approx.view(_U64)).view(np.int64)


def decode_column(
    reader: Reader, n: int, predictor: np.ndarray, pco_file: wrapped.FileDecompressor | None
) -> np.ndarray:
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
    patch = _read_patches(reader, n, pco_file)
    coding = mode >> _CODING_SHIFT
    if coding == _ZERO:
        residuals = np.zeros(n, dtype=np.int64)
    elif coding == _VARINTS:
        residuals = np.array([reader.varint() for _ in range(n)], dtype=np.int64)
    elif coding == _PCODEC:
        residuals = _pco.decompress(reader, _need(pco_file), n, "i64")
    else:
        residuals = packed_ints.unpack(reader, n)
    mantissas = residuals
    if predictor.any():  # count and last are predicted by zeros
        mantissas = (residuals.view(_U64) + _scaled(predictor * _POW10[k]).view(_U64)).view(np.int64)
    values = reconstruct(mantissas, k, bool(mode & _MULTIPLY))
    bits = values.view(_U64)
    bits += patch.view(_U64)  # wraps mod 2^64 like the encoder
    return values


def _need(pco_file: wrapped.FileDecompressor | None) -> wrapped.FileDecompressor:
    if pco_file is None:
        raise corrupt("pcodec column in a block without a pcodec header")
    return pco_file


def _read_patches(reader: Reader, n: int, pco_file: wrapped.FileDecompressor | None) -> np.ndarray:
    head = reader.uvarint()
    if head == _DENSE_PCODEC:
        return _pco.decompress(reader, _need(pco_file), n, "i64")
    if head == _DENSE_PACKED:
        return packed_ints.unpack(reader, n)
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


# ---------------------------------------------------------------- blocks


_POW10_COLUMN = np.array(_POW10)[:, None]
_DIGIT_COST_BITS = float(np.log2(10.0))
_FAR_COST_BITS = 80.0


def _value_scale(first: np.ndarray, last: np.ndarray) -> int:
    """One decimal scale for the six value columns, from the samples ``first`` and ``last``;
    -1 for floats.

    Sums and differences of k-digit decimals are k-digit decimals (an ulp or two off,
    which patches absorb), so one scan serves all six. The cost model is the decimal
    chunk codec's (``choose_scale``), evaluated for every k in one 19-row numpy pass:
    its loop over k cost ~100 µs of numpy call overhead per block.
    """
    values = np.concatenate([first, last])
    n = values.size
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.rint(values * _POW10_COLUMN)
        fits = np.abs(scaled) <= _MAX_MANTISSA
        patch = _bit_diff(np.broadcast_to(values, scaled.shape), scaled / _POW10_COLUMN)
    hit = fits & (np.abs(patch) <= _NEAR_ULPS)
    digits = np.where(hit.any(axis=0), np.argmax(hit, axis=0), MAX_SCALE + 1)
    counts = np.bincount(digits, minlength=MAX_SCALE + 2)
    candidates = np.flatnonzero(counts[: MAX_SCALE + 1])
    if candidates.size == 0:
        return -1
    needs_more = n - np.cumsum(counts)
    costs = candidates * (_DIGIT_COST_BITS * n) + _FAR_COST_BITS * needs_more[candidates]
    best = int(candidates[int(np.argmin(costs))])
    return -1 if needs_more[best] > n // _FAR_SHARE else best


def encode(starts: np.ndarray, columns: dict[str, np.ndarray], digests: list[sketch.Digest] | None) -> bytes:
    """``version u8 | flags u8 | n uvarint | [pcodec header] | starts | 7 columns | [digests]``."""
    n = starts.size
    flags = _DIGESTS if digests is not None else 0
    sections: list[bytes] = []
    uses_pco = False
    if n:
        starts = np.ascontiguousarray(starts, dtype=np.int64)
        if n > 1 and not np.all(starts[1:] > starts[:-1]):
            flags |= _RAW_STARTS
            sections.append(starts.astype("<i8").tobytes())
        else:
            section, uses_pco = _timecol.encode(starts)
            sections.append(section)
        values = np.stack([np.asarray(columns[name], dtype=np.float64) for name in ORDER])
        by_name = dict(zip(ORDER, values, strict=True))
        with np.errstate(all="ignore"):
            predictors = np.stack([predict(name, by_name, n) for name in ORDER])
        k = _value_scale(values[ORDER.index("first")], values[ORDER.index("last")])
        scales = np.array([0 if name == "count" else k for name in ORDER])
        for section, col_pco in encode_columns(values, predictors, scales):
            sections.append(section)
            uses_pco |= col_pco
    if digests is not None:
        for d in digests:
            raw = d.to_bytes()
            sections += [uvarint(len(raw)), raw]
    if uses_pco:
        flags |= _PCO_HEADER
        sections.insert(0, _pco.HEADER)
    return b"".join((bytes((VERSION, flags)), uvarint(n), *sections))


def decode(data: bytes) -> tuple[np.ndarray, dict[str, np.ndarray], list[sketch.Digest] | None]:
    """Starts, columns by name and digests of a version 2 block; corrupt_chunk on bad input."""
    reader = Reader(data, 1)
    flags = reader.byte()
    if flags & ~_KNOWN_FLAGS:
        raise corrupt(f"unknown rollup block flags {flags:#04x}")
    n = reader.count()
    pco_file = _pco.file_decompressor(reader.take(_pco.HEADER_SIZE)) if flags & _PCO_HEADER else None
    got: dict[str, np.ndarray] = {name: np.zeros(0) for name in ORDER}
    starts = np.zeros(0, dtype=np.int64)
    if n:
        starts = reader.array("<i8", n) if flags & _RAW_STARTS else _timecol.decode(reader, n, pco_file)
        got = {}
        with np.errstate(all="ignore"):
            for name in ORDER:
                got[name] = decode_column(reader, n, predict(name, got, n), pco_file)
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
