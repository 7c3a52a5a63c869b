"""The worker's time-series store over its Faust tables.

Per assigned partition: an in-memory head of the points consumed since the last
cut (mf.points itself is its log: no copy is written, tables/replay.py rebuilds
it), a cutmarks table holding the partition's *cut offset* (the first mf.points
offset no cut has made durable), a segments table (per series and unsealed
block, the new points of each cut, tables/segments.py), a chunks table (one
compressed block of raw samples per series and sealed block), rollup tables
(1 m and 1 h aggregates per series and sealed block) and a series table feeding
the label index.

A block is *sealed* once the partition's newest sample minus the out-of-order
window has passed its end; until then a cut only appends segments, and a seal
folds the block's chunk (if any), its segments in cut order and the head's
points (later wins a repeated timestamp) into one chunk and computes its rollups
once. Reads merge chunk, segments and head the same way, so every sample is
returned once; rollups of unsealed blocks are computed from raw at query time.

Cut protocol (``cut``), per partition:
  1. swap in an empty head and take the old head's sorted, deduplicated view;
  2. for every (series, block) it touches: if the block is sealed, fold it with
     the new points into its chunk and rollups; otherwise put one segment keyed
     (series, block, seq), seq = the head's first mf.points offset;
  3. seal every pending block the horizon has passed: fold into chunk + rollups;
  4. flush the producer, so chunks, rollups and segments are in their changelogs;
  5. write the cut offset (one past the old head's last mf.points offset), only
     now: the changelogs of several topics are not written atomically, so a mark
     sent with the data could land while some of the data did not. A lost mark
     only makes the next replay start earlier;
  6. delete the folded segments (tombstones; a lost tombstone only leaves data
     that the chunk already holds).
A crash anywhere leaves the old cut offset (with none, some or all of the new
data) or the new one with all of it: never a mark ahead of its data. The replay
from the durable cut offset builds a head with the same first offset, whose cut
rewrites the same segment keys and folds into the same chunk bytes and rollups,
so the protocol is idempotent. Two details keep it so when the data landed but
the mark did not: a restart ignores segments at or past the cut offset when it
loads the newest timestamps (the replay must refuse exactly what the first
ingest refused), and a cut that rewrites an existing segment key merges with
what is stored (later wins), so it never drops a point the lost cut kept.

Faust may commit mf.points offsets long before the cut: the records between the
cut offset and the committed offset stay in mf.points, whose retention must
outlive them (``tables.replay.check_points_retention``).

Retention (``apply_retention``) first seals the pending blocks the raw retention
is about to drop, so their rollups are computed and flushed before the raw data
and its segments go.

Out-of-order samples older than ``out_of_order_window_ms`` before the newest
sample of their series are refused (counted); younger ones go to a segment of
their block, or, if that block is already sealed, are folded into its chunk and
its rollups are recomputed.

Seals are bounded to a share of the worker's time (``SealBudget``): every series of
a partition crosses a block end at once. Past the budget, a cut writes the points
of a block past the horizon as a segment (the block is pending, or pending again if
it was sealed) and a later seal folds it; reads merge chunk and segments as always.
Between cuts, ``maybe_seal`` works the backlog off at the budget's pace (steps 3, 4
and 6 without a head); while no points arrive the budget does not bound it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np

from agents import metrics
from metricsflow import codecs, rollup, series_batch
from metricsflow.codecs import raw_decimal
from metricsflow.config import Settings
from metricsflow.errors import InvalidInput
from metricsflow.model import MetricKind
from metricsflow.pointbatch import decode_batch
from metricsflow.promql.labels import Labels
from metricsflow.promql.source import SeriesData
from metricsflow.promql.values import RangeVec
from metricsflow.samples import clip, merge
from tables import keys, segments
from tables.block_cache import Block, BlockCache, block_size
from tables.head import Head
from tables.index import MatcherLike, SeriesIndex
from tables.newest import NEVER, NewestTimes
from tables.partition_store import PartitionStore
from tables.seal_budget import IDLE_POINTS_PER_S, RateMeter, SealBudget
from tables.shared_stamps import SharedStamps

log = logging.getLogger(__name__)
# The cut gives the event loop back after this much work, so consumption, the consumer
# heartbeat and queries wait at most one slice (finding 2 of perf/RESULTS.md); and pauses
# CUT_PAUSE_S, so the points agent gets several messages in, not one per slice: with a bare
# sleep(0) freshness rose by up to 1.6 s with every cut at 70k pts/s (perf/RESULTS.md).
CUT_SLICE_S = 0.02
CUT_PAUSE_S = 0.005
SEGMENT_SLICE_RUNS = 2048  # segments a cut makes and writes at once, between two looks at the loop
# Seals hold the loop for shorter slices: their throughput is the seal budget's (MF_SEAL_SHARE), not
# the slice's, and a request that arrives during a slice cannot even be read before it ends (a 20 ms
# seal slice put up to 20 ms on queries while a seal backlog drained, perf/RESULTS.md "Sums in numpy,
# queries before seals").
SEAL_SLICE_S = 0.005
# A cut seals for at most this long, and so does each pass of ``maybe_seal``, which flushes and
# lets the partition's lock go after it: an idle worker seals without budget, and one pass of a
# backfill's backlog took 8 s, its chunks unflushed and the cut offset unmoved all along.
SEAL_PASS_S = 1.0
# Seals code the series of a block in batches sized to take about SEAL_BATCH_S (the first batch
# of a pass is SEAL_BATCH_FIRST series, none more than SEAL_BATCH_MAX): a request waits for at
# most one batch. Per block, batches of 4 cost ~1.2-1.6 ms of CPU, of 16 ~0.9-1.2, one at a
# time 1.8-2.5 (perf/RESULTS.md, "Seals in batches").
SEAL_BATCH_S = 0.01
SEAL_BATCH_FIRST = 4
SEAL_BATCH_MAX = 64
# A cut or seal waits at most this long for the queries in flight, then does one more slice:
# under a constant stream of queries a cut still gets ~30 % of the loop, a seal ~10 %.
QUERY_FIRST_MAX_S = 0.05
# Reads of up to this many blocks per series go through the cache of folded blocks; longer
# raw ranges (rare: the tiers answer them) scan, so they do not flush the cache.
FOLDED_BLOCKS_MAX = 8


@dataclass(slots=True, frozen=True)
class StorageTables:
    """The worker's tables, each one partition-explicit store (docs/format/keys.md)."""

    cutmarks: PartitionStore  # per partition: the cut offset (keys.CUT_OFFSET_KEY)
    chunks: PartitionStore
    segments: PartitionStore
    series: PartitionStore
    rollups: dict[str, PartitionStore]  # tier name ("1m", "1h") → store


