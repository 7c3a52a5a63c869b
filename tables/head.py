"""The in-memory head of one partition: samples not yet cut into chunks.

Everything in the head is still in mf.points, from the partition's cut offset
on, so after a restart or a rebalance the head is rebuilt by replaying mf.points
(tables/replay.py). The head remembers the range of mf.points offsets it was
built from: the first one names the cut's segments, the one after the last one
becomes the next cut offset. Points are appended as whole batches (columns);
the sorted, deduplicated view that cuts and large reads need is built lazily.
A read of a few series does not rebuild it after every append: it searches the
last view and scans the batches appended since (the tail), and the view is rebuilt
only once the tail outgrows an eighth of it. Rebuilding a 300k-point view for each
freshness probe was a fifth of the worker's time under steady load (perf/RESULTS.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from metricsflow.codecs._wire import byte_runs
from metricsflow.samples import merge, sort_and_dedup

_EMPTY_U64 = np.empty(0, dtype=np.uint64)
_EMPTY_I64 = np.empty(0, dtype=np.int64)
_EMPTY_F64 = np.empty(0, dtype=np.float64)
_ZERO = np.zeros(1, dtype=np.intp)


TAIL_SCAN_MIN = 16_384  # points of unsorted tail a read may scan before it rebuilds the view


def sorted_by_runs(sids: np.ndarray, ts: np.ndarray,
                   vals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(sids, ts, vals) sorted by (sid, ts) when that only takes moving whole runs; else None.

    A batch holds each series' points as one run rising in time, and a series' later batches
    come later in time: then sorting the runs by series (stably) sorts the points, and the runs
    are moved whole (a copy per run length, not a gather per point): 930,000 points in 10-point
    runs sort in 18 against 46 ms with a gather per point (``view`` with its joins: 48-53 against
    70 ms; a three-key ``lexsort`` of the points: 180-250, perf/RESULTS.md). None when a series'
    points do not rise strictly in that order (late or repeated points): the caller sorts points
    then. Runs of one point (real-time traffic) are sorted as points, by series alone.
    """
    n = sids.size
    if n == 0:
        return None
    starts = np.flatnonzero(sids[1:] != sids[:-1]) + 1
    if 2 * starts.size >= n:  # runs of about one point (real-time traffic): sort the points by series
        order = stable_order(sids)
        s, t = sids[order], ts[order]
        if ((s[1:] == s[:-1]) & (t[1:] <= t[:-1])).any():
            return None
        return s, t, vals[order]
    rises = ts[1:] > ts[:-1]
    rises[starts - 1] = True  # a step into the next run is not a step within one
    if not rises.all():
        return None
    starts = np.concatenate((_ZERO, starts))
    lengths = np.diff(starts, append=n)
    run_sids = sids[starts]
    by_sid = stable_order(run_sids)
    run_sids, starts, lengths = run_sids[by_sid], starts[by_sid], lengths[by_sid]
    same = run_sids[1:] == run_sids[:-1]  # a series' next run must begin after its last one ends
    if (same & (ts[starts[1:]] <= ts[starts[:-1] + lengths[:-1] - 1])).any():
        return None
    return (np.repeat(run_sids, lengths), *_moved((ts, vals), starts, lengths))


RUN_LENGTHS_MOVED = 16  # more distinct run lengths than this: a gather per point instead


