"""Downsampled tiers: per-window aggregates derived deterministically from raw samples.

For every window (1 m or 1 h) with samples: count, sum, min, max, first, last, and
``increase``, the counter-aware increase *between samples inside the window*
(a drop is a reset: the new value counts from 0, so a reset never makes it
negative). The increase across a window boundary is ``first`` of a window against
``last`` of the one before, computed at query time (``counter_increase``), so
every window depends only on its own samples and a replay rewrites the same bytes.
Distribution series add a t-digest per window.

A rollup block holds the windows of one raw block (2 h), so a cut that rewrites a
raw block rewrites exactly its rollups (see tables/storage.py). Blocks start with a
format version byte; ``encode`` writes version 2 (``rollup_codec``: predicted decimal
columns), ``decode`` also reads version 1 (zstd of raw float64 columns). Layouts:
docs/format/chunks.md, "Rollup blocks".
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import cramjam
import numpy as np

from metricsflow import rollup_codec, sketch
from metricsflow.errors import InvalidInput

ROLLUP_FORMAT_VERSION = rollup_codec.VERSION  # blocks of every earlier version still decode
COLUMNS = ("count", "sum", "min", "max", "first", "last", "increase")
TIERS_MS = {"1m": 60_000, "1h": 3_600_000}
_V1_HEADER = struct.Struct("<BBI")  # version 1: version, flags (bit0: digests), number of windows
_V1_LEN = struct.Struct("<I")


@dataclass(slots=True)
class Rollup:
    """Aggregates of consecutive windows of one series (columns of equal length)."""

    window_ms: int
    starts: np.ndarray  # int64 window start times
    count: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    first: np.ndarray
    last: np.ndarray
    increase: np.ndarray
    digests: list[sketch.Digest] | None = None

    def __len__(self) -> int:
        return int(self.starts.size)

    def column(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def clip(self, start_ms: int, end_ms: int) -> Rollup:
        """Windows whose start lies in [start_ms, end_ms]."""
        a, b = np.searchsorted(self.starts, start_ms, "left"), np.searchsorted(self.starts, end_ms, "right")
        return Rollup(self.window_ms, self.starts[a:b], *(self.column(c)[a:b] for c in COLUMNS),
                      digests=self.digests[a:b] if self.digests is not None else None)


def compute(ts: np.ndarray, vals: np.ndarray, window_ms: int, distribution: bool = False) -> Rollup:
    """Aggregate sorted samples into windows of ``window_ms``; NaN values (incl. stale markers) are skipped."""
    keep = ~np.isnan(vals)
    ts, vals = ts[keep], vals[keep]
    if ts.size == 0:
        e = np.empty(0)
        return Rollup(window_ms, np.empty(0, np.int64), *(e,) * 7, digests=[] if distribution else None)
    win = (ts // window_ms) * window_ms
    starts_idx = np.flatnonzero(np.concatenate([[True], win[1:] != win[:-1]]))
    ends_idx = np.concatenate([starts_idx[1:], [ts.size]])
    count = (ends_idx - starts_idx).astype(np.float64)
    delta = np.diff(vals, prepend=vals[0])
    inc = np.where(delta >= 0, delta, vals)  # a drop is a counter reset: count from zero
    inc[starts_idx] = 0.0  # the boundary delta belongs to counter_increase, not to the window
    digests = None
    if distribution:
        digests = [sketch.build(vals[a:b]) for a, b in zip(starts_idx.tolist(), ends_idx.tolist(), strict=True)]
    return Rollup(window_ms, win[starts_idx], count, np.add.reduceat(vals, starts_idx),
                  np.minimum.reduceat(vals, starts_idx), np.maximum.reduceat(vals, starts_idx),
                  vals[starts_idx], vals[ends_idx - 1], np.add.reduceat(inc, starts_idx), digests)


def compute_many(blocks: Sequence[tuple[np.ndarray, np.ndarray]], window_ms: int,
                 distribution: Sequence[bool]) -> list[Rollup]:
    """``compute`` of every (timestamps, values) block, the same floats (each window's
    reduction runs over the same samples in the same order), in one pass over all of them."""
    if len(distribution) != len(blocks):
        raise ValueError(f"{len(distribution)} distribution flags for {len(blocks)} blocks")
    if not blocks:
        return []
    sizes = np.array([ts.size for ts, _ in blocks], dtype=np.int64)
    ts = np.concatenate([b[0] for b in blocks]).astype(np.int64, copy=False)
    vals = np.concatenate([b[1] for b in blocks]).astype(np.float64, copy=False)
    owner = np.repeat(np.arange(len(blocks)), sizes)
    keep = ~np.isnan(vals)
    if not keep.all():
        ts, vals, owner = ts[keep], vals[keep], owner[keep]
    if ts.size == 0:
        return [compute(b[0][:0], b[1][:0], window_ms, d) for b, d in zip(blocks, distribution, strict=True)]
    win = (ts // window_ms) * window_ms
    new = np.empty(ts.size, dtype=bool)
    new[0] = True
    new[1:] = (win[1:] != win[:-1]) | (owner[1:] != owner[:-1])
    starts_idx = np.flatnonzero(new)
    ends_idx = np.append(starts_idx[1:], ts.size)
    delta = np.diff(vals, prepend=vals[0])
    inc = np.where(delta >= 0, delta, vals)
    inc[starts_idx] = 0.0  # also where a block begins: its first delta is another block's
    columns = ((ends_idx - starts_idx).astype(np.float64), np.add.reduceat(vals, starts_idx),
               np.minimum.reduceat(vals, starts_idx), np.maximum.reduceat(vals, starts_idx),
               vals[starts_idx], vals[ends_idx - 1], np.add.reduceat(inc, starts_idx))
    window_starts = win[starts_idx]
    # Windows per block: blocks whose samples were all NaN have none.
    first_window = np.searchsorted(owner[starts_idx], np.arange(len(blocks) + 1)).tolist()
    out: list[Rollup] = []
    for i, wanted in enumerate(distribution):
        a, b = first_window[i], first_window[i + 1]
        digests = None
        if wanted:
            digests = [sketch.build(vals[x:y]) for x, y in zip(starts_idx[a:b].tolist(), ends_idx[a:b].tolist(),
                                                                strict=True)]
        out.append(Rollup(window_ms, window_starts[a:b], *(c[a:b] for c in columns), digests=digests))
    return out


def counter_increase(r: Rollup) -> np.ndarray:
    """Per window: the increase inside it plus the step from the previous window's last sample."""
    boundary = np.zeros(len(r))
    if len(r) > 1:
        step = r.first[1:] - r.last[:-1]
        boundary[1:] = np.where(step >= 0, step, r.first[1:])
    return r.increase + boundary


