"""Chunk segments: the samples one cut adds to a block that is not sealed yet.

A cut writes, per (series, unsealed block), only its new points as one segment,
instead of decoding, merging and re-encoding the whole block (perf/RESULTS.md,
"Profile findings", finding 1: 0.62 ms per series per cut, 24 rewrites of every
block at a 300 s cut interval). When the block is sealed its chunk, segments and
any new points are folded into one compressed chunk and its rollups, once.

A segment value is a raw chunk block (codec tag 0, docs/format/chunks.md), so any
chunk decoder reads it. Raw, because segments live at most a block plus the
out-of-order window and the compressing codecs cost 170–390 µs per call even for a
handful of points, while this costs about 2 µs (``python -m perf.lib.cutcost``).
"""

from __future__ import annotations

import numpy as np

from metricsflow.codecs._wire import Reader, uvarint
from metricsflow.codecs.raw import TAG as RAW_TAG

_TAG = bytes((RAW_TAG,))


def encode_runs(ts: np.ndarray, vals: np.ndarray, bounds: list[int]) -> list[bytes]:
    """One raw block per run [bounds[i], bounds[i+1]) of sorted, unique (ts, vals) columns."""
    edges = np.asarray(bounds, dtype=np.int64)
    return encode_spans(ts, vals, edges[:-1], np.diff(edges))


JOIN_MIN_POINTS = 48  # spans at least this long are joined one by one (see encode_spans)


def encode_spans(ts: np.ndarray, vals: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    """One raw block per span [starts[i], starts[i] + lengths[i]) of sorted, unique (ts, vals) columns.

    Short spans of one length are laid out as the rows of one byte array (tag, count, times,
    values) and cut from its bytes: a cut's series mostly have the same number of new points,
    and a join per span was a fifth of the cut's own CPU in real-time traffic (py-spy, cutcost
    --live). Long spans (a backlog's or a bulk load's cut, hundreds of points per series) are
    joined one by one from views of the columns: one copy of their bytes instead of a gather,
    a row array and its slices (4.5-5.5 against 39-44 ns per point for 1,250 spans of 720
    points; the two cross near 48 points, perf/RESULTS.md).
    """
    ts_le = np.ascontiguousarray(ts, dtype="<i8")
    vals_le = np.ascontiguousarray(vals, dtype="<f8")
    out = [b""] * len(starts)
    long = lengths >= JOIN_MIN_POINTS
    if long.any():
        _join_spans(ts_le, vals_le, starts, lengths, np.flatnonzero(long), out)
        if long.all():
            return out
        short = np.flatnonzero(~long)
        sizes = np.unique(lengths[short])
    else:
        short = None
        sizes = np.unique(lengths)
    count = len(starts) if short is None else short.size
    if sizes.size * 8 > count:  # mostly different lengths: one join per span
        _join_spans(ts_le, vals_le, starts, lengths, np.arange(len(starts)) if short is None else short, out)
        return out
    for n in sizes.tolist():
        members = np.flatnonzero(lengths == n)
        head = _TAG + uvarint(n)
        at = starts[members][:, None] + np.arange(n)  # (spans, n) positions
        rows = np.empty((members.size, len(head) + 16 * n), dtype=np.uint8)
        rows[:, :len(head)] = np.frombuffer(head, dtype=np.uint8)
        rows[:, len(head):len(head) + 8 * n] = ts_le[at].view(np.uint8).reshape(members.size, 8 * n)
        rows[:, len(head) + 8 * n:] = vals_le[at].view(np.uint8).reshape(members.size, 8 * n)
        data, width = rows.tobytes(), rows.shape[1]
        for j, i in enumerate(members.tolist()):
            out[i] = data[j * width:(j + 1) * width]
    return out


def _join_spans(ts_le: np.ndarray, vals_le: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                which: np.ndarray, out: list[bytes]) -> None:
    ts_bytes = memoryview(ts_le).cast("B")
    vals_bytes = memoryview(vals_le).cast("B")
    heads: dict[int, bytes] = {}
    join = b"".join
    for i, a, n in zip(which.tolist(), (starts[which] * 8).tolist(), lengths[which].tolist(), strict=True):
        head = heads.get(n)
        if head is None:
            head = heads[n] = _TAG + uvarint(n)
        b = 8 * n
        out[i] = join((head, ts_bytes[a:a + b], vals_bytes[a:a + b]))


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
