"""Encoding and decoding of ``PointBatch``, the value of every mf.points message.

A batch holds the points of one partition as runs: run *i* is
``run_lengths[i]`` points of series ``series_ids[i]``. Columns are
little-endian so every language reads them without a varint decoder; in Python
``numpy.frombuffer`` gives zero-copy views.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metricsflow.errors import InvalidInput
from metricsflow.pb import metricsflow_pb2 as pb

FORMAT_VERSION = 1
U64 = np.dtype("<u8")
U32 = np.dtype("<u4")
I64 = np.dtype("<i8")
F64 = np.dtype("<f8")

# One run: (series id, timestamps ms, values).
Run = tuple[int, np.ndarray, np.ndarray]


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


def encode_columns(series_ids: np.ndarray, run_lengths: np.ndarray, timestamps_ms: np.ndarray,
                   values: np.ndarray, max_points: int, produced_at_ms: int) -> list[bytes]:
    """``encode_batches`` for runs already laid out as columns (same bytes, no per-run Python).

    Run *i* is ``run_lengths[i]`` consecutive points of ``timestamps_ms``/``values``;
    empty runs are dropped. Message *k* takes points ``[k * max_points, (k + 1) * max_points)``,
    splitting the runs that cross a boundary, exactly as ``encode_batches`` fills them.
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
    vals = values.astype(F64, copy=False)
    if total <= max_points:
        return [_serialize(sids, lengths.astype(U32), ts, vals, produced_at_ms)]
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out = []
    for lo in range(0, total, max_points):
        hi = min(lo + max_points, total)
        first = int(np.searchsorted(ends, lo, side="right"))  # first run ending after lo
        last = int(np.searchsorted(starts, hi, side="left"))  # runs [first, last) overlap [lo, hi)
        part = np.minimum(ends[first:last], hi) - np.maximum(starts[first:last], lo)
        out.append(_serialize(sids[first:last], part.astype(U32), ts[lo:hi], vals[lo:hi], produced_at_ms))
    return out


def _serialize(sids: np.ndarray, lengths: np.ndarray, ts: np.ndarray, vals: np.ndarray, produced_at_ms: int) -> bytes:
    return pb.PointBatch(format_version=FORMAT_VERSION, series_ids=sids.tobytes(), run_lengths=lengths.tobytes(),
                         timestamps_ms=ts.tobytes(), values=vals.tobytes(),
                         produced_at_ms=produced_at_ms).SerializeToString()


def decode_batch(data: bytes) -> DecodedBatch:
    """Parse and check one mf.points value; a malformed one raises InvalidInput.

    The columns are read-only views of ``data`` (``numpy.frombuffer``, possibly unaligned):
    a protobuf parse copied every column twice (into the message, then out of it), and
    the head keeps the columns, so each copy was fresh memory the kernel had to fault in
    (47 µs per 1,200-point message in a busy worker, 6 µs when warm in process).
    """
    if type(data) is not bytes:  # the views must not see a buffer that can change under them
        data = bytes(data)
    spans = _canonical_spans(data)
    if spans is None:
        return _decode_parsed(data)
    version, (sids_at, sids_n), (lengths_at, lengths_n), (ts_at, ts_n), (vals_at, vals_n), produced_at_ms = spans
    if version != FORMAT_VERSION:
        raise InvalidInput("bad_point_batch", f"unknown PointBatch format_version {version}")
    _check_sizes((sids_n, lengths_n, ts_n, vals_n))
    return _checked(np.frombuffer(data, U64, sids_n >> 3, sids_at),
                    np.frombuffer(data, U32, lengths_n >> 2, lengths_at),
                    np.frombuffer(data, I64, ts_n >> 3, ts_at),
                    np.frombuffer(data, F64, vals_n >> 3, vals_at), produced_at_ms)


_NO_SPAN = (0, 0)


def _canonical_spans(data: bytes) -> tuple[int, tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int],
                                           int] | None:
    """(format_version, the four columns' (offset, size), produced_at_ms) of a message whose
    fields come in field order, each at most once, none unknown (what every protobuf library
    writes); None for anything else, which the protobuf parse then reads with its own rules."""
    version, produced_at_ms = 0, 0
    spans = [_NO_SPAN, _NO_SPAN, _NO_SPAN, _NO_SPAN]
    at, end, last = 0, len(data), 0
    while at < end:
        tag = data[at]
        number = tag >> 3
        if number <= last or number > 6 or tag & 0x80 or at + 1 >= end:
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
        if number == 1 or number == 6:
            if tag & 7 != 0 or value >= 1 << 64:
                return None
            if number == 1:
                if value >= 1 << 32:
                    return None
                version = value
            else:
                produced_at_ms = value - (1 << 64) if value >= 1 << 63 else value
        else:
            if tag & 7 != 2 or at + value > end:
                return None
            spans[number - 2] = (at, value)
            at += value
    return version, spans[0], spans[1], spans[2], spans[3], produced_at_ms


def _decode_parsed(data: bytes) -> DecodedBatch:
    msg = pb.PointBatch()
    try:
        msg.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError, but upb may raise others on garbage
        raise InvalidInput("bad_point_batch", f"cannot parse PointBatch of {len(data)} bytes: {exc}") from exc
    if msg.format_version != FORMAT_VERSION:
        raise InvalidInput("bad_point_batch", f"unknown PointBatch format_version {msg.format_version}")
    # Each read of a bytes field copies it out of the message: once per column.
    columns = (msg.series_ids, msg.run_lengths, msg.timestamps_ms, msg.values)
    _check_sizes(tuple(map(len, columns)))
    return _checked(np.frombuffer(columns[0], dtype=U64), np.frombuffer(columns[1], dtype=U32),
                    np.frombuffer(columns[2], dtype=I64), np.frombuffer(columns[3], dtype=F64), msg.produced_at_ms)


def _check_sizes(sizes: tuple[int, ...]) -> None:
    if sizes[0] % 8 or sizes[1] % 4 or sizes[2] % 8 or sizes[3] % 8 or sizes[0] // 8 != sizes[1] // 4:
        raise InvalidInput("bad_point_batch", f"PointBatch column sizes do not fit: {sizes}")


def _checked(sids: np.ndarray, lengths: np.ndarray, ts: np.ndarray, vals: np.ndarray,
             produced_at_ms: int) -> DecodedBatch:
    if ts.shape != vals.shape or int(lengths.sum(dtype=np.uint64)) != ts.shape[0]:
        raise InvalidInput("bad_point_batch", "PointBatch runs do not add up to the point columns")
    return DecodedBatch(sids, lengths, ts, vals, produced_at_ms)
