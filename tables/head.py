"""The in-memory head of one partition: samples not yet cut into chunks.

Everything in the head is also in the partition's WAL table (and its
changelog), so the head is rebuilt from the WAL after a restart or a
rebalance. Points are appended as whole batches (columns); the sorted,
deduplicated view that reads and cuts need is built lazily, once per change.
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
        self.wal_keys: list[bytes] = []
        self.points = 0
        self.opened_at = time.monotonic()
        self._view: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def append(self, sids: np.ndarray, ts: np.ndarray, values: np.ndarray, wal_key: bytes | None) -> None:
        if ts.size:
            self._parts.append((sids, ts, values))
            self.points += int(ts.size)
            self._view = None
        if wal_key is not None:
            self.wal_keys.append(wal_key)

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