def _moved(columns: tuple[np.ndarray, ...], starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each column's runs [starts[i], starts[i] + lengths[i]) laid end to end, in that order (one plan for all)."""
    sizes = np.flatnonzero(np.bincount(lengths))  # the run lengths there are (a handful, usually one)
    if sizes.size > RUN_LENGTHS_MOVED:
        into = np.cumsum(lengths) - lengths
        order = np.arange(columns[0].size, dtype=np.intp) + np.repeat(starts - into, lengths)
        return tuple(column[order] for column in columns)
    columns = tuple(np.ascontiguousarray(column) for column in columns)
    if sizes.size == 1:  # runs of one length: gathered whole, they are already end to end
        size = int(sizes[0])
        return tuple(byte_runs(c, size * c.itemsize)[starts * c.itemsize].view(c.dtype) for c in columns)
    into = np.cumsum(lengths) - lengths
    outs = tuple(np.empty_like(column) for column in columns)
    for size in sizes.tolist():
        which = np.flatnonzero(lengths == size)
        src, dst = starts[which], into[which]
        for column, out in zip(columns, outs, strict=True):
            width = size * column.itemsize
            byte_runs(out, width)[dst * column.itemsize] = byte_runs(column, width)[src * column.itemsize]
    return outs


STABLE_RANKS_MIN = 4096  # fewer keys: numpy's stable sort of the keys themselves is as quick


def stable_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` of 64-bit series ids, in about half the time.

    numpy sorts 64-bit keys stably with timsort but 16-bit ones with a radix sort: an
    unstable sort gives each key its rank among the distinct keys, and the ranks are then
    sorted stably by radix (930,000 ids of 1,250 series: 65 against 130 ms).
    """
    n = keys.size
    if n < STABLE_RANKS_MIN:
        return np.argsort(keys, kind="stable")
    by_key = np.argsort(keys)
    ordered = keys[by_key]
    steps = np.empty(n, dtype=np.uint32)
    steps[0] = 0
    np.not_equal(ordered[1:], ordered[:-1], out=steps[1:], casting="unsafe")
    ranks = np.cumsum(steps, dtype=np.uint32)
    if int(ranks[-1]) > 0xFFFF:  # ranks past 16 bits: no radix sort for them
        return np.argsort(keys, kind="stable")
    rank_of = np.empty(n, dtype=np.uint16)
    rank_of[by_key] = ranks
    return np.argsort(rank_of, kind="stable")


def _sorted_latest(sids: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted by (sid, ts); for a repeated (sid, ts) the point appended last wins."""
    order = np.lexsort((np.arange(ts.size), ts, sids))
    sids, ts, vals = sids[order], ts[order], vals[order]
    last = np.ones(ts.size, dtype=bool)
    last[:-1] = (sids[1:] != sids[:-1]) | (ts[1:] != ts[:-1])
    return sids[last], ts[last], vals[last]


class Head:
    def __init__(self) -> None:
        self._sorted: tuple[np.ndarray, np.ndarray, np.ndarray] = (_EMPTY_U64, _EMPTY_I64, _EMPTY_F64)
        self._tail: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # appended since _sorted was built
        self._tail_points = 0
        self._tail_cat: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # _tail[:_tail_cat_n] joined
        self._tail_cat_n = 0
        self.first_offset: int | None = None  # first mf.points offset appended
        self.next_offset: int | None = None  # one past the last mf.points offset appended
        self.points = 0
        self.opened_at = time.monotonic()

    def append(self, sids: np.ndarray, ts: np.ndarray, values: np.ndarray, offset: int | None) -> None:
        """Add one message's points; ``offset`` is its mf.points offset (None: points moved from another head)."""
        if ts.size:
            self._tail.append((sids, ts, values))
            self._tail_points += int(ts.size)
            self.points += int(ts.size)
        if offset is not None:
            self.note_offsets(offset, offset + 1)

    def note_offsets(self, first: int, end: int) -> None:
        """Record that mf.points offsets [first, end) were consumed into this head."""
        if self.first_offset is None or first < self.first_offset:
            self.first_offset = first
        if self.next_offset is None or end > self.next_offset:
            self.next_offset = end

    def view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sids, ts, values) sorted by (sid, ts); for a repeated (sid, ts) the latest append wins."""
        if self._tail:
            parts = [self._sorted, *self._tail] if self._sorted[0].size else self._tail
            sids = np.concatenate([p[0] for p in parts])
            ts = np.concatenate([p[1] for p in parts])
            vals = np.concatenate([p[2] for p in parts])
            by_runs = sorted_by_runs(sids, ts, vals)
            if by_runs is not None:
                self._sorted = by_runs
            else:
                self._sorted = _sorted_latest(sids, ts, vals)
            self._tail, self._tail_points, self._tail_cat, self._tail_cat_n = [], 0, None, 0
        return self._sorted

    def _joined_tail(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._tail_cat is None or self._tail_cat_n < len(self._tail):
            parts = ([self._tail_cat] if self._tail_cat is not None else []) + self._tail[self._tail_cat_n:]
            self._tail_cat = tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[assignment]
            self._tail_cat_n = len(self._tail)
        assert self._tail_cat is not None
        return self._tail_cat

    def series(self, sid: int, start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray]:
        if self._tail_points > max(TAIL_SCAN_MIN, self._sorted[0].size // 8):
            self.view()
        sids, ts, vals = self._sorted
        key = np.uint64(sid)
        lo, hi = np.searchsorted(sids, key, "left"), np.searchsorted(sids, key, "right")
        s_ts, s_vals = ts[lo:hi], vals[lo:hi]
        a, b = np.searchsorted(s_ts, start_ms, "left"), np.searchsorted(s_ts, end_ms, "right")
        s_ts, s_vals = s_ts[a:b], s_vals[a:b]
        if not self._tail:
            return (s_ts, s_vals) if s_ts.size else (_EMPTY_I64, _EMPTY_F64)
        t_sids, t_ts, t_vals = self._joined_tail()
        hit = np.flatnonzero((t_sids == key) & (t_ts >= start_ms) & (t_ts <= end_ms))
        if not hit.size:
            return (s_ts, s_vals) if s_ts.size else (_EMPTY_I64, _EMPTY_F64)
        # The tail in append order (latest wins a timestamp), then over the view (the tail is newer).
        return merge(s_ts, s_vals, *sort_and_dedup(t_ts[hit], t_vals[hit]))

    def series_many(self, sids: Sequence[int], start_ms: int, end_ms: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """``series`` of each of ``sids`` in one vectorised pass (a query reads hundreds at once)."""
        if len(sids) < 4:
            return [self.series(sid, start_ms, end_ms) for sid in sids]
        if not self.points:
            return [(_EMPTY_I64, _EMPTY_F64)] * len(sids)
        if self._tail_points > max(TAIL_SCAN_MIN, self._sorted[0].size // 8):
            self.view()
        want = np.asarray(sids, dtype=np.uint64)
        v_sids, v_ts, v_vals = self._sorted
        lo = np.searchsorted(v_sids, want, "left")
        hi = np.searchsorted(v_sids, want, "right")
        # Each run is sorted by time: its window starts after the run's points before start_ms.
        before = np.concatenate([[0], np.cumsum(v_ts < start_ms)])
        upto = np.concatenate([[0], np.cumsum(v_ts <= end_ms)])
        firsts = (lo + before[hi] - before[lo]).tolist()
        lasts = (lo + upto[hi] - upto[lo]).tolist()
        tail = self._tail_groups(want, start_ms, end_ms) if self._tail else {}
        out = []
        for i, sid in enumerate(sids):
            a, b = firsts[i], lasts[i]
            ts, vals = (v_ts[a:b], v_vals[a:b]) if b > a else (_EMPTY_I64, _EMPTY_F64)
            hit = tail.get(sid)
            if hit is not None:
                ts, vals = merge(ts, vals, *sort_and_dedup(*hit))
            out.append((ts, vals))
        return out

    def _tail_groups(self, want: np.ndarray, start_ms: int,
                     end_ms: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Each wanted series' tail points in the window, in append order."""
        t_sids, t_ts, t_vals = self._joined_tail()
        idx = np.flatnonzero((t_ts >= start_ms) & (t_ts <= end_ms))
        wanted = np.sort(want)
        at = np.minimum(np.searchsorted(wanted, t_sids[idx]), wanted.size - 1)
        idx = idx[wanted[at] == t_sids[idx]]
        if not idx.size:
            return {}
        idx = idx[np.argsort(t_sids[idx], kind="stable")]  # grouped by series, append order kept
        g = t_sids[idx]
        bounds = np.flatnonzero(g[1:] != g[:-1]) + 1
        firsts = np.concatenate([[0], bounds]).tolist()
        return {int(g[a]): (t_ts[pos], t_vals[pos])
                for a, pos in zip(firsts, np.split(idx, bounds), strict=True)}

    def series_count(self) -> int:
        sids = self.view()[0]
        return int(np.count_nonzero(sids[1:] != sids[:-1]) + 1) if sids.size else 0
