"""Chunk segments: the samples one cut adds to a block that is not sealed yet.

A cut writes, per (series, unsealed block), only its new points as one segment,
instead of decoding, merging and re-encoding the whole block (perf/RESULTS.md,
"Profile findings", finding 1: 0.62 ms per series per cut, 24 rewrites of every
block at a 300 s cut interval). When the block is sealed its chunk, segments and
any new points are folded into one compressed chunk and its rollups, once.

A segment value is a raw chunk block (codec tag 0, docs/format/chunks.md) or a raw
decimal one (tag 5: the same timestamps, values as decimal mantissas), so
``codecs.decode`` reads it. Raw, because segments live at most a block plus the
out-of-order window and the compressing codecs cost 170–390 µs per call even for a
handful of points, while this costs about 2 µs (``python -m perf.lib.cutcost``).
"""

from __future__ import annotations

import numpy as np

from metricsflow.codecs import raw_decimal
from metricsflow.codecs._wire import Reader, uvarint
from metricsflow.codecs.raw import TAG as RAW_TAG
from metricsflow.pointbatch import decimal_values

_TAG = bytes((RAW_TAG,))
_DECIMAL_TAG = bytes((raw_decimal.TAG,))


def encode_runs(ts: np.ndarray, vals: np.ndarray, bounds: list[int], decimal: bool = False) -> list[bytes]:
    """One block per run [bounds[i], bounds[i+1]) of sorted, unique (ts, vals) columns."""
    edges = np.asarray(bounds, dtype=np.int64)
    return encode_spans(ts, vals, edges[:-1], np.diff(edges), decimal)


JOIN_MIN_POINTS = 48  # spans at least this long are joined one by one (see encode_spans)
# Decimal mantissas are found over the spans' stretch of the columns when it holds at most this
# many times their points (a cut's spans tile it), else over a copy of the spans' points.
_STRETCH_SHARE = 2


def encode_spans(ts: np.ndarray, vals: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                 decimal: bool = False) -> list[bytes]:
    """One block per span [starts[i], starts[i] + lengths[i]) of sorted, unique (ts, vals) columns:
    raw (tag 0), or with ``decimal`` raw decimal (tag 5) where the span's values are all decimal
    mantissas of the digits and width found for the spans together (``pointbatch.decimal_values``).

    zstd codes 2-byte mantissas ~6x faster than float64 values and the changelog's records come out
    a third smaller (perf/RESULTS.md, "Decimal segments"). One digit count and width for the call,
    found in a pass or two over its points (one per span would take a pass per digit count tried); a
    span with any value off them is written raw. The same spans of the same points give the same
    bytes, so a replay after a failed cut rewrites what the cut wrote.

    Short spans of one length are laid out as the rows of one byte array (tag, count, times, digits
    and width if decimal, values) and cut from its bytes: a cut's series mostly have the same number
    of new points, and a join per span was a fifth of the cut's own CPU in real-time traffic (py-spy,
    cutcost --live). Long spans (a backlog's or a bulk load's cut, hundreds of points per series) are
    joined one by one from views of the columns: one copy of their bytes instead of a gather,
    a row array and its slices (4.5-5.5 against 39-44 ns per point for 1,250 spans of 720
    points; the two cross near 48 points, perf/RESULTS.md).
    """
    ts_le = np.ascontiguousarray(ts, dtype="<i8")
    out = [b""] * len(starts)
    rest = np.arange(len(starts))
    if decimal:
        coded = _decimal_spans(vals, starts, lengths)
        if coded is not None:
            which, mantissas, at, middle = coded
            _code(ts_le, starts, lengths, which, mantissas, at, _DECIMAL_TAG, middle, out)
            if which.size == rest.size:
                return out
            raw = np.ones(rest.size, dtype=bool)
            raw[which] = False
            rest = np.flatnonzero(raw)
    _code(ts_le, starts, lengths, rest, np.ascontiguousarray(vals, dtype="<f8"), starts, _TAG, b"", out)
    return out


