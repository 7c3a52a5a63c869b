"""The worker's time-series store over its Faust tables.

Per assigned partition: a WAL table (each mf.points message as received, so an
acknowledged point is in a changelog before its offset is committed), an
in-memory head rebuilt from that WAL, a chunks table (compressed blocks of raw
samples per series and block), rollup tables (1 m and 1 h aggregates per series
and block) and a series table feeding the label index.

Cut protocol (``cut``), per partition:
  1. swap in an empty head and take the old head's sorted, deduplicated view;
  2. for every (series, block) it touches, merge with the stored block, write the
     merged block and the block's rollups, recomputed from the merged samples
     (RocksDB + changelog);
  3. flush the producer, so the blocks are in their changelogs;
  4. delete the WAL entries the old head was built from (tombstones).
A crash anywhere replays the WAL into a head whose merge rewrites the same
blocks and the same rollups, so the protocol is idempotent.

Out-of-order samples older than ``out_of_order_window_ms`` before the newest
sample of their series are refused (counted); younger ones are merged into
their block and its rollups are recomputed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agents import metrics
from metricsflow import codecs, rollup
from metricsflow.config import Settings
from metricsflow.errors import InvalidInput
from metricsflow.model import MetricKind
from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.pointbatch import Run, decode_batch, encode_batches
from metricsflow.promql.source import SeriesData
from metricsflow.samples import clip, merge
from tables import keys
from tables.block_cache import BlockCache
from tables.head import Head
from tables.index import MatcherLike, SeriesIndex
from tables.partition_store import PartitionStore

log = logging.getLogger(__name__)
CUT_YIELD_EVERY = 200  # blocks written between yields to the event loop (~0.1–0.3 s of work)


@dataclass(slots=True)
class PartitionState:
    partition: int
    index: SeriesIndex = field(default_factory=SeriesIndex)
    head: Head = field(default_factory=Head)
    cutting: Head | None = None  # the head being cut: still readable until its blocks are written
    newest: dict[int, int] = field(default_factory=dict)  # series id → newest stored timestamp
    last_retention: float = 0.0
    last_cut: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(slots=True)
class IngestStats:
    points: int
    produced_at_ms: int


def _runs(sids: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> list[Run]:
    if ts.size == 0:
        return []
    cut = np.flatnonzero(sids[1:] != sids[:-1]) + 1
    bounds = np.concatenate([[0], cut, [ts.size]]).tolist()
    return [(int(sids[a]), ts[a:b], vals[a:b]) for a, b in itertools.pairwise(bounds)]


class WorkerStorage:
    def __init__(self, settings: Settings, wal: PartitionStore, chunks: PartitionStore,
                 series: PartitionStore, rollups: dict[str, PartitionStore],
                 active_partitions: Callable[[], set[int]], flush: Callable[[], Awaitable[None]]) -> None:
        self._settings = settings
        self._wal = wal
        self._chunks = chunks
        self._series = series
        self._rollups = rollups  # tier name ("1m", "1h") → store
        self._active = active_partitions
        self._flush = flush
        self.on_data: Callable[[], None] | None = None  # told when points were stored (wakes rule evaluation)
        self._parts: dict[int, PartitionState] = {}
        self._blocks = BlockCache()
        self.block_ms = settings.block_ms

    # -- partition life cycle -------------------------------------------------
    def drop(self, partitions: set[int]) -> None:
        """Forget in-memory state of partitions that moved (rebuilt on next use)."""
        for p in partitions:
            self._parts.pop(p, None)
        self._blocks.clear()

    def drop_all(self) -> None:
        self._parts.clear()
        self._blocks.clear()

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
            self._index_series(st.index, keys.parse_series_key(key), value)
        last_block: dict[int, bytes] = {}
        for key, value in self._chunks.scan(partition):
            last_block[keys.parse_chunk_key(key)[0]] = value  # key order: the last one wins
        for sid, value in last_block.items():
            st.newest[sid] = int(codecs.decode(value)[0][-1])
        for key, value in self._wal.scan(partition):
            try:
                batch = decode_batch(value)
            except InvalidInput:
                continue
            st.head.append(batch.point_series_ids(), batch.timestamps_ms, batch.values, key)
        sids, ts, _ = st.head.view()
        if ts.size:
            last = np.concatenate([np.flatnonzero(sids[1:] != sids[:-1]), [ts.size - 1]])
            for sid, t in zip(sids[last].tolist(), ts[last].tolist(), strict=True):
                st.newest[sid] = max(t, st.newest.get(sid, t))
        log.info("partition %d loaded: %d series, %d head points from %d WAL entries in %.2fs", partition,
                 len(st.index), st.head.points, len(st.head.wal_keys), time.monotonic() - started)
        return st

    # -- writes (called from the agents, inside stream iteration) -------------
    def ingest_points(self, partition: int, offset: int, value: bytes) -> IngestStats:
        batch = decode_batch(value)  # raises InvalidInput before anything is written
        st = self.state(partition)
        sids, ts, vals = batch.point_series_ids(), batch.timestamps_ms, batch.values
        keep = self._in_order_window(st, batch.series_ids, batch.run_lengths, ts)
        if keep is not None:
            refused = int(ts.size - keep.sum())
            metrics.POINTS_REFUSED.labels("out_of_order_too_old").inc(refused)
            sids, ts, vals = sids[keep], ts[keep], vals[keep]
            # The WAL must hold what was stored, or a replay would store what was refused.
            runs = _runs(sids, ts, vals)
            value = encode_batches(runs, max(1, ts.size), batch.produced_at_ms)[0] if runs else b""
        key = keys.wal_key(partition, offset)
        if value:
            self._wal.put(partition, key, value)
            st.head.append(sids, ts, vals, key)
            if self.on_data is not None:
                self.on_data()
        return IngestStats(int(ts.size), batch.produced_at_ms)

    def _in_order_window(self, st: PartitionState, run_sids: np.ndarray, run_lengths: np.ndarray,
                         ts: np.ndarray) -> np.ndarray | None:
        """Mask of points to keep, or None when all are kept; updates the newest timestamps."""
        window = self._settings.out_of_order_window_ms
        ends = np.cumsum(run_lengths, dtype=np.int64)
        starts = ends - run_lengths
        keep = None
        for sid, a, b in zip(run_sids.tolist(), starts.tolist(), ends.tolist(), strict=True):
            if a == b:
                continue
            run_ts = ts[a:b]
            newest = st.newest.get(sid)
            if newest is not None and run_ts.min() < newest - window:
                if keep is None:
                    keep = np.ones(ts.size, dtype=bool)
                keep[a:b] = run_ts >= newest - window
            top = int(run_ts.max())
            if newest is None or top > newest:
                st.newest[sid] = top
        return keep

    def ingest_series(self, partition: int, key: bytes, value: bytes | None) -> None:
        st = self.state(partition)
        sid = keys.parse_series_key(key)
        if value is None:
            return  # deletes of series are retention's business, not the announcer's
        if self._index_series(st.index, sid, value):
            self._series.put(partition, key, value)

    @staticmethod
    def _index_series(index: SeriesIndex, sid: int, value: bytes) -> bool:
        if sid in index.labels:
            return False
        info = pb.SeriesInfo()
        try:
            info.ParseFromString(value)
        except Exception:  # a foreign producer's garbage must not stop the agent
            log.warning("ignoring unparsable SeriesInfo for series %016x", sid)
            return False
        index.add(sid, info.tenant, {lb.name: lb.value for lb in info.labels}, int(info.kind))
        return True

    def loaded_partitions(self) -> list[int]:
        return list(self._parts)

    async def maybe_cut(self, partition: int) -> int:
        """Cut when due (interval passed, or the head is over its size); returns blocks written."""
        st = self.state(partition)
        due = time.monotonic() - st.last_cut >= self._settings.head_cut_interval_s
        if (due and st.head.points) or st.head.points >= self._settings.head_max_points:
            return await self.cut(partition)
        return 0

    async def cut(self, partition: int) -> int:
        """Move the head into chunks (protocol in the module docstring); returns blocks written."""
        st = self.state(partition)
        async with st.lock:
            old, st.head = st.head, Head()
            st.cutting = old  # appends go to the new head; reads still see the old one
            try:
                written = await self._write_blocks(partition, old)  # steps 1-2
                await self._flush()  # blocks must be in the changelog before the WAL loses them
                for key in old.wal_keys:  # step 3
                    self._wal.delete(partition, key)
            except BaseException:
                # Put the points back so nothing is lost from memory; the WAL still has them.
                st.head.append(*old.view(), None)
                st.head.wal_keys[:0] = old.wal_keys
                raise
            finally:
                st.cutting = None  # step 4
                st.last_cut = time.monotonic()
            return written

    async def _write_blocks(self, partition: int, head: Head) -> int:
        index = self.state(partition).index
        sids, ts, vals = head.view()
        if not ts.size:
            return 0
        blocks = (ts // self.block_ms) * self.block_ms
        change = np.flatnonzero((sids[1:] != sids[:-1]) | (blocks[1:] != blocks[:-1])) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [ts.size]])
        for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            if i % CUT_YIELD_EVERY == CUT_YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let the consumer, the heartbeat and queries run between series
            sid, block = int(sids[a]), int(blocks[a])
            key = keys.chunk_key(sid, block)
            new_ts, new_vals = ts[a:b], vals[a:b]
            cached = self._blocks.get(partition, key)
            if cached is None:
                old = self._chunks.get(partition, key)
                cached = codecs.decode(old) if old is not None else None
            if cached is not None:
                new_ts, new_vals = merge(cached[0], cached[1], new_ts, new_vals)
            self._chunks.put(partition, key, codecs.encode(new_ts, new_vals))
            self._blocks.put(partition, key, new_ts, new_vals)
            distribution = index.kinds.get(sid) == MetricKind.DISTRIBUTION
            for tier, store in self._rollups.items():
                r = rollup.compute(new_ts, new_vals, rollup.TIERS_MS[tier], distribution)
                store.put(partition, key, rollup.encode(r))
        return len(starts)

    # -- retention ------------------------------------------------------------
    def expire(self, partition: int, now_ms: int) -> dict[str, int]:
        """Delete (and tombstone) blocks past each tier's retention; returns blocks deleted per tier."""
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
                    self._blocks.drop(partition, k)
            deleted[name] = len(doomed)
        self.state(partition).last_retention = time.monotonic()
        return deleted

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
        """Samples of one series in [start_ms, end_ms] from chunks and head, each once."""
        first = (start_ms // self.block_ms) * self.block_ms
        last = (end_ms // self.block_ms) * self.block_ms
        lo, hi = keys.chunk_range(sid, first, last)
        parts_ts, parts_vals = [], []
        for key, value in self._chunks.scan(partition, lo, hi):
            block = self._blocks.get(partition, key)
            if block is None:
                block = codecs.decode(value)
                self._blocks.put(partition, key, *block)
            c_ts, c_vals = block
            c_ts, c_vals = clip(c_ts, c_vals, start_ms, end_ms)
            parts_ts.append(c_ts)
            parts_vals.append(c_vals)
        ts = np.concatenate(parts_ts) if parts_ts else np.empty(0, np.int64)
        vals = np.concatenate(parts_vals) if parts_vals else np.empty(0, np.float64)
        st = self.state(partition)
        if st.cutting is not None:
            c_ts, c_vals = st.cutting.series(sid, start_ms, end_ms)
            ts, vals = merge(ts, vals, c_ts, c_vals)
        h_ts, h_vals = st.head.series(sid, start_ms, end_ms)
        return merge(ts, vals, h_ts, h_vals)

    def read_rollup(self, partition: int, sid: int, tier: str, start_ms: int, end_ms: int) -> rollup.Rollup:
        """Stored windows of one tier whose start lies in [start_ms, end_ms].

        The head is not rolled up yet: a rollup read covers what was cut, and the
        caller adds the head's samples (``rollup_with_head``) for the newest minutes.
        """
        window = rollup.TIERS_MS[tier]
        first = (start_ms // self.block_ms) * self.block_ms
        last = (end_ms // self.block_ms) * self.block_ms
        lo, hi = keys.chunk_range(sid, first, last)
        parts = [rollup.decode(v, window) for _k, v in self._rollups[tier].scan(partition, lo, hi)]
        return rollup.concat(parts, window).clip(start_ms, end_ms)

    def rollup_with_head(self, partition: int, sid: int, tier: str, start_ms: int, end_ms: int) -> rollup.Rollup:
        """Rollups of stored blocks, with the blocks that the head touches recomputed from raw samples."""
        window = rollup.TIERS_MS[tier]
        stored = self.read_rollup(partition, sid, tier, start_ms, end_ms)
        st = self.state(partition)
        # Whole windows: a head sample anywhere in a requested window changes that window.
        w_start, w_end = start_ms // window * window, (end_ms // window + 1) * window - 1
        h_ts = st.head.series(sid, w_start, w_end)[0]
        if st.cutting is not None:
            h_ts = np.concatenate([h_ts, st.cutting.series(sid, w_start, w_end)[0]])
        if h_ts.size == 0:
            return stored
        # Blocks the head touches: recompute them whole from raw (chunks + head), exactly as a cut would.
        lo = max(w_start, int(h_ts.min() // self.block_ms * self.block_ms))
        ts, vals = self.read(partition, sid, lo, w_end)
        distribution = st.index.kinds.get(sid) == MetricKind.DISTRIBUTION
        fresh = rollup.compute(ts, vals, window, distribution).clip(max(start_ms, lo), end_ms)
        return rollup.concat([stored.clip(start_ms, lo - 1), fresh], window)

    def select_ids(self, tenant: str, matchers: Sequence[MatcherLike]) -> list[tuple[int, int]]:
        """(partition, sid) of every matching series on this worker."""
        out = []
        for p in self.readable_partitions():
            out.extend((p, sid) for sid in self.state(p).index.select(tenant, matchers))
        return out

    def labels_of(self, partition: int, sid: int) -> dict[str, str]:
        return self.state(partition).index.labels[sid]

    def select(self, tenant: str, matchers: Sequence[MatcherLike], start_ms: int, end_ms: int,
               keep_empty: bool = False) -> list[SeriesData]:
        out = []
        for p, sid in self.select_ids(tenant, matchers):
            ts, vals = self.read(p, sid, start_ms, end_ms)
            if ts.size or keep_empty:
                out.append(SeriesData(dict(self.labels_of(p, sid)), ts, vals))
        return out

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
                    out.append(SeriesData(dict(self.labels_of(p, sid)), r.starts, rollup.window_values(r, agg[7:])))
                continue
            r = self.rollup_with_head(p, sid, tier, start_ms - window, end_ms)
            ts, vals = synthesize(r, agg)
            keep = (ts >= start_ms) & (ts <= end_ms)
            if keep.any():
                out.append(SeriesData(dict(self.labels_of(p, sid)), ts[keep], vals[keep]))
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
                out.setdefault(index.labels[sid].get("__name__", ""), index.kinds.get(sid, 0))
        return out

    def stats(self) -> dict[str, int]:
        return {
            "partitions": len(self._parts),
            "series": sum(len(st.index) for st in self._parts.values()),
            "head_points": sum(st.head.points for st in self._parts.values()),
        }
