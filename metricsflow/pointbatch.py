"""Encoding and decoding of ``PointBatch``, the value of every mf.points message.

A batch holds the points of one partition as runs: run *i* is
``run_lengths[i]`` points of series ``series_ids[i]``. Columns are
little-endian so every language reads them without a varint decoder; in Python
``numpy.frombuffer`` gives zero-copy views.

Format 2 holds the values as decimal mantissas, ``m / 10^k`` in 1, 2 or 4 bytes
(the format allows 8), and the few values that are not such decimals (NaN and
the stale marker, ±Inf, -0.0, more than 6 digits, mantissas too wide) as
float64 exceptions beside them. The load's 2-decimal gauges take 2 bytes a point
instead of 8: zstd took ~40 ns a point to code the float64 values in the
collector and ~15 to decode them in the worker, ~6 and ~3 for the mantissas
(perf/RESULTS.md, "Decimal point batches"). A write where that would not take
at most half the float64 bytes (most of a node-exporter scrape) keeps format 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metricsflow.codecs.decimal_codec import MAX_MANTISSA, MAX_SCALE
from metricsflow.codecs.raw_decimal import WIDTHS as _MANTISSA_WIDTHS
from metricsflow.codecs.raw_decimal import mantissa_values
from metricsflow.errors import InvalidInput
from metricsflow.pb import metricsflow_pb2 as pb

FORMAT_VERSION = 1  # float64 values
DECIMAL_FORMAT_VERSION = 2  # decimal mantissas, and the values that are not decimals beside them
FORMAT_VERSIONS = (FORMAT_VERSION, DECIMAL_FORMAT_VERSION)
U64 = np.dtype("<u8")
U32 = np.dtype("<u4")
I64 = np.dtype("<i8")
F64 = np.dtype("<f8")

# One run: (series id, timestamps ms, values).
Run = tuple[int, np.ndarray, np.ndarray]

# The decimals a column is tried at, on a sample: wider ones would rarely pay for their tries.
_SAMPLE_DECIMALS = 6
_SAMPLE_SCALES = np.array([float(10**k) for k in range(_SAMPLE_DECIMALS + 1)])[:, None]
_SAMPLE_SIZE = 64


@dataclass(slots=True)
class DecodedBatch:
    series_ids: np.ndarray  # uint64, one per run
    run_lengths: np.ndarray  # uint32, one per run
    timestamps_ms: np.ndarray  # int64, one per point
    values: np.ndarray  # float64, one per point
    produced_at_ms: int

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def point_series_ids(self) -> np.ndarray:
        """Series id of every point (the runs expanded)."""
        return np.repeat(self.series_ids, self.run_lengths)


def _encode_one(runs: Sequence[Run], produced_at_ms: int) -> bytes:
    msg = pb.PointBatch(
        format_version=FORMAT_VERSION,
        series_ids=np.fromiter((r[0] for r in runs), dtype=U64, count=len(runs)).tobytes(),
        run_lengths=np.fromiter((r[1].shape[0] for r in runs), dtype=U32, count=len(runs)).tobytes(),
        timestamps_ms=np.concatenate([r[1] for r in runs]).astype(I64, copy=False).tobytes(),
        values=np.concatenate([r[2] for r in runs]).astype(F64, copy=False).tobytes(),
        produced_at_ms=produced_at_ms,
    )
    return msg.SerializeToString()


def encode_batches(runs: Sequence[Run], max_points: int, produced_at_ms: int) -> list[bytes]:
    """Encode runs into as few messages as fit ``max_points`` each (long runs are split)."""
    out: list[bytes] = []
    current: list[Run] = []
    size = 0
    for sid, ts, vals in runs:
        start = 0
        while start < ts.shape[0]:
            take = min(ts.shape[0] - start, max_points - size)
            current.append((sid, ts[start:start + take], vals[start:start + take]))
            size += take
            start += take
            if size >= max_points:
                out.append(_encode_one(current, produced_at_ms))
                current, size = [], 0
    if current:
        out.append(_encode_one(current, produced_at_ms))
    return out


@dataclass(slots=True)
class DecimalValues:
    """A value column as decimal mantissas, found once for a whole write and sliced per message."""

    decimals: int  # value = mantissa / 10^decimals
    mantissas: np.ndarray  # signed integers in the narrowest width that holds them all; 0 at exceptions
    exceptions: np.ndarray  # int64 positions, increasing, of the values that are not such decimals
    exception_values: np.ndarray  # float64, one per exception

    def __getitem__(self, part: slice) -> DecimalValues:
        if not self.exceptions.size:
            return DecimalValues(self.decimals, self.mantissas[part], self.exceptions, self.exception_values)
        lo, hi, _ = part.indices(self.mantissas.size)
        first, last = np.searchsorted(self.exceptions, (lo, hi))
        return DecimalValues(self.decimals, self.mantissas[part], self.exceptions[first:last] - lo,
                             self.exception_values[first:last])


_NO_EXCEPTIONS = np.zeros(0, dtype=np.int64)
_NO_EXCEPTION_VALUES = np.zeros(0, dtype=F64)
_MAX_EXCEPTION_SHARE = 4  # more than 1 in 4 values off the digits: try the digits those need, once
_EXCEPTION_BYTES = 12  # a position (u32) and a float64
# Format 2 only where its value columns take at most this share of the float64 column's bytes:
# in slices of a node-exporter scrape (byte counters of 10^10-10^13 beside 6-digit gauges) those
# at 0.31-0.35 came out of zstd 2-12 % smaller than the floats, those at 0.54-0.68 5-9 % larger.
_MAX_BYTES_SHARE = 0.5


def decimal_values(values: np.ndarray) -> DecimalValues | None:
    """``values`` as decimal mantissas: each exactly ``m / 10^k`` as a decoder computes it (the
    same bits), or an exception; None when that would not take at most half the float64 bytes.

    ``k`` is the most digits any value of a sample of the column needs, up to 6; when more than
    a quarter of the values are off it (integer counters sampled, 2-digit gauges missed), the
    most a sample of those needs, once. The mantissas take 1, 2 or 4 bytes, the width with the
    fewest bytes counting the mantissas too wide for it as exceptions."""
    values = np.asarray(values, dtype=F64)
    n = values.size
    k = _digits(values, -1)
    for _ in range(2):
        if k is None:
            return None
        scale = float(10**k)
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = np.rint(values * scale)
            scaled += 0.0  # -0.0 to +0.0, as an integer mantissa makes it
            # ``scaled`` holds integers, which int64 gives back unchanged where they are within
            # 2^53 (no exception): dividing it is the decoder's computation.
            off = (scaled / scale).view(U64) != values.view(U64)
            magnitudes = np.abs(scaled)
            largest = magnitudes.max()
            if not largest <= MAX_MANTISSA:  # NaN compares False too
                off |= ~(magnitudes <= MAX_MANTISSA)
        n_off = int(np.count_nonzero(off))
        if n_off * _MAX_EXCEPTION_SHARE > n:
            k = _digits(values[off], k)
            continue
        if n_off:
            magnitudes[off] = 0.0
            largest = magnitudes.max()
        chosen = _paying_width(magnitudes, largest, n, n_off)
        if chosen is None:
            return None
        width, too_wide = chosen
        if too_wide is not None:
            off |= too_wide
        exceptions = np.flatnonzero(off) if n_off or too_wide is not None else _NO_EXCEPTIONS
        mantissas = scaled
        if exceptions.size:
            mantissas[exceptions] = 0.0
        return DecimalValues(k, mantissas.astype(_MANTISSA_WIDTHS[width]), exceptions,
                             values[exceptions] if exceptions.size else _NO_EXCEPTION_VALUES)
    return None


def _paying_width(magnitudes: np.ndarray, largest: float, n: int,
                  n_off: int) -> tuple[int, np.ndarray | None] | None:
    """(width, the mantissas too wide for it or None) of 1, 2 or 4 bytes whose mantissas and exceptions
    take the fewest bytes, if at most ``_MAX_BYTES_SHARE`` of the float64 column's; else None.
    ``largest`` is the largest of ``magnitudes`` (those of the exceptions already 0)."""
    best: tuple[int, int, np.ndarray | None] | None = None
    for width in (1, 2, 4):
        bound = float(1 << (8 * width - 1))
        too_wide = None if largest < bound else magnitudes >= bound
        over = 0 if too_wide is None else int(np.count_nonzero(too_wide))
        cost = width * n + _EXCEPTION_BYTES * (n_off + over)
        if best is None or cost < best[0]:
            best = (cost, width, too_wide)
        if not over:
            break
    assert best is not None
    cost, width, too_wide = best
    if cost > _MAX_BYTES_SHARE * 8 * n:
        return None
    return width, too_wide


def _digits(values: np.ndarray, above: int) -> int | None:
    """The most digits, more than ``above`` and at most 6, that a value of a sample of ``values``
    needs to be an exact decimal (values that need more are left out); None when fewer than half
    of the sample are such decimals."""
    if values.size == 0:
        return None
    sample = values[::max(1, values.size // _SAMPLE_SIZE)]
    with np.errstate(over="ignore", invalid="ignore"):
        fits = (np.rint(sample * _SAMPLE_SCALES) / _SAMPLE_SCALES).view(U64) == sample.view(U64)
    fits[:above + 1] = False
    decimal = fits.any(axis=0)
    if 2 * int(np.count_nonzero(decimal)) < sample.size:
        return None
    return int(fits[:, decimal].argmax(axis=0).max())


def encode_columns(series_ids: np.ndarray, run_lengths: np.ndarray, timestamps_ms: np.ndarray,
                   values: np.ndarray | DecimalValues, max_points: int, produced_at_ms: int) -> list[bytes]:
    """``encode_batches`` for runs already laid out as columns (same bytes, no per-run Python).

    Run *i* is ``run_lengths[i]`` consecutive points of ``timestamps_ms``/``values``;
    empty runs are dropped. Message *k* takes points ``[k * max_points, (k + 1) * max_points)``,
    splitting the runs that cross a boundary, exactly as ``encode_batches`` fills them.
    ``DecimalValues`` are written as format 2.
    """
    lengths = np.asarray(run_lengths, dtype=np.int64)
    sids = np.asarray(series_ids, dtype=U64)
    if not bool(lengths.all()):
        keep = lengths > 0
        sids, lengths = sids[keep], lengths[keep]
    total = int(timestamps_ms.shape[0])
    if total == 0:
        return []
    ts = timestamps_ms.astype(I64, copy=False)
    vals: np.ndarray | DecimalValues
    if isinstance(values, DecimalValues):
        vals, serialize = values, _serialize_decimal
    else:
        vals, serialize = values.astype(F64, copy=False), _serialize
    if total <= max_points:
        return [serialize(sids, lengths.astype(U32), ts, vals, produced_at_ms)]
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out = []
    for lo in range(0, total, max_points):
        hi = min(lo + max_points, total)
        first = int(np.searchsorted(ends, lo, side="right"))  # first run ending after lo
        last = int(np.searchsorted(starts, hi, side="left"))  # runs [first, last) overlap [lo, hi)
        part = np.minimum(ends[first:last], hi) - np.maximum(starts[first:last], lo)
        out.append(serialize(sids[first:last], part.astype(U32), ts[lo:hi], vals[lo:hi], produced_at_ms))
    return out


def _serialize(sids: np.ndarray, lengths: np.ndarray, ts: np.ndarray, vals: np.ndarray, produced_at_ms: int) -> bytes:
    return pb.PointBatch(format_version=FORMAT_VERSION, series_ids=sids.tobytes(), run_lengths=lengths.tobytes(),
                         timestamps_ms=ts.tobytes(), values=vals.tobytes(),
                         produced_at_ms=produced_at_ms).SerializeToString()


def _serialize_decimal(sids: np.ndarray, lengths: np.ndarray, ts: np.ndarray, values: DecimalValues,
                       produced_at_ms: int) -> bytes:
    batch = pb.PointBatch(format_version=DECIMAL_FORMAT_VERSION, series_ids=sids.tobytes(),
                          run_lengths=lengths.tobytes(), timestamps_ms=ts.tobytes(), produced_at_ms=produced_at_ms,
                          value_mantissas=values.mantissas.tobytes(), value_width=values.mantissas.itemsize,
                          value_decimals=values.decimals)
    if values.exceptions.size:
        batch.exception_positions = values.exceptions.astype(U32).tobytes()
        batch.exception_values = values.exception_values.tobytes()
    return batch.SerializeToString()


def decode_batch(data: bytes) -> DecodedBatch:
    """Parse and check one mf.points value; a malformed one raises InvalidInput.

    The columns are read-only views of ``data`` (``numpy.frombuffer``, possibly unaligned;
    format 2's values are computed): a protobuf parse copied every column twice (into the
    message, then out of it), and the head keeps the columns, so each copy was fresh memory
    the kernel had to fault in (47 µs per 1,200-point message in a busy worker, 6 µs when
    warm in process).
    """
    if type(data) is not bytes:  # the views must not see a buffer that can change under them
        data = bytes(data)
    fields = _canonical_fields(data)
    if fields is None:
        return _decode_parsed(data)
    view = memoryview(data)
    version, produced_at_ms, width, decimals, spans = fields
    return _columns(version, *(view[at:at + n] for at, n in spans), produced_at_ms, width, decimals)


_NO_SPAN = (0, 0)
_VARINT_FIELDS = (1, 6, 8, 9)  # format_version, produced_at_ms, value_width, value_decimals
# The columns: series_ids, run_lengths, timestamps_ms, values, value_mantissas, exception_positions, exception_values
_BYTES_FIELDS = (2, 3, 4, 5, 7, 10, 11)
_LAST_FIELD = 11


def _canonical_fields(data: bytes) -> tuple[int, int, int, int, list[tuple[int, int]]] | None:
    """(format_version, produced_at_ms, value_width, value_decimals, the seven columns' (offset, size))
    of a message whose fields come in field order, each at most once, none unknown (what every
    protobuf library writes); None for anything else, which the protobuf parse then reads with
    its own rules."""
    varints = [0] * (_LAST_FIELD + 1)
    spans = [_NO_SPAN] * (_LAST_FIELD + 1)
    at, end, last = 0, len(data), 0
    while at < end:
        tag = data[at]
        number = tag >> 3
        if number <= last or number > _LAST_FIELD or tag & 0x80 or at + 1 >= end:
            return None
        last = number
        byte = data[at + 1]
        at += 2
        value = byte & 0x7F
        shift = 7
        while byte & 0x80:  # the varint's further bytes (a column's size takes two or three)
            if at >= end or shift > 63:
                return None
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
        if number in _VARINT_FIELDS:
            if tag & 7 != 0 or value >= 1 << 64 or (number != 6 and value >= 1 << 32):
                return None
            varints[number] = value
        else:
            if tag & 7 != 2 or at + value > end:
                return None
            spans[number] = (at, value)
            at += value
    produced_at_ms = varints[6] - (1 << 64) if varints[6] >= 1 << 63 else varints[6]
    return varints[1], produced_at_ms, varints[8], varints[9], [spans[n] for n in _BYTES_FIELDS]


def _decode_parsed(data: bytes) -> DecodedBatch:
    msg = pb.PointBatch()
    try:
        msg.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError, but upb may raise others on garbage
        raise InvalidInput("bad_point_batch", f"cannot parse PointBatch of {len(data)} bytes: {exc}") from exc
    # Each read of a bytes field copies it out of the message: once per column.
    return _columns(msg.format_version, msg.series_ids, msg.run_lengths, msg.timestamps_ms, msg.values,
                    msg.value_mantissas, msg.exception_positions, msg.exception_values, msg.produced_at_ms,
                    msg.value_width, msg.value_decimals)


Column = bytes | memoryview


def _columns(version: int, sids: Column, lengths: Column, ts: Column, vals: Column, mantissas: Column,
             exceptions: Column, exception_values: Column, produced_at_ms: int, width: int,
             decimals: int) -> DecodedBatch:
    """The checked columns of a batch from its fields' bytes (views of them where they allow)."""
    if version not in FORMAT_VERSIONS:
        raise InvalidInput("bad_point_batch", f"unknown PointBatch format_version {version}")
    sizes = (len(sids), len(lengths), len(ts), len(vals), len(mantissas), len(exceptions), len(exception_values))
    if sizes[0] % 8 or sizes[1] % 4 or sizes[2] % 8 or sizes[0] // 8 != sizes[1] // 4:
        raise InvalidInput("bad_point_batch", f"PointBatch column sizes do not fit: {sizes}")
    if version == FORMAT_VERSION:
        if sizes[3] % 8 or any(sizes[4:]):
            raise InvalidInput("bad_point_batch", f"PointBatch column sizes do not fit: {sizes}")
        values = np.frombuffer(vals, F64)
    else:
        values = _decimal_column(sizes, mantissas, exceptions, exception_values, width, decimals)
    run_lengths = np.frombuffer(lengths, U32)
    timestamps_ms = np.frombuffer(ts, I64)
    if timestamps_ms.shape != values.shape or int(run_lengths.sum(dtype=np.uint64)) != timestamps_ms.shape[0]:
        raise InvalidInput("bad_point_batch", "PointBatch runs do not add up to the point columns")
    return DecodedBatch(np.frombuffer(sids, U64), run_lengths, timestamps_ms, values, produced_at_ms)


def _decimal_column(sizes: tuple[int, ...], mantissas: Column, exceptions: Column, exception_values: Column,
                    width: int, decimals: int) -> np.ndarray:
    if (width not in _MANTISSA_WIDTHS or decimals > MAX_SCALE or sizes[3] or sizes[4] % width or sizes[5] % 4
            or sizes[5] // 4 != sizes[6] // 8 or sizes[6] % 8):
        raise InvalidInput("bad_point_batch", f"PointBatch format 2 columns do not fit: sizes {sizes}, "
                                              f"value_width {width}, value_decimals {decimals}")
    values = mantissa_values(np.frombuffer(mantissas, _MANTISSA_WIDTHS[width]), decimals)
    if sizes[5]:
        at = np.frombuffer(exceptions, U32)
        if int(at.max()) >= values.size:
            raise InvalidInput("bad_point_batch", f"PointBatch exception position {int(at.max())} beyond its "
                                                  f"{values.size} points")
        values[at] = np.frombuffer(exception_values, F64)
    return values