@dataclass(slots=True)
class PartitionState:
    partition: int
    index: SeriesIndex = field(default_factory=SeriesIndex)
    head: Head = field(default_factory=Head)
    cutting: Head | None = None  # the head being cut: still readable until its blocks are written
    newest: NewestTimes = field(default_factory=NewestTimes)  # series id → newest stored timestamp
    top_ms: int | None = None  # newest timestamp of the partition: the seal horizon follows it
    pending: dict[int, set[int]] = field(default_factory=dict)  # unsealed block start → series with segments
    last_seq: int = -1  # highest segment seq written or loaded
    cut_offset: int | None = None  # durable: every mf.points offset below it is in segments or chunks
    consumed: int = -1  # highest mf.points offset ingested (or refused) into this state
    last_retention: float = 0.0
    last_cut: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(slots=True)
class IngestStats:
    points: int
    produced_at_ms: int


@dataclass(slots=True)
class CutStats:
    segments: int = 0  # segments written
    decimal_segments: int = 0  # of them, values as decimal mantissas (chunk tag 5)
    sealed: int = 0  # (series, block) folded into a chunk and its rollups
    tombstones: int = 0  # folded segments deleted
    folded: set[tuple[int, int]] = field(default_factory=set)  # (block, series) sealed by this cut
    doomed: list[bytes] = field(default_factory=list)  # their segments, deleted once the chunks are flushed
    deferred: bool = False  # the seal budget ran out: blocks past the horizon wait for a later cut
    # Wall time of steps 1-2, 3 and 4 (what a slow cut's log line names).
    write_s: float = 0.0
    seal_s: float = 0.0
    flush_s: float = 0.0

    @property
    def blocks(self) -> int:
        return self.segments + self.sealed


class QueriesInFlight:
    """Requests being answered: cuts and seals wait while there are any (up to QUERY_FIRST_MAX_S each time).

    A query's evaluation runs on a pool thread; a seal slice on the loop held the GIL
    beside it, and small queries took 2-4x as long while a seal backlog drained
    (perf/RESULTS.md, "Sums in numpy, queries before seals"). Sealing can wait; a dashboard should not.
    """

    def __init__(self) -> None:
        self.count = 0
        self._idle: asyncio.Event | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1
            if not self.count and self._idle is not None:
                self._idle.set()

    async def wait_idle(self, max_s: float) -> None:
        if not self.count:
            return
        if self._idle is None:
            self._idle = asyncio.Event()
        self._idle.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), max_s)


class _Slicer:
    """Pauses once every ``slice_s`` of work for a quarter of it (CUT_PAUSE_S after a cut's slice), so
    others get at least a fifth of the loop; and while queries are answered, until they are done (at
    most QUERY_FIRST_MAX_S a time)."""

    def __init__(self, queries: QueriesInFlight | None = None, slice_s: float = CUT_SLICE_S) -> None:
        self._since = time.perf_counter()
        self._queries = queries
        self._slice_s = slice_s
        self._pause_s = CUT_PAUSE_S * slice_s / CUT_SLICE_S

    async def tick(self) -> None:
        if self._queries is not None and self._queries.count:
            await self._queries.wait_idle(QUERY_FIRST_MAX_S)
            self._since = time.perf_counter()
            return
        now = time.perf_counter()
        if now - self._since >= self._slice_s:
            await asyncio.sleep(self._pause_s)
            self._since = time.perf_counter()


def _next_batch(took_s: float, blocks: int) -> int:
    """How many series the next seal batch takes: about SEAL_BATCH_S at this one's pace."""
    return max(1, min(SEAL_BATCH_MAX, int(SEAL_BATCH_S / max(took_s / blocks, 1e-6))))


_first = itemgetter(0)


def _rollup_size(r: rollup.Rollup) -> int:
    # Eight columns of float64/int64 per window; a digest is a few hundred bytes to a few KB.
    return 64 * len(r) + 512 + (1024 * len(r.digests) if r.digests is not None else 0)


class _Clip:
    """Consecutive blocks' columns clipped to a window, the empty ones left out (only the outer
    ones can reach past it), for many series of one read.

    A timestamp column shared by many series (tables/shared_stamps.py) is searched once and
    its clipped view is one object for all of them. The memo holds each column it saw, so an
    ``id`` stays that column's for as long as the memo lives.
    """

    __slots__ = ("_firsts", "_lasts", "end_ms", "start_ms")

    def __init__(self, start_ms: int, end_ms: int) -> None:
        self.start_ms, self.end_ms = start_ms, end_ms
        self._firsts: dict[int, tuple[np.ndarray, int, np.ndarray]] = {}
        self._lasts: dict[int, tuple[np.ndarray, int, np.ndarray]] = {}

    def __call__(self, parts: list[Block]) -> list[Block]:
        parts = [p for p in parts if p[0].size]
        if not parts:
            return parts
        ts, vals = parts[0]
        seen = self._firsts.get(id(ts))
        if seen is None:
            # the method: np.searchsorted's dispatch cost as much as the search
            a = int(ts.searchsorted(self.start_ms)) if ts[0] < self.start_ms else 0
            seen = self._firsts[id(ts)] = (ts, a, ts[a:])
        if seen[1]:
            parts[0] = seen[2], vals[seen[1]:]
        ts, vals = parts[-1]
        if not ts.size:  # the only part, all of it before the window
            return []
        seen = self._lasts.get(id(ts))
        if seen is None:
            b = int(ts.searchsorted(self.end_ms, "right")) if ts[-1] > self.end_ms else ts.size
            seen = self._lasts[id(ts)] = (ts, b, ts[:b])
        if seen[1] < ts.size:
            parts[-1] = seen[2], vals[:seen[1]]
        return [p for p in parts if p[0].size]


def _then(parts: list[Block], ts: np.ndarray, vals: np.ndarray) -> list[Block]:
    """``parts`` and newer samples (later wins): appended when they all come after, else merged into one part."""
    if not ts.size:
        return parts
    if not parts or parts[-1][0][-1] < ts[0]:
        return [*parts, (ts, vals)]
    return [merge(*_join(parts), ts, vals)]