def _decimal_spans(vals: np.ndarray, starts: np.ndarray,
                   lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes] | None:
    """(the spans coded as decimals, their mantissas, where each span's mantissas start in them, the
    bytes of digits and width), or None when the values are not decimals worth coding so."""
    total = int(lengths.sum())
    if not total:
        return None
    ends = starts + lengths
    lo, hi = int(starts.min()), int(ends.max())
    if hi - lo <= _STRETCH_SHARE * total:
        column, at = vals[lo:hi], starts - lo
    else:
        at = np.cumsum(lengths) - lengths
        column = vals[np.repeat(starts - at, lengths) + np.arange(total)]
    found = decimal_values(column)
    if found is None:
        return None
    which = np.flatnonzero(lengths > 0)
    if found.exceptions.size:
        off = np.zeros(column.size + 1, dtype=np.int64)
        off[found.exceptions + 1] = 1
        np.cumsum(off, out=off)
        which = which[off[at[which] + lengths[which]] == off[at[which]]]
    middle = bytes((found.decimals, found.mantissas.dtype.itemsize))
    return which, np.ascontiguousarray(found.mantissas), at, middle


def _code(ts_le: np.ndarray, starts: np.ndarray, lengths: np.ndarray, which: np.ndarray, column: np.ndarray,
          at: np.ndarray, tag: bytes, middle: bytes, out: list[bytes]) -> None:
    """Blocks ``tag | n | times | middle | values`` of the spans ``which``; span i's values are
    ``column[at[i]:at[i] + lengths[i]]``."""
    lengths_w = lengths[which]
    long = lengths_w >= JOIN_MIN_POINTS
    if long.any():
        _join_spans(ts_le, column, starts, lengths, at, which[long], tag, middle, out)
        if long.all():
            return
        which, lengths_w = which[~long], lengths_w[~long]
    sizes = np.unique(lengths_w)
    if sizes.size * 8 > which.size:  # mostly different lengths: one join per span
        _join_spans(ts_le, column, starts, lengths, at, which, tag, middle, out)
        return
    width = column.dtype.itemsize
    columns = column.view(np.uint8).reshape(-1, width)
    for n in sizes.tolist():
        members = which[lengths_w == n]
        head = tag + uvarint(n)
        mid = middle if n else b""  # an empty block ends after its count
        t_at = starts[members][:, None] + np.arange(n)  # (spans, n) positions
        v_at = at[members][:, None] + np.arange(n)
        a, b, c = len(head), len(head) + 8 * n, len(head) + 8 * n + len(mid)
        rows = np.empty((members.size, c + width * n), dtype=np.uint8)
        rows[:, :a] = np.frombuffer(head, dtype=np.uint8)
        rows[:, a:b] = ts_le[t_at].view(np.uint8).reshape(members.size, 8 * n)
        if mid:
            rows[:, b:c] = np.frombuffer(mid, dtype=np.uint8)
        rows[:, c:] = columns[v_at].reshape(members.size, width * n)
        data, row = rows.tobytes(), rows.shape[1]
        for j, i in enumerate(members.tolist()):
            out[i] = data[j * row:(j + 1) * row]


def _join_spans(ts_le: np.ndarray, column: np.ndarray, starts: np.ndarray, lengths: np.ndarray, at: np.ndarray,
                which: np.ndarray, tag: bytes, middle: bytes, out: list[bytes]) -> None:
    ts_bytes = memoryview(ts_le).cast("B")
    width = column.dtype.itemsize
    values = memoryview(column.view(np.uint8))
    heads: dict[int, bytes] = {}
    join = b"".join
    for i, a, v, n in zip(which.tolist(), (starts[which] * 8).tolist(), (at[which] * width).tolist(),
                          lengths[which].tolist(), strict=True):
        head = heads.get(n)
        if head is None:
            head = heads[n] = tag + uvarint(n)
        out[i] = join((head, ts_bytes[a:a + 8 * n], middle if n else b"", values[v:v + width * n]))


def last_timestamp(value: bytes) -> int | None:
    """Newest timestamp of a segment without decoding it (a restart reads one per segment)."""
    reader = Reader(value, 1)
    n = reader.count()
    if n == 0:
        return None
    at = reader.pos + 8 * (n - 1)
    return int.from_bytes(value[at:at + 8], "little", signed=True)


def fold(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Union of sorted columns; for a repeated timestamp the part listed last wins."""
    parts = [p for p in parts if p[0].size]
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    if len(parts) == 1:
        return parts[0]
    ts = np.concatenate([p[0] for p in parts])
    vals = np.concatenate([p[1] for p in parts])
    if bool((ts[1:] > ts[:-1]).all()):
        return ts, vals  # parts in time order without overlap: the common case of appended cuts
    order = np.argsort(ts, kind="stable")  # stable: for equal ts the later part stays last
    ts, vals = ts[order], vals[order]
    last = np.ones(ts.size, dtype=bool)
    last[:-1] = ts[1:] != ts[:-1]
    return ts[last], vals[last]