def coarsen(r: Rollup, window_ms: int) -> Rollup:
    """Merge consecutive windows into coarser ones (e.g. 1 m → 5 m steps, 1 h → 1 d)."""
    if len(r) == 0 or window_ms == r.window_ms:
        return r
    groups = (r.starts // window_ms) * window_ms
    idx = np.flatnonzero(np.concatenate([[True], groups[1:] != groups[:-1]]))
    ends = np.concatenate([idx[1:], [len(r)]])
    full = counter_increase(r)
    full[idx] = r.increase[idx]  # the first window's boundary step lies before the new window
    digests = None
    if r.digests is not None:
        digests = [sketch.merge(r.digests[a:b]) for a, b in zip(idx.tolist(), ends.tolist(), strict=True)]
    return Rollup(window_ms, groups[idx], np.add.reduceat(r.count, idx), np.add.reduceat(r.sum, idx),
                  np.minimum.reduceat(r.min, idx), np.maximum.reduceat(r.max, idx), r.first[idx],
                  r.last[ends - 1], np.add.reduceat(full, idx), digests)


def concat(parts: list[Rollup], window_ms: int) -> Rollup:
    parts = [p for p in parts if len(p)]
    if not parts:
        return compute(np.empty(0, np.int64), np.empty(0), window_ms)
    digests = None
    if all(p.digests is not None for p in parts):
        digests = [d for p in parts for d in p.digests]  # type: ignore[union-attr]
    return Rollup(window_ms, np.concatenate([p.starts for p in parts]),
                  *(np.concatenate([p.column(c) for p in parts]) for c in COLUMNS), digests=digests)


def encode_many(rollups: Sequence[Rollup]) -> list[bytes]:
    """``encode`` of every rollup, the same bytes, the numpy work of equal-length blocks done together."""
    return rollup_codec.encode_many([(r.starts, {c: r.column(c) for c in COLUMNS}, r.digests) for r in rollups])


def encode(r: Rollup) -> bytes:
    """One block of format version ``ROLLUP_FORMAT_VERSION`` (layout in ``rollup_codec``).

    Version 1 was one zstd frame over raw float64 columns; version 2 codes the
    columns as predicted decimals: 1m tier of the load workload 4.19 -> 1.36 bytes
    per raw point, for ~0.4 (1m) / ~0.12 (1h) instead of ~0.05 CPU-ms per block (perf/RESULTS.md,
    "Rollup blocks"; an earlier seven-codec-call design took 13 ms).
    """
    return rollup_codec.encode(r.starts, {c: r.column(c) for c in COLUMNS}, r.digests)


def decode(data: bytes, window_ms: int) -> Rollup:
    """Decode a block of any format version ever written; corrupt_rollup on bad input."""
    if not isinstance(data, bytes):
        data = bytes(data)
    version = data[0] if data else None
    if version == 1:
        return _decode_v1(data, window_ms)
    if version != rollup_codec.VERSION:
        raise InvalidInput("corrupt_rollup", f"unknown rollup format version {version}")
    try:
        starts, cols, digests = rollup_codec.decode(data)
    except InvalidInput as exc:
        raise InvalidInput("corrupt_rollup", f"cannot decode rollup block: {exc.detail}") from None
    return Rollup(window_ms, starts, *(cols[c] for c in COLUMNS), digests=digests)


def _decode_v1(data: bytes, window_ms: int) -> Rollup:
    """Version 1: version, flags, n, then zstd(window starts int64 LE ‖ 7 float64 LE columns), digests."""
    try:
        _version, flags, n = _V1_HEADER.unpack_from(data, 0)
        pos = _V1_HEADER.size
        (size,) = _V1_LEN.unpack_from(data, pos)
        flat = np.frombuffer(bytes(cramjam.zstd.decompress(data[pos + 4:pos + 4 + size])), dtype="<f8")
        if flat.size != n * (1 + len(COLUMNS)):
            raise ValueError(f"rollup block holds {flat.size} values, want {n * (1 + len(COLUMNS))}")
        starts = flat[:n].view("<i8").astype(np.int64)
        cols = [flat[n * (i + 1):n * (i + 2)].copy() for i in range(len(COLUMNS))]
        pos += 4 + size
        digests = None
        if flags & 1:
            digests = []
            for _ in range(n):
                (size,) = _V1_LEN.unpack_from(data, pos)
                digests.append(sketch.Digest.from_bytes(data[pos + 4:pos + 4 + size]))
                pos += 4 + size
    except (struct.error, ValueError, OverflowError, cramjam.DecompressionError) as exc:
        raise InvalidInput("corrupt_rollup", f"cannot decode rollup block: {exc}") from None
    return Rollup(window_ms, starts, *cols, digests=digests)


WINDOW_AGGS = ("avg", "count", "sum", "min", "max", "first", "last", "increase", "p50", "p90", "p99", "p999")


def window_values(r: Rollup, agg: str) -> np.ndarray:
    """One value per window: a column, the average, the counter increase, or a digest quantile."""
    if agg == "avg":
        return r.sum / r.count
    if agg == "increase":
        return counter_increase(r)
    if agg.startswith("p"):
        if r.digests is None:
            raise InvalidInput("bad_data", f"agg={agg} needs a distribution series (kind=distribution)")
        q = float("0." + agg[1:])
        return np.array([d.quantile(q) for d in r.digests])
    return r.column(agg)