def _join(parts: list[Block]) -> Block:
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class WorkerStorage:
    def __init__(self, settings: Settings, tables: StorageTables, active_partitions: Callable[[], set[int]],
                 flush: Callable[[], Awaitable[None]]) -> None:
        self._settings = settings
        self._cutmarks = tables.cutmarks
        self._chunks = tables.chunks
        self._segments = tables.segments
        self._series = tables.series
        self._rollups = tables.rollups
        self._active = active_partitions
        self._flush = flush
        self.on_data: Callable[[], None] | None = None  # told when points were stored (wakes rule evaluation)
        self._parts: dict[int, PartitionState] = {}
        self._points_stored = RateMeter()  # seals are unbounded while hardly any points arrive
        self._seal_budget = SealBudget(settings.seal_share, settings.seal_burst_s,
                                       idle=lambda: self._points_stored.rate() < IDLE_POINTS_PER_S)
        # Per (partition, chunk key): the block's chunk and segments folded.
        self._blocks: BlockCache[Block] = BlockCache(settings.block_cache_bytes)
        self._stamps = SharedStamps()  # a cached block's timestamps, one array per distinct column
        # Per tier, per (partition, chunk key): the block's rollup windows decoded.
        self._rollup_blocks: dict[str, BlockCache[rollup.Rollup]] = {
            tier: BlockCache(settings.rollup_cache_bytes, _rollup_size) for tier in tables.rollups}
        self.block_ms = settings.block_ms
        self._decimal_segments = settings.segment_codec == "raw_decimal"
        self.queries = QueriesInFlight()
        for name, cache in (("raw", self._blocks), *self._rollup_blocks.items()):
            metrics.QUERY_CACHE_BYTES.labels(name).set_function(lambda c=cache: c.bytes)
            metrics.QUERY_CACHE_ENTRIES.labels(name).set_function(lambda c=cache: len(c))

    # -- partition life cycle -------------------------------------------------
    def drop(self, partitions: set[int]) -> None:
        """Forget in-memory state of partitions that moved (rebuilt on next use)."""
        for p in partitions:
            self._parts.pop(p, None)
        self._clear_caches()

    def drop_all(self) -> None:
        self._parts.clear()
        self._clear_caches()

    def _clear_caches(self) -> None:
        self._blocks.clear()
        for cache in self._rollup_blocks.values():
            cache.clear()

    def state(self, partition: int) -> PartitionState:
        st = self._parts.get(partition)
        if st is None:
            st = self._load(partition)
            self._parts[partition] = st
        return st

    def _load(self, partition: int) -> PartitionState:
        started = time.monotonic()
        st = PartitionState(partition)
        for key, value in self._series.scan(partition):
            self._index_series(st.index, key, value)
        last_block: dict[int, bytes] = {}
        for key, value in self._chunks.scan(partition):
            last_block[keys.parse_chunk_key(key)[0]] = value  # key order: the last one wins
        newest = {sid: int(codecs.decode(value)[0][-1]) for sid, value in last_block.items()}
        mark = self._cutmarks.get(partition, keys.CUT_OFFSET_KEY)
        st.cut_offset = None if mark is None else keys.decode_cut_offset(mark)
        n_segments = 0
        for key, value in self._segments.scan(partition):
            sid, block, seq = keys.parse_segment_key(key)
            st.pending.setdefault(block, set()).add(sid)
            st.last_seq = max(st.last_seq, seq)
            t = segments.last_timestamp(value)
            # A segment at or past the cut offset comes from a cut whose mark was lost: the replay
            # re-ingests its messages, and must judge their age as the first ingest did.
            if t is not None and seq < (st.cut_offset or 0):
                newest[sid] = max(t, newest.get(sid, t))
            n_segments += 1
        st.newest.update(newest.items())
        st.top_ms = st.newest.top()
        log.info("partition %d loaded: %d series, %d segments, cut offset %s in %.2fs",
                 partition, len(st.index), n_segments, st.cut_offset, time.monotonic() - started)
        return st

    def cut_offset(self, partition: int) -> int | None:
        """The first mf.points offset of ``partition`` not yet durable in segments or chunks (None: no cut yet)."""
        return self.state(partition).cut_offset

    # -- writes (called from the agents, inside stream iteration) -------------
    def consumed_offset(self, partition: int) -> int:
        """The highest mf.points offset of ``partition`` stored (or refused) here; -1 before the first."""
        st = self._parts.get(partition)
        return -1 if st is None else st.consumed

    def ingest_points(self, partition: int, offset: int, value: bytes) -> IngestStats:
        st = self.state(partition)
        st.consumed = max(st.consumed, offset)  # a refused batch is consumed too: rule watermarks wait on this
        batch = decode_batch(value)  # raises InvalidInput before anything is written
        sids, ts, vals = batch.point_series_ids(), batch.timestamps_ms, batch.values
        # A replay from the cut offset meets the same newest timestamps in the same order,
        # so it refuses exactly the points refused the first time.
        keep = self._in_order_window(st, batch.series_ids, batch.run_lengths, ts)
        if keep is not None:
            refused = int(ts.size - keep.sum())
            metrics.POINTS_REFUSED.labels("out_of_order_too_old").inc(refused)
            sids, ts, vals = sids[keep], ts[keep], vals[keep]
        st.head.append(sids, ts, vals, offset)
        self._points_stored.add(int(ts.size))
        if ts.size and self.on_data is not None:
            self.on_data()
        return IngestStats(int(ts.size), batch.produced_at_ms)

    def _in_order_window(self, st: PartitionState, run_sids: np.ndarray, run_lengths: np.ndarray,
                         ts: np.ndarray) -> np.ndarray | None:
        """Mask of points to keep, or None when all are kept; updates the newest timestamps.

        Vectorised over runs: in real-time traffic a run is one point, and a Python loop
        with two numpy reductions per run was 16 % of the worker (py-spy, cutcost --live);
        the newest timestamps are looked up and raised for all runs at once (tables/newest.py).
        """
        nonempty = run_lengths > 0
        sids, lengths = run_sids[nonempty], run_lengths[nonempty].astype(np.int64)
        if sids.size == 0:
            return None
        starts = np.zeros(sids.size, dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        window = self._settings.out_of_order_window_ms
        if st.top_ms is not None:
            top = max(st.top_ms, int(ts.max()))
            if int(ts.min()) >= top - window:
                # No series' newest is above the partition's, this message's own runs included:
                # nothing here can be refused, and the newest timestamps are raised later, many
                # messages in one go.
                st.newest.defer(sids, np.maximum.reduceat(ts, starts))
                st.top_ms = top
                return None
        found = st.newest.lookup(sids)
        if found is None:  # a series with several runs in the message
            return self._in_order_window_runs(st, sids.tolist(), starts, starts + lengths, ts)
        known, where = found
        lows = np.minimum.reduceat(ts, starts)
        highs = np.maximum.reduceat(ts, starts)
        keep = None
        late = np.flatnonzero((known != NEVER) & (lows < known - window))
        if late.size:  # rare: only runs with refused points pay a Python step
            keep = np.ones(ts.size, dtype=bool)
            for i in late.tolist():
                a, b = int(starts[i]), int(starts[i] + lengths[i])
                keep[a:b] = ts[a:b] >= known[i] - window
        newer = highs > known
        if newer.any():
            st.newest.raise_to(where, newer, sids, highs)
            top = int(highs[newer].max())
            if st.top_ms is None or top > st.top_ms:
                st.top_ms = top
        return keep

    def _in_order_window_runs(self, st: PartitionState, sid_list: list[int], starts: np.ndarray, ends: np.ndarray,
                              ts: np.ndarray) -> np.ndarray | None:
        """Run by run, for batches that repeat a series: each run is checked against the ones before it."""
        window = self._settings.out_of_order_window_ms
        keep = None
        for sid, a, b in zip(sid_list, starts.tolist(), ends.tolist(), strict=True):
            run_ts = ts[a:b]
            newest = st.newest.get(sid)
            if newest is not None and run_ts.min() < newest - window:
                if keep is None:
                    keep = np.ones(ts.size, dtype=bool)
                keep[a:b] = run_ts >= newest - window
            top = int(run_ts.max())
            if newest is None or top > newest:
                st.newest[sid] = top
                if st.top_ms is None or top > st.top_ms:
                    st.top_ms = top
        return keep

    def ingest_series(self, partition: int, key: bytes, value: bytes | None) -> int:
        """Index the series of one mf.series record (one series or a batch); the number new to the index.

        The record is kept in the series table as it came when it brought a new series:
        the table's changelog then costs one record per announcement, not per series.
        Raises InvalidInput for a record that is not one (nothing is indexed then).
        """
        st = self.state(partition)
        if value is None:
            return 0  # deletes of series are retention's business, not the announcer's
        added = self._index_series(st.index, key, value, strict=True)
        if added:
            self._series.put(partition, key, value)
        return added

    @staticmethod
    def _index_series(index: SeriesIndex, key: bytes, value: bytes, strict: bool = False) -> int:
        try:
            entries = series_batch.decode_series(key, value)
        except InvalidInput as exc:
            if strict:
                raise
            # Nothing this code writes (it keeps only records that decoded): skip it, load the rest.
            log.warning("ignoring series table entry %s: %s", key.hex(), exc)
            return 0
        added = 0
        for sid, tenant, labels, kind in entries:
            if sid not in index:
                index.add(sid, tenant, labels, kind)
                added += 1
        return added

    def loaded_partitions(self) -> list[int]:
        return list(self._parts)

    async def maybe_cut(self, partition: int, interval: bool = True) -> CutStats | None:
        """Cut when due (interval passed, unless ``interval`` is False, or the head is over its size);
        None when no cut ran."""
        st = self.state(partition)
        due = interval and time.monotonic() - st.last_cut >= self._settings.head_cut_interval_s
        # A head of refused points only still moves the cut offset past its messages; a quiet
        # partition still seals the blocks an earlier cut left to its budget.
        work = (st.head.next_offset is not None or self.seal_backlog(partition) > 0
                or self._segments.holds(partition))  # tombstones of a seal: a quiet partition's cut sends them
        if (due and work) or st.head.points >= self._settings.head_max_points:
            return await self.cut(partition)
        return None

    async def cut_due(self, check_interval_s: float) -> list[tuple[int, CutStats, float]]:
        """One check of the cut timer (every ``check_interval_s``): the partitions due, the longest
        uncut first, at most as many as keep every partition on its interval; heads over their size
        always. A steady load makes every partition due at once, and 8 cuts back to back held
        consumption to a third for ~3.5 s: freshness p99 2.2-3.1 s at 291k points/s (perf/RESULTS.md,
        "Cuts spread over the interval")."""
        cap = max(1, math.ceil(len(self._parts) * check_interval_s / self._settings.head_cut_interval_s))
        done: list[tuple[int, CutStats, float]] = []  # partition, its cut, seconds it took
        for partition in sorted(self._parts, key=lambda p: self._parts[p].last_cut):
            if partition not in self._parts:  # revoked while an earlier cut ran
                continue
            started = time.perf_counter()
            stats = await self.maybe_cut(partition, interval=len(done) < cap)
            if stats is not None:
                done.append((partition, stats, time.perf_counter() - started))
        return done

    def seal_horizon_ms(self, partition: int) -> int | None:
        """Blocks ending at or before this are sealed: no in-window sample of the partition can reach them."""
        top_ms = self.state(partition).top_ms
        return None if top_ms is None else top_ms - self._settings.out_of_order_window_ms

    async def cut(self, partition: int) -> CutStats:
        """Move the head into segments and chunks (protocol in the module docstring)."""
        st = self.state(partition)
        async with st.lock:
            old, st.head = st.head, Head()
            st.cutting = old  # appends go to the new head; reads still see the old one
            stats = CutStats()
            try:
                slicer = _Slicer(self.queries)
                started = time.perf_counter()
                await self._write_head(st, old, stats, slicer)  # steps 1-2
                stats.write_s = time.perf_counter() - started
                await self._seal_pending(st, stats, _Slicer(self.queries, SEAL_SLICE_S),
                                         self.seal_horizon_ms(partition), self._seal_budget,
                                         time.perf_counter() + SEAL_PASS_S)  # step 3
                stats.seal_s = time.perf_counter() - started - stats.write_s
                await self._flush()  # step 4: chunks before the cut offset moves and the segments go
                stats.flush_s = time.perf_counter() - started - stats.write_s - stats.seal_s
                if old.next_offset is not None and (st.cut_offset is None or old.next_offset > st.cut_offset):
                    st.cut_offset = old.next_offset  # step 5
                    self._cutmarks.put(partition, keys.CUT_OFFSET_KEY, keys.encode_cut_offset(old.next_offset))
                self._drop_folded(st, stats)  # step 6
            except BaseException:
                # Put the points back so nothing is lost from memory; mf.points still has them.
                # Old first: for a repeated timestamp the newer append must keep winning.
                newer, st.head = st.head, Head()
                st.head.append(*old.view(), None)
                st.head.append(*newer.view(), None)
                for h in (old, newer):
                    if h.first_offset is not None and h.next_offset is not None:
                        st.head.note_offsets(h.first_offset, h.next_offset)
                raise
            finally:
                st.cutting = None
                st.last_cut = time.monotonic()
            return stats

    def _drop_folded(self, st: PartitionState, stats: CutStats) -> None:
        """Tombstone the segments folded into flushed chunks; only now do their blocks stop being pending."""
        self._segments.delete_many(st.partition, stats.doomed)  # their tombstones go with the next flush
        for key in stats.doomed:
            self._forget(st.partition, key)
        # A failed cut never gets here: its blocks stay pending, so a later seal deletes their segments.
        for block, sid in stats.folded:
            pending = st.pending.get(block)
            if pending is not None:
                pending.discard(sid)
                if not pending:
                    del st.pending[block]
        stats.tombstones = len(stats.doomed)

    def _seq(self, st: PartitionState, head: Head) -> int:
        """The cut's segment seq: the head's first mf.points offset, so a replay reuses it."""
        if head.first_offset is not None:
            seq = head.first_offset
        else:
            seq = st.last_seq + 1
        st.last_seq = max(st.last_seq, seq)
        return seq

    async def _write_head(self, st: PartitionState, head: Head, stats: CutStats, slicer: _Slicer) -> None:
        """Step 2: one segment per (series, unsealed block); sealed blocks are folded."""
        sids, ts, vals = head.view()
        if not ts.size:
            return
        partition = st.partition
        blocks = (ts // self.block_ms) * self.block_ms
        starts = np.concatenate([[0], np.flatnonzero((sids[1:] != sids[:-1]) | (blocks[1:] != blocks[:-1])) + 1])
        lengths = np.diff(starts, append=ts.size)
        run_sids, run_blocks = sids[starts], blocks[starts]
        horizon = self.seal_horizon_ms(partition)
        rewrite = head.first_offset is not None and head.first_offset <= st.last_seq
        seq = self._seq(st, head)

        async def put_segments(runs: np.ndarray) -> None:
            # Unsealed, or sealed but over the seal budget: a segment each, which makes the block
            # pending (again); a later cut folds it when the budget allows. Keys and values are
            # made for a slice of runs at a time (the per-run Python was most of a cut's own CPU),
            # and written in one RocksDB batch per slice (a write each cost twice as much). Until a
            # slice is written its points are read from the head being cut; block folds cached
            # meanwhile are dropped after the write.
            for lo in range(0, runs.size, SEGMENT_SLICE_RUNS):
                await slicer.tick()
                part = runs[lo:lo + SEGMENT_SLICE_RUNS]
                part_blocks, part_sids = run_blocks[part], run_sids[part]
                names = keys.segment_keys(part_sids, part_blocks, seq)
                values = segments.encode_spans(ts, vals, starts[part], lengths[part], self._decimal_segments)
                if rewrite:  # a replay of messages a lost cut already wrote: never drop what that cut kept
                    values = [self._merged_segment(partition, k, v) for k, v in zip(names, values, strict=True)]
                self._segments.put_many(partition, list(zip(names, values, strict=True)))
                for key in names:
                    self._forget(partition, key)  # a replay may have rewritten it with more points
                for block in np.unique(part_blocks).tolist():
                    st.pending.setdefault(block, set()).update(part_sids[part_blocks == block].tolist())
                stats.segments += len(names)
                if self._decimal_segments:
                    stats.decimal_segments += sum(1 for value in values if value[0] == raw_decimal.TAG)

        sealed = (run_blocks + self.block_ms <= horizon) if horizon is not None else np.zeros(starts.size, bool)
        await put_segments(np.flatnonzero(~sealed))
        # Points for sealed blocks (a backfill, late data) are folded into their chunks in batches.
        batch = SEAL_BATCH_FIRST
        for block in np.unique(run_blocks[sealed]).tolist():
            runs = np.flatnonzero(sealed & (run_blocks == block)).tolist()
            while runs:
                await slicer.tick()
                if not self._seal_budget.available():
                    await put_segments(np.array(runs, dtype=np.intp))
                    break
                now, runs = runs[:batch], runs[batch:]
                started = time.perf_counter()
                self._fold_many(st, block, [int(run_sids[i]) for i in now],
                                [(ts[starts[i]:starts[i] + lengths[i]], vals[starts[i]:starts[i] + lengths[i]])
                                 for i in now],
                                stats, self._seal_budget)
                batch = _next_batch(time.perf_counter() - started, len(now))

    def _merged_segment(self, partition: int, key: bytes, value: bytes) -> bytes:
        """``value`` over the segment already stored under ``key`` (later wins): usually the same points."""
        old = self._segments.get(partition, key)
        if old is None or old == value:
            return value
        ts, vals = segments.fold([codecs.decode(old), codecs.decode(value)])
        return segments.encode_runs(ts, vals, [0, int(ts.size)], self._decimal_segments)[0]

    async def _seal_pending(self, st: PartitionState, stats: CutStats, slicer: _Slicer, horizon: int | None,
                            budget: SealBudget | None = None, until: float | None = None) -> None:
        """Step 3: fold every pending block that ends at or before ``horizon``, as far as ``budget`` allows
        (and until ``until``, a perf_counter time)."""
        if horizon is None:
            return
        folded = 0
        batch = SEAL_BATCH_FIRST
        for block in sorted(b for b in st.pending if b + self.block_ms <= horizon):
            todo = [sid for sid in sorted(st.pending[block]) if (block, sid) not in stats.folded]
            while todo:
                await slicer.tick()
                if budget is not None and not budget.available():
                    stats.deferred = True
                    return
                if until is not None and folded and time.perf_counter() >= until:
                    return
                sids, todo = todo[:batch], todo[batch:]
                started = time.perf_counter()
                self._fold_many(st, block, sids, None, stats, budget)
                folded += len(sids)
                batch = _next_batch(time.perf_counter() - started, len(sids))

    async def maybe_seal(self, partition: int) -> CutStats | None:
        """Seal the partition's backlog between cuts, as far as the seal budget allows; None if nothing to do.

        Cuts come every ``head_cut_interval_s`` (5 minutes by default), and a cut seals at
        most the budget saved up since the last one (``seal_burst_s``): waiting for cuts held
        sealing far below its share. Passes of at most SEAL_PASS_S each flush their chunks
        and delete the folded segments, so a long drain is durable as it goes and never holds
        the partition's lock for long.
        """
        if not self.seal_backlog(partition) or not self._seal_budget.available():
            return None
        st = self.state(partition)
        total = CutStats()
        while self.seal_backlog(partition) and self._seal_budget.available():
            stats = await self._seal_pass(st, self.seal_horizon_ms(partition), self._seal_budget, SEAL_PASS_S)
            if not stats.folded:
                break
            total.seal_s += stats.seal_s
            total.flush_s += stats.flush_s
            total.sealed += stats.sealed
            total.tombstones += stats.tombstones
            total.deferred = stats.deferred
        return total

    async def _seal_pass(self, st: PartitionState, horizon: int | None, budget: SealBudget | None = None,
                         max_s: float | None = None) -> CutStats:
        """Steps 3, 4 and 6 of a cut without a head, under the partition's lock: fold what is pending up
        to ``horizon`` (within ``budget``, for at most ``max_s``), flush, then delete the folded segments."""
        async with st.lock:
            stats = CutStats()
            started = time.perf_counter()
            await self._seal_pending(st, stats, _Slicer(self.queries, SEAL_SLICE_S), horizon, budget,
                                     None if max_s is None else started + max_s)
            stats.seal_s = time.perf_counter() - started
            if stats.folded:
                await self._flush()  # the chunks and rollups must be durable before the segments go
                self._drop_folded(st, stats)
                stats.flush_s = time.perf_counter() - started - stats.seal_s
            return stats

    def seal_backlog(self, partition: int) -> int:
        """(series, block) past the seal horizon and not sealed yet."""
        st = self.state(partition)
        horizon = self.seal_horizon_ms(partition)
        if horizon is None:
            return 0
        return sum(len(sids) for block, sids in st.pending.items() if block + self.block_ms <= horizon)

    def _fold_many(self, st: PartitionState, block: int, sids: Sequence[int], new: Sequence[Block] | None,
                   stats: CutStats, budget: SealBudget | None = None) -> None:
        """Write sealed blocks of one block time: per series its chunk, then its segments in cut
        order, then its points in ``new`` (one entry per series; later wins), as one chunk and its rollups.

        The series are coded together (``codecs.encode_many``, ``rollup.compute_many``): one at a
        time, numpy call overhead was most of a seal's 2-2.8 ms (perf/RESULTS.md, "Seals in
        batches"). The time it takes is spent from ``budget`` when one is given.
        """
        if new is not None and len(new) != len(sids):
            raise ValueError(f"new points for {len(new)} series, {len(sids)} series to fold")
        started = time.perf_counter()
        partition = st.partition
        folded: list[Block] = []
        for i, sid in enumerate(sids):
            parts, seg_keys = self._block_parts(partition, sid, block)
            if new is not None:
                parts.append(new[i])
            folded.append(segments.fold(parts))
            stats.doomed += seg_keys
        block_keys = [keys.chunk_key(sid, block) for sid in sids]
        for key, chunk in zip(block_keys, codecs.encode_many(folded), strict=True):
            self._chunks.put(partition, key, chunk)
            self._forget(partition, key)
        kinds = st.index.kinds
        distribution = [kinds.get(sid) == MetricKind.DISTRIBUTION for sid in sids]
        for tier, store in self._rollups.items():
            computed = rollup.compute_many(folded, rollup.TIERS_MS[tier], distribution)
            for key, value in zip(block_keys, rollup.encode_many(computed), strict=True):
                store.put(partition, key, value)
                self._rollup_blocks[tier].drop(partition, key)
        stats.folded.update((block, sid) for sid in sids)
        stats.sealed += len(sids)
        if budget is not None:
            budget.spend(time.perf_counter() - started)

    # -- retention ------------------------------------------------------------
    async def apply_retention(self, partition: int, now_ms: int) -> dict[str, int]:
        """Seal the pending blocks the raw retention is about to drop (their rollups outlive them), then expire."""
        if self._settings.raw_retention_ms > 0:
            await self._seal_pass(self.state(partition), now_ms - self._settings.raw_retention_ms)
        return self.expire(partition, now_ms)

    def expire(self, partition: int, now_ms: int) -> dict[str, int]:
        """Delete (and tombstone) blocks past each tier's retention; returns blocks deleted per tier.

        Segments follow the raw retention; their count is reported as tier "segments".
        ``apply_retention`` seals them first, so only it keeps their rollups.
        """
        s = self._settings
        deleted: dict[str, int] = {}
        tiers = [("raw", self._chunks, s.raw_retention_ms)]
        tiers += [(t, store, s.rollup_1m_retention_ms if t == "1m" else s.rollup_1h_retention_ms)
                  for t, store in self._rollups.items()]
        for name, store, retention_ms in tiers:
            if retention_ms <= 0:
                continue
            horizon = now_ms - retention_ms
            doomed = [k for k, _ in store.scan(partition) if keys.parse_chunk_key(k)[1] + self.block_ms <= horizon]
            for k in doomed:
                store.delete(partition, k)
                if name == "raw":
                    self._forget(partition, k)
                else:
                    self._rollup_blocks[name].drop(partition, k)
            deleted[name] = len(doomed)
        if s.raw_retention_ms > 0:
            deleted["segments"] = self._expire_segments(partition, now_ms - s.raw_retention_ms)
        self.state(partition).last_retention = time.monotonic()
        return deleted

    def _expire_segments(self, partition: int, horizon_ms: int) -> int:
        # Every segment is in ``pending`` (loaded from the table), so only expired blocks are scanned.
        st = self.state(partition)
        doomed = []
        for block in [b for b in st.pending if b + self.block_ms <= horizon_ms]:
            for sid in st.pending.pop(block):
                lo, hi = keys.segment_range(sid, block, block)
                doomed += [k for k, _ in self._segments.scan(partition, lo, hi)]
        self._segments.delete_many(partition, doomed)
        for k in doomed:
            self._forget(partition, k)
        return len(doomed)

    def retention_due(self, partition: int) -> bool:
        st = self.state(partition)
        return time.monotonic() - st.last_retention >= self._settings.retention_check_interval_s

    # -- reads ----------------------------------------------------------------
    def retention(self) -> dict[str, int]:
        s = self._settings
        return {"raw": s.raw_retention_ms, "1m": s.rollup_1m_retention_ms, "1h": s.rollup_1h_retention_ms}

    def readable_partitions(self) -> list[int]:
        return sorted(self._active())

    def read(self, partition: int, sid: int, start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples of one series in [start_ms, end_ms] from chunks, segments and head, each once."""
        return self.read_many(partition, [sid], start_ms, end_ms)[0]

    def read_many(self, partition: int, sids: Sequence[int], start_ms: int,
                  end_ms: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """``read`` of many series of one partition: the heads are searched once for all of them."""
        return [_join(parts) for parts in self._parts_many(partition, sids, start_ms, end_ms)]

    def _parts_many(self, partition: int, sids: Sequence[int], start_ms: int, end_ms: int,
                    clip: _Clip | None = None) -> list[list[Block]]:
        """Per series, its samples in the window as consecutive parts in time order, not yet joined.

        ``clip`` (for start_ms..end_ms) may carry over from other partitions of the same read."""
        first = (start_ms // self.block_ms) * self.block_ms
        last = (end_ms // self.block_ms) * self.block_ms
        st = self.state(partition)
        heads = st.head.series_many(sids, start_ms, end_ms)
        cutting = st.cutting.series_many(sids, start_ms, end_ms) if st.cutting is not None else None
        blocks = range(first, last + 1, self.block_ms)
        nb = len(blocks)
        stored = self._stored_many(partition, sids, blocks) if nb <= FOLDED_BLOCKS_MAX else None
        clip = clip or _Clip(start_ms, end_ms)
        out = []
        for i, sid in enumerate(sids):
            if stored is not None:
                parts = clip(stored[i * nb:(i + 1) * nb])
            else:
                scanned = self._scan_stored(partition, sid, first, last, start_ms, end_ms)
                parts = [scanned] if scanned[0].size else []
            if cutting is not None:
                parts = _then(parts, *cutting[i])
            head = heads[i]
            out.append(_then(parts, *head) if head[0].size else parts)
        return out

    def _stored_many(self, partition: int, sids: Sequence[int], blocks: range) -> list[Block]:
        """``_stored`` of every (series, block), series by series: the cache asked once for all of them."""
        pack = keys.chunk_key
        found = self._blocks.get_many(partition, [pack(sid, b) for sid in sids for b in blocks])
        if None in found:
            nb = len(blocks)
            for j, hit in enumerate(found):
                if hit is None:
                    found[j] = self._stored(partition, sids[j // nb], blocks[j % nb])
        return found  # type: ignore[return-value]

    def _stored(self, partition: int, sid: int, block: int) -> Block:
        """A block's chunk and segments folded (later wins), cached until a write touches the block.

        A dashboard's range reads the same blocks again every refresh; one cached fold per
        block replaces two RocksDB scans and a fold per series (perf/RESULTS.md, "Query path").
        """
        fkey = keys.chunk_key(sid, block)
        hit = self._blocks.get(partition, fkey)
        if hit is not None:
            return hit
        ts, vals = segments.fold(self._block_parts(partition, sid, block)[0])
        ts, new = self._stamps.share(ts)
        self._blocks.put(partition, fkey, (ts, vals), block_size((ts, vals)) - (0 if new else ts.nbytes))
        return ts, vals

    def _block_parts(self, partition: int, sid: int, block: int) -> tuple[list[Block], list[bytes]]:
        """A block's chunk (if any), then its segments in cut order, decoded; and the segments' keys."""
        parts: list[Block] = []
        chunk = self._chunks.get(partition, keys.chunk_key(sid, block))
        if chunk is not None:
            parts.append(codecs.decode(chunk))
        lo, hi = keys.segment_range(sid, block, block)
        seg_keys = []
        for seg_key, value in self._segments.scan(partition, lo, hi):
            parts.append(codecs.decode(value))
            seg_keys.append(seg_key)
        return parts, seg_keys

    def _scan_stored(self, partition: int, sid: int, first: int, last: int, start_ms: int,
                     end_ms: int) -> Block:
        """Chunks, then segments, of blocks first..last, clipped: long raw ranges, uncached."""
        # Segments sort by (block, seq): after every chunk they keep "later wins" within each block.
        ranges = [(self._chunks, keys.chunk_range(sid, first, last)),
                  (self._segments, keys.segment_range(sid, first, last))]
        return segments.fold([clip(*codecs.decode(value), start_ms, end_ms)
                              for store, (lo, hi) in ranges for _key, value in store.scan(partition, lo, hi)])

    def _forget(self, partition: int, key: bytes) -> None:
        """A chunk or segment key was written or deleted: its block's fold is stale."""
        self._blocks.drop(partition, key[:keys.CHUNK_KEY_LEN])  # a segment key starts with its block's chunk key

    def read_rollup(self, partition: int, sid: int, tier: str, start_ms: int, end_ms: int) -> rollup.Rollup:
        """Stored windows of one tier whose start lies in [start_ms, end_ms].

        Only sealed blocks have stored rollups: a rollup read covers them, and the
        caller adds the unsealed blocks and the head (``rollup_with_head``).
        """
        window = rollup.TIERS_MS[tier]
        first = (start_ms // self.block_ms) * self.block_ms
        last = (end_ms // self.block_ms) * self.block_ms
        lo, hi = keys.chunk_range(sid, first, last)
        cache = self._rollup_blocks[tier]
        parts = []
        for key, value in self._rollups[tier].scan(partition, lo, hi):
            part = cache.get(partition, key)
            if part is None:
                part = rollup.decode(value, window)
                cache.put(partition, key, part)
            parts.append(part)
        return rollup.concat(parts, window).clip(start_ms, end_ms)

    def rollup_with_head(self, partition: int, sid: int, tier: str, start_ms: int, end_ms: int) -> rollup.Rollup:
        """Rollups of sealed blocks, with unsealed blocks and those the head touches recomputed from raw."""
        window = rollup.TIERS_MS[tier]
        stored = self.read_rollup(partition, sid, tier, start_ms, end_ms)
        st = self.state(partition)
        # Whole windows: a head sample anywhere in a requested window changes that window.
        w_start, w_end = start_ms // window * window, (end_ms // window + 1) * window - 1
        dirty = self._first_unsealed_block(partition, sid, w_start, w_end)
        h_ts = st.head.series(sid, w_start, w_end)[0]
        if st.cutting is not None:
            h_ts = np.concatenate([h_ts, st.cutting.series(sid, w_start, w_end)[0]])
        if h_ts.size:
            head_block = int(h_ts.min() // self.block_ms * self.block_ms)
            dirty = head_block if dirty is None else min(dirty, head_block)
        if dirty is None:
            return stored
        # From the first dirty block on, recompute whole blocks from raw, exactly as a seal would.
        lo = max(w_start, dirty)
        ts, vals = self.read(partition, sid, lo, w_end)
        distribution = st.index.kinds.get(sid) == MetricKind.DISTRIBUTION
        fresh = rollup.compute(ts, vals, window, distribution).clip(max(start_ms, lo), end_ms)
        return rollup.concat([stored.clip(start_ms, lo - 1), fresh], window)

    def _first_unsealed_block(self, partition: int, sid: int, start_ms: int, end_ms: int) -> int | None:
        """Start of the first block in range that still has segments (its stored rollups are missing or stale)."""
        lo, hi = keys.segment_range(sid, start_ms // self.block_ms * self.block_ms,
                                    end_ms // self.block_ms * self.block_ms)
        for key, _ in self._segments.scan(partition, lo, hi):
            return keys.parse_segment_key(key)[1]
        return None

    def select_ids(self, tenant: str, matchers: Sequence[MatcherLike]) -> list[tuple[int, int]]:
        """(partition, sid) of every matching series on this worker."""
        return [(p, sid) for p, _index, sids in self._matching(tenant, matchers) for sid in sids]

    def _matching(self, tenant: str, matchers: Sequence[MatcherLike]) -> Iterator[tuple[int, SeriesIndex, list[int]]]:
        """Per readable partition: its index and the ids of its matching series."""
        for p in self.readable_partitions():
            index = self.state(p).index
            yield p, index, index.select(tenant, matchers)

    def labels_of(self, partition: int, sid: int) -> dict[str, str]:
        return self.state(partition).index.labels_of(sid)

    def label_key(self, partition: int, sid: int) -> tuple[tuple[str, str], ...]:
        """The series' labels as kept: (name, value) pairs in name order, no empty values."""
        return self.state(partition).index.label_key(sid)

    def select(self, tenant: str, matchers: Sequence[MatcherLike], start_ms: int, end_ms: int,
               keep_empty: bool = False) -> list[SeriesData]:
        out = []
        for p, index, sids in self._matching(tenant, matchers):
            for sid, (ts, vals) in zip(sids, self.read_many(p, sids, start_ms, end_ms), strict=True):
                if ts.size or keep_empty:
                    out.append(SeriesData(index.labels_of(sid), ts, vals))
        return out

    def select_range(self, tenant: str, matchers: Sequence[MatcherLike], start_ms: int, end_ms: int) -> RangeVec:
        """``select`` as the engine reads it: the series in label order, their samples in one flat column.

        Every series' blocks are joined by one concatenation for all of them, where a list of
        series joined each series' blocks and the engine then copied them all once more.
        """
        found: list[tuple[Labels, list[Block]]] = []
        clip = _Clip(start_ms, end_ms)
        for p, index, sids in self._matching(tenant, matchers):
            label_key = index.label_key
            found += [(label_key(sid), parts)
                      for sid, parts in zip(sids, self._parts_many(p, sids, start_ms, end_ms, clip), strict=True)
                      if parts]
        found.sort(key=_first)
        every = [part for _, parts in found for part in parts]
        # Each series' end is the running size at its last part.
        sizes = np.fromiter([part[0].size for part in every], np.intp, len(every))
        last_parts = np.fromiter([len(parts) for _, parts in found], np.intp, len(found)).cumsum() - 1
        offsets = np.zeros(len(found) + 1, dtype=np.intp)
        offsets[1:] = sizes.cumsum()[last_parts]
        ts = np.empty(offsets[-1], np.int64)
        vals = np.empty(offsets[-1], np.float64)
        if every:
            np.concatenate([part[0] for part in every], out=ts)
            np.concatenate([part[1] for part in every], out=vals)
        return RangeVec([lb for lb, _ in found], ts, vals, offsets)

    def select_rollup(self, tenant: str, matchers: Sequence[MatcherLike], start_ms: int, end_ms: int,
                      tier: str, agg: str) -> list[SeriesData]:
        """One sample per rollup window.

        ``agg`` "window:<name>" gives ``rollup.window_values`` stamped at the window start
        (the /v1/query tier reads); any other name is PromQL's stand-in sample stamped
        at the window end (metricsflow/promql/downsample.py).
        """
        from metricsflow.promql.downsample import synthesize

        window = rollup.TIERS_MS[tier]
        out = []
        for p, sid in self.select_ids(tenant, matchers):
            if agg.startswith("window:"):
                r = self.rollup_with_head(p, sid, tier, start_ms, end_ms)
                if len(r):
                    out.append(SeriesData(self.labels_of(p, sid), r.starts, rollup.window_values(r, agg[7:])))
                continue
            r = self.rollup_with_head(p, sid, tier, start_ms - window, end_ms)
            ts, vals = synthesize(r, agg)
            keep = (ts >= start_ms) & (ts <= end_ms)
            if keep.any():
                out.append(SeriesData(self.labels_of(p, sid), ts[keep], vals[keep]))
        return out

    def label_names(self, tenant: str, matchers: Sequence[MatcherLike] | None) -> set[str]:
        names: set[str] = set()
        for p in self.readable_partitions():
            index = self.state(p).index
            sids = index.select(tenant, matchers) if matchers else None
            names |= index.label_names(tenant, sids)
        return names

    def label_values(self, tenant: str, name: str, matchers: Sequence[MatcherLike] | None) -> set[str]:
        values: set[str] = set()
        for p in self.readable_partitions():
            index = self.state(p).index
            sids = index.select(tenant, matchers) if matchers else None
            values |= index.label_values(tenant, name, sids)
        return values

    def metric_kinds(self, tenant: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.readable_partitions():
            index = self.state(p).index
            for sid in index.select(tenant, []):
                out.setdefault(index.value(sid, "__name__"), index.kinds.get(sid, 0))
        return out

    def flush_memtables(self) -> int:
        """``PartitionStore.flush_memtables`` of every storage table; how many DBs were flushed."""
        stores = [self._cutmarks, self._chunks, self._segments, self._series, *self._rollups.values()]
        return sum(store.flush_memtables() for store in stores)

    def stats(self) -> dict[str, int]:
        return {
            "partitions": len(self._parts),
            "series": sum(len(st.index) for st in self._parts.values()),
            "head_points": sum(st.head.points for st in self._parts.values()),
            "unsealed_blocks": sum(len(sids) for st in self._parts.values() for sids in st.pending.values()),
            "seal_backlog": sum(self.seal_backlog(p) for p in self._parts),
        }
