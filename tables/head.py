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

import numpy as np

from metricsflow.samples import merge, sort_and_dedup

_EMPTY_U64 = np.empty(0, dtype=np.uint64)
_EMPTY_I64 = np.empty(0, dtype=np.int64)
_EMPTY_F64 = np.empty(0, dtype=np.float64)


TAIL_SCAN_MIN = 16_384  # points of unsorted tail a read may scan before it rebuilds the view


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
            order = np.lexsort((np.arange(ts.size), ts, sids))
            sids, ts, vals = sids[order], ts[order], vals[order]
            last = np.ones(ts.size, dtype=bool)
            last[:-1] = (sids[1:] != sids[:-1]) | (ts[1:] != ts[:-1])
            self._sorted = (sids[last], ts[last], vals[last])
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

    def series_count(self) -> int:
        sids = self.view()[0]
        return int(np.count_nonzero(sids[1:] != sids[:-1]) + 1) if sids.size else 0
