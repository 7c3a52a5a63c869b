"""Each series' newest stored timestamp in one partition, looked up and raised a message at a time.

The out-of-order window checks every run of every mf.points message against its series'
newest timestamp. Kept in a dict, that was a probe and an update per series per message:
with real-time traffic (every series one point per message, 6,250 series a message) the
two were 14 % of the worker (py-spy, ``python -m perf.lib.cutcost --live --series 50000``).
Here the known series sit in two sorted numpy columns, so a message is one ``searchsorted``
and one scatter; series new since the last merge wait in a small dict until it holds an
eighth as many as the columns (at least ``MERGE_MIN``), then join them in one sort. The
columns take 16 bytes per series where the dict took ~100.

A message none of whose points can be refused (its oldest point within the window of the
partition's newest timestamp, which bounds every series') needs no lookup at all: its runs'
newest timestamps are only noted (``defer``) and raised together, in one sort, once enough
wait or before anything reads them. The lookup and raise per message were a quarter of a
busy worker's CPU in bulk traffic (perf/RESULTS.md, "Per message, not per point").
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

NEVER = np.iinfo(np.int64).min  # "no sample yet"
MERGE_MIN = 1024
DEFER_MIN = 4096  # runs noted before they are raised together (or half the known series, if more)
_SET_MAX = 256  # up to this many positions a set finds a repeat faster than a sort

_EMPTY_U64 = np.empty(0, dtype=np.uint64)
_EMPTY_I64 = np.empty(0, dtype=np.int64)


class Where:
    """Where the series of one ``lookup`` sit, for the ``raise_to`` that follows it."""

    __slots__ = ("found", "pos")

    def __init__(self, pos: np.ndarray | None, found: np.ndarray) -> None:
        self.pos = pos
        self.found = found


class NewestTimes:
    def __init__(self) -> None:
        self._keys = _EMPTY_U64  # sorted series ids
        self._times = _EMPTY_I64  # their newest timestamps
        self._new: dict[int, int] = {}  # series added since the last merge
        self._probed = 0  # lookups answered from _new since the last merge
        self._deferred: list[tuple[np.ndarray, np.ndarray]] = []  # (sids, newest) noted, not raised yet
        self._deferred_runs = 0

    def __len__(self) -> int:
        self._settle()
        return int(self._keys.size) + len(self._new)

    def defer(self, sids: np.ndarray, highs: np.ndarray) -> None:
        """Raise each of ``sids`` to its ``highs`` if newer, later: before the next read, or once many wait."""
        self._deferred.append((sids, highs))
        self._deferred_runs += int(sids.size)
        if self._deferred_runs >= max(DEFER_MIN, self._keys.size // 2):
            self._settle()

    def _settle(self) -> None:
        """Raise every noted series to the newest of its noted timestamps.

        One sort by series, one search, and ``maximum.at``, which raises in place and takes a
        series noted by several messages to the largest of its timestamps. Sorting by series
        and time, dropping repeats, then sorting again to search in order made an ingested
        message cost 10-17 % more (perf/bench_ingest_per_message.py, perf/RESULTS.md "The
        transport's floor").
        """
        if not self._deferred:
            return
        parts, self._deferred, self._deferred_runs = self._deferred, [], 0
        sids = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        highs = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        keys = self._keys
        if keys.size:
            # Searched in key order: the search reuses its last bound and the cache lines
            # (10,000 series over 20,000 known: 0.8 ms in message order, 0.2 sorted).
            order = np.argsort(sids)
            sids, highs = sids[order], highs[order]
            pos = keys.searchsorted(sids)
            np.minimum(pos, keys.size - 1, out=pos)
            found = keys[pos] == sids
            if found.all():
                np.maximum.at(self._times, pos, highs)
                return
            np.maximum.at(self._times, pos[found], highs[found])
            sids, highs = sids[~found], highs[~found]
        # Series not in the columns yet (a partition's first messages) wait in the dict.
        new = self._new
        sid_list = sids.tolist()
        if new:
            self._probed += len(sid_list)
        for sid, high in zip(sid_list, highs.tolist(), strict=True):
            if high > new.get(sid, NEVER):
                new[sid] = high
        self._maybe_merge()

    def _index(self, sid: int) -> int:
        keys = self._keys
        if keys.size:
            i = int(keys.searchsorted(np.uint64(sid)))
            if i < keys.size and int(keys[i]) == sid:
                return i
        return -1

    def get(self, sid: int, default: int | None = None) -> int | None:
        self._settle()
        i = self._index(sid)
        if i >= 0:
            return int(self._times[i])
        return self._new.get(sid, default)

    def __getitem__(self, sid: int) -> int:
        t = self.get(sid)
        if t is None:
            raise KeyError(sid)
        return t

    def __setitem__(self, sid: int, t: int) -> None:
        self.update(((sid, t),))

    def update(self, items: Iterable[tuple[int, int]]) -> None:
        """Set many at once (a partition's load): the merge is considered once, after all of them."""
        self._settle()
        for sid, t in items:
            i = self._index(sid)
            if i >= 0:
                self._times[i] = t
            else:
                self._new[sid] = t
        self._maybe_merge()

    def top(self) -> int | None:
        """The newest timestamp of any series (None when there is none)."""
        self._settle()
        tops = [int(self._times.max())] if self._times.size else []
        if self._new:
            tops.append(max(self._new.values()))
        return max(tops) if tops else None

    def lookup(self, sids: np.ndarray) -> tuple[np.ndarray, Where] | None:
        """Each series' newest timestamp (``NEVER`` when unknown) and where it sits; None when
        ``sids`` repeats a series (the caller then checks run by run, in order)."""
        self._settle()
        return self._lookup(sids)

    def _lookup(self, sids: np.ndarray) -> tuple[np.ndarray, Where] | None:
        keys = self._keys
        if not keys.size:
            return self._lookup_new(sids, np.full(sids.size, NEVER, dtype=np.int64), None,
                                    np.zeros(sids.size, dtype=bool))
        if sids.size > _SET_MAX:
            # A search in key order reuses the last bound and the cache lines: a 6,250-series
            # message over 1.25 M known series 1,527 -> 852 µs with its argsort, over 6,250 677 -> 624.
            order = np.argsort(sids)
            pos = np.empty(sids.size, dtype=np.intp)
            pos[order] = keys.searchsorted(sids[order])
        else:
            pos = keys.searchsorted(sids)
        np.minimum(pos, keys.size - 1, out=pos)
        found = keys[pos] == sids
        known = np.where(found, self._times[pos], NEVER)
        if found.all():  # the common message: every series known
            if _repeats(pos):
                return None
            return known, Where(pos, found)
        if _repeats(pos[found]):
            return None
        return self._lookup_new(sids, known, pos, found)

    def _lookup_new(self, sids: np.ndarray, known: np.ndarray, pos: np.ndarray | None,
                    found: np.ndarray) -> tuple[np.ndarray, Where] | None:
        missing = np.flatnonzero(~found)
        missing_sids = sids[missing].tolist()
        if len(set(missing_sids)) != len(missing_sids):
            return None
        if self._new:
            get = self._new.get
            known[missing] = np.fromiter((get(s, NEVER) for s in missing_sids), dtype=np.int64,
                                         count=len(missing_sids))
            self._probed += len(missing_sids)
        return known, Where(pos, found)

    def raise_to(self, where: Where, newer: np.ndarray, sids: np.ndarray, highs: np.ndarray) -> None:
        """Set the series of a ``lookup`` where ``newer`` to ``highs`` (no other change in between)."""
        listed = newer & where.found
        if where.pos is not None and listed.any():
            self._times[where.pos[listed]] = highs[listed]
        added = newer & ~where.found
        if added.any():
            self._new.update(zip(sids[added].tolist(), highs[added].tolist(), strict=True))
        self._maybe_merge()

    def _maybe_merge(self) -> None:
        # Merge when the dict is large, or once the probes it took cost as much as a merge:
        # else the last few hundred series of a partition stayed in it for good, every
        # message probing them one by one.
        if not self._new or (len(self._new) < max(MERGE_MIN, self._keys.size // 8)
                             and self._probed < self._keys.size // 8 + len(self._new)):
            return
        count = len(self._new)
        keys = np.concatenate((self._keys, np.fromiter(self._new.keys(), dtype=np.uint64, count=count)))
        times = np.concatenate((self._times, np.fromiter(self._new.values(), dtype=np.int64, count=count)))
        order = np.argsort(keys, kind="stable")
        self._keys, self._times = keys[order], times[order]
        self._new = {}
        self._probed = 0


def _repeats(pos: np.ndarray) -> bool:
    """Whether a position repeats: a set for a few, a sort for more (a count would allocate one
    slot per known series of the partition, for every message)."""
    if pos.size <= _SET_MAX:
        return len(set(pos.tolist())) != pos.size
    ordered = np.sort(pos)
    return bool((ordered[1:] == ordered[:-1]).any())
