"""The storage contract the PromQL engine reads through, and an in-memory store.

A ``SeriesSource`` answers one question: which series match all these matchers,
and what are their samples in ``[start_ms, end_ms]``. The worker fetches from
remote workers into a ``MemorySource`` first (scatter-gather), using
``selections()`` to learn every window a query will read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from metricsflow.samples import clip

from .regex import compile_anchored
from .values import RangeVec

MatchOp = Literal["=", "!=", "=~", "!~"]


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher; an absent label matches as the empty string, as in Prometheus."""

    name: str
    op: MatchOp
    value: str  # regexes are fully anchored, as in Prometheus

    def matches(self, v: str) -> bool:
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = compile_anchored(self.value).fullmatch(v) is not None
        return hit if self.op == "=~" else not hit


@dataclass(slots=True)
class SeriesData:
    """Samples of one series: ``timestamps_ms`` int64 sorted and unique, ``values`` float64."""

    labels: dict[str, str]  # includes "__name__"
    timestamps_ms: np.ndarray
    values: np.ndarray


class SeriesSource(Protocol):
    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[SeriesData]:
        """All series matching ALL matchers, with their samples in [start_ms, end_ms] inclusive."""
        ...


@dataclass(slots=True)
class _Stored:
    labels: dict[str, str]
    ts: np.ndarray
    vals: np.ndarray


@dataclass
class MemorySource:
    """Series held in memory with a label index (postings), for tests and prefetched data.

    ``add`` merges samples into an existing series with the same labels; on equal
    timestamps the newest value wins (same rule as a replayed write).
    """

    _series: list[_Stored] = field(default_factory=list)
    _by_key: dict[tuple[tuple[str, str], ...], int] = field(default_factory=dict)
    _postings: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._series)

    def add(
        self,
        labels: Mapping[str, str],
        timestamps_ms: Iterable[int] | np.ndarray,
        values: Iterable[float] | np.ndarray,
    ) -> None:
        self.add_keyed(tuple(sorted((k, v) for k, v in labels.items() if v != "")), timestamps_ms, values)

    def add_keyed(
        self,
        key: tuple[tuple[str, str], ...],
        timestamps_ms: Iterable[int] | np.ndarray,
        values: Iterable[float] | np.ndarray,
    ) -> None:
        """``add`` of a series whose labels come as its key: (name, value) pairs in name order, no empty
        values, as the worker's index keeps them (``WorkerStorage.label_key``): nothing sorted again."""
        ts = np.asarray(timestamps_ms, dtype=np.int64)
        vals = np.asarray(values, dtype=np.float64)
        if ts.shape != vals.shape or ts.ndim != 1:
            raise ValueError("timestamps and values must be 1-d columns of equal length")
        idx = self._by_key.get(key)
        if idx is None:
            clean = dict(key)
            # Storage hands out sorted, unique columns; only other inputs pay for sorting.
            if ts.size > 1 and not bool((ts[1:] > ts[:-1]).all()):
                order = np.argsort(ts, kind="stable")
                ts, vals = ts[order], vals[order]
                ts, vals = _dedupe_last(ts, vals)
            self._by_key[key] = len(self._series)
            for k, v in clean.items():
                self._postings.setdefault(k, {}).setdefault(v, []).append(len(self._series))
            self._series.append(_Stored(clean, ts, vals))
            return
        old = self._series[idx]
        all_ts = np.concatenate([old.ts, ts])
        all_vals = np.concatenate([old.vals, vals])
        order = np.argsort(all_ts, kind="stable")
        old.ts, old.vals = _dedupe_last(all_ts[order], all_vals[order])

    def add_series(self, series: Iterable[SeriesData]) -> None:
        for s in series:
            self.add(s.labels, s.timestamps_ms, s.values)

    def samples(self) -> int:
        """Samples held: what evaluating a query over this source costs, roughly."""
        return sum(s.ts.size for s in self._series)

    def _ids_matching(self, m: Matcher) -> set[int] | None:
        """Ids matching ``m``; None means "everything except" is cheaper, handled by caller."""
        values = self._postings.get(m.name, {})
        return {i for v, ids in values.items() if m.matches(v) for i in ids}

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[SeriesData]:
        candidates: set[int] | None = None
        negatives: list[Matcher] = []
        # Matchers that do not match "" select through the postings; the rest filter afterwards.
        for m in sorted(matchers, key=lambda m: m.op != "="):
            if m.matches(""):
                negatives.append(m)
                continue
            ids = self._ids_matching(m) or set()
            candidates = ids if candidates is None else candidates & ids
            if not candidates:
                return []
        if candidates is None:
            candidates = set(range(len(self._series)))
        out: list[SeriesData] = []
        for i in sorted(candidates):
            s = self._series[i]
            if not all(m.matches(s.labels.get(m.name, "")) for m in negatives):
                continue
            out.append(SeriesData(dict(s.labels), *clip(s.ts, s.vals, start_ms, end_ms)))
        return out


