"""The in-memory head of one partition: samples not yet cut into chunks.

Everything in the head is still in mf.points, from the partition's cut offset
on, so after a restart or a rebalance the head is rebuilt by replaying mf.points
(tables/replay.py). The head remembers the range of mf.points offsets it was
built from: the first one names the cut's segments, the one after the last one
becomes the next cut offset. Points are appended as whole batches (columns);
the sorted, deduplicated view that reads and cuts need is built lazily, once
per change.
"""

from __future__ import annotations

import time

import numpy as np

_EMPTY_U64 = np.empty(0, dtype=np.uint64)
_EMPTY_I64 = np.empty(0, dtype=np.int64)
_EMPTY_F64 = np.empty(0, dtype=np.float64)


class Head:
    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.first_offset: int | None = None  # first mf.points offset appended
        self.next_offset: int | None = None  # one past the last mf.points offset appended
        self.points = 0
        self.opened_at = time.monotonic()
        self._view: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def append(self, sids: np.ndarray, ts: np.ndarray, values: np.ndarray, offset: int | None) -> None:
        """Add one message's points; ``offset`` is its mf.points offset (None: points moved from another head)."""
        if ts.size:
            self._parts.append((sids, ts, values))
            self.points += int(ts.size)
            self._view = None
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
        if self._view is None:
            if not self._parts:
                self._view = (_EMPTY_U64, _EMPTY_I64, _EMPTY_F64)
            else:
                sids = np.concatenate([p[0] for p in self._parts])
                ts = np.concatenate([p[1] for p in self._parts])
                vals = np.concatenate([p[2] for p in self._parts])
                order = np.lexsort((np.arange(ts.size), ts, sids))
                sids, ts, vals = sids[order], ts[order], vals[order]
                last = np.ones(ts.size, dtype=bool)
                last[:-1] = (sids[1:] != sids[:-1]) | (ts[1:] != ts[:-1])
                self._view = (sids[last], ts[last], vals[last])
                self._parts = [self._view]
        return self._view

    def series(self, sid: int, start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray]:
        sids, ts, vals = self.view()
        lo, hi = np.searchsorted(sids, np.uint64(sid), "left"), np.searchsorted(sids, np.uint64(sid), "right")
        if lo == hi:
            return _EMPTY_I64, _EMPTY_F64
        s_ts = ts[lo:hi]
        a, b = np.searchsorted(s_ts, start_ms, "left"), np.searchsorted(s_ts, end_ms, "right")
        return s_ts[a:b], vals[lo:hi][a:b]

    def series_count(self) -> int:
        sids = self.view()[0]
        return int(np.count_nonzero(sids[1:] != sids[:-1]) + 1) if sids.size else 0