class SelectionSource:
    """The series a query's planned selections read, answered without re-indexing them.

    The worker reads each of ``selections()`` from its own storage, which returns every
    series once; the engine then asks for the same matchers with windows inside those
    read, so an answer is a lookup and a clip. Copying 120,000 samples of 1,000 series into
    a ``MemorySource`` cost about as much as evaluating the query (perf/RESULTS.md). A
    matcher set read twice (``x - x offset 1h``) or one never planned is answered by a
    ``MemorySource`` built when first needed, which merges repeated series.
    """

    def __init__(self) -> None:
        self._reads: dict[tuple[Matcher, ...], list[list[SeriesData] | RangeVec]] = {}
        self._merged: dict[tuple[Matcher, ...] | None, MemorySource] = {}

    def add(self, matchers: Sequence[Matcher], series: list[SeriesData] | RangeVec) -> None:
        """One read of ``matchers``: a list of series, or (``WorkerStorage.select_range``) flat columns."""
        self._reads.setdefault(_matcher_key(matchers), []).append(series)

    def samples(self) -> int:
        """Samples read: what evaluating a query over this source costs, roughly."""
        return sum(read.ts.size if isinstance(read, RangeVec) else sum(s.timestamps_ms.size for s in read)
                   for reads in self._reads.values() for read in reads)

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[SeriesData]:
        key = _matcher_key(matchers)
        reads = self._reads.get(key)
        if reads is None or len(reads) > 1:
            return self._memory(key if reads else None).select(matchers, start_ms, end_ms)
        return [SeriesData({k: v for k, v in s.labels.items() if v != ""},
                           *clip(s.timestamps_ms, s.values, start_ms, end_ms)) for s in _series(reads[0])]

    def select_range(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> RangeVec | None:
        """``select`` as the engine's flat columns, when a single read of ``matchers`` came as columns
        with its label sets in strictly ascending order; else None (ask ``select``)."""
        reads = self._reads.get(_matcher_key(matchers))
        if reads is None or len(reads) != 1 or not isinstance(reads[0], RangeVec):
            return None
        rv = reads[0]
        if any(a >= b for a, b in zip(rv.labels, rv.labels[1:], strict=False)):
            return None  # two series with one label set: the engine's merge of duplicates handles them
        return clip_range(rv, start_ms, end_ms)

    def _memory(self, key: tuple[Matcher, ...] | None) -> MemorySource:
        """A MemorySource of one matcher set's reads, or (None) of every read."""
        found = self._merged.get(key)
        if found is None:
            found = self._merged[key] = MemorySource()
            for k, reads in self._reads.items():
                if key is None or k == key:
                    for read in reads:
                        found.add_series(_series(read))
        return found


def _series(read: list[SeriesData] | RangeVec) -> list[SeriesData]:
    if not isinstance(read, RangeVec):
        return read
    bounds = read.offsets.tolist()
    return [SeriesData(dict(lb), read.ts[a:b], read.vals[a:b])
            for lb, a, b in zip(read.labels, bounds, bounds[1:], strict=False)]


def clip_range(rv: RangeVec, start_ms: int, end_ms: int) -> RangeVec:
    """Every series' samples with start_ms <= t <= end_ms; ``rv`` itself when all of them are inside."""
    if rv.ts.size == 0:
        return rv
    filled = rv.offsets[1:] > rv.offsets[:-1]
    if rv.ts[rv.offsets[:-1][filled]].min() >= start_ms and rv.ts[rv.offsets[1:][filled] - 1].max() <= end_ms:
        return rv
    keep = (rv.ts >= start_ms) & (rv.ts <= end_ms)
    kept = np.zeros(keep.size + 1, dtype=np.intp)
    np.cumsum(keep, out=kept[1:])
    return RangeVec(rv.labels, rv.ts[keep], rv.vals[keep], kept[rv.offsets])


def _matcher_key(matchers: Sequence[Matcher]) -> tuple[Matcher, ...]:
    return tuple(sorted(matchers, key=lambda m: (m.name, m.op, m.value)))


def _dedupe_last(ts: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if ts.size < 2:
        return ts, vals
    keep = np.ones(ts.size, dtype=bool)
    keep[:-1] = ts[1:] != ts[:-1]
    return ts[keep], vals[keep]


def selections(
    query: str,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    lookback_ms: int = 300_000,
    subquery_step_ms: int = 60_000,
) -> list[tuple[list[Matcher], int, int]]:
    """Every selector of ``query`` with the inclusive time window evaluation will read.

    The windows are a superset of what ``Engine.range`` (or ``Engine.instant`` with
    ``start_ms == end_ms``) asks its source for, so a ``MemorySource`` filled with
    them answers the query exactly like the full store.
    """
    # Imported here: the planner needs the parser helpers, which import Matcher from this module.
    from .prefetch import plan_selections

    return plan_selections(query, start_ms, end_ms, step_ms, lookback_ms, subquery_step_ms)
