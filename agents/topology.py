"""The stream topology: which agent consumes which topic and what it does per message.

One mf.points message is one columnar batch of thousands of points, so Faust's
per-event cost is paid per batch, never per point (invariant 3).
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust
from faust.types import TP
from prometheus_client import Gauge

from agents import metrics
from agents.consumer_fetch import FetchSizer, consumer_partitions
from metricsflow.errors import InvalidInput
from tables.replay import PointsReplay
from tables.storage import WorkerStorage

log = logging.getLogger(__name__)
LOOP_PROBE_S = 0.1
SLOW_CUT_S = 2.0


def register_agents(app: faust.App, storage: WorkerStorage, replay: PointsReplay, points: faust.TopicT,
                    series: faust.TopicT, cut_check_interval_s: float, fetch_sizer: FetchSizer) -> None:
    @app.agent(series, name="series-indexer")
    async def index_series(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                added = storage.ingest_series(msg.partition, msg.key or b"", event.value)
            except InvalidInput as exc:
                metrics.ERRORS.labels(exc.reason).inc()
                log.warning("skipping mf.series %d@%d: %s", msg.partition, msg.offset, exc)
                continue
            metrics.SERIES_CONSUMED.inc()
            metrics.SERIES_INDEXED.inc(added)

    lag_by_partition: dict[int, Gauge] = {}  # the gauge's child per partition
    last_offsets: dict[TP, int] = {}  # the last mf.points offset consumed, per partition

    @app.agent(points, name="points-store")
    async def store_points(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            fetch_sizer.consumed(len(event.value))
            if not replay.is_ready(msg.partition):
                # Only for a partition no assignment announced: the head must first get the
                # messages below this offset back from mf.points (tables/replay.py).
                await replay.wait(msg.partition)
            try:
                stats = storage.ingest_points(msg.partition, msg.offset, event.value)
            except InvalidInput as exc:
                # Counted and skipped: a foreign producer's garbage must not stop the partition.
                metrics.ERRORS.labels(exc.reason).inc()
                log.warning("skipping mf.points %d@%d: %s", msg.partition, msg.offset, exc)
                continue
            metrics.POINTS_CONSUMED.inc(stats.points)
            metrics.BATCHES_CONSUMED.inc()
            if stats.produced_at_ms:
                metrics.FRESHNESS.observe(max(0.0, time.time() - stats.produced_at_ms / 1000))
            last = last_offsets.get(msg.tp)
            if last != msg.offset - 1:  # None: the partition's first message here
                # Where a partition's stream starts, or goes on after a gap: after an assignment
                # this is the committed offset, or the points between are not this worker's.
                log.info("partition %d: consuming mf.points from offset %d (last consumed here: %s)",
                         msg.partition, msg.offset, last)
            last_offsets[msg.tp] = msg.offset  # the lag is set once a second, not per message
            # Cuts run from the timer only: inline they stalled consumption for the whole cut.

    def set_lags() -> None:
        consumer = app.consumer
        if consumer is None or not last_offsets:
            return
        try:
            assigned = consumer.assignment()
        except Exception:  # the consumer is starting or stopping: the next second will do
            return
        for tp, offset in last_offsets.items():
            try:
                # The Kafka client asserts the partition is assigned: a rebalance may just have moved it.
                highwater = consumer.highwater(tp) if tp in assigned else None
            except AssertionError:
                highwater = None
            if highwater is None:  # not ours now: its lag is another worker's to report (kept if it comes back)
                if lag_by_partition.pop(tp.partition, None) is not None:
                    metrics.LAG.remove(str(tp.partition))
                continue
            lag = lag_by_partition.get(tp.partition)
            if lag is None:
                lag = lag_by_partition[tp.partition] = metrics.LAG.labels(str(tp.partition))
            lag.set(max(0, highwater - offset - 1))

    @app.timer(interval=1.0, name="fetch-sizer")
    async def size_fetches() -> None:
        metrics.FETCH_MIN_BYTES.set(fetch_sizer.adjust())
        set_lags()
        standby = {(tp.topic, tp.partition) for tp in app.tables.recovery.standby_tps}
        for (kind, state), n in consumer_partitions(standby).items():
            metrics.CONSUMER_PARTITIONS.labels(kind, state).set(n)

    @app.task
    async def watch_event_loop() -> None:
        loop = asyncio.get_running_loop()
        while True:
            planned = loop.time() + LOOP_PROBE_S
            await asyncio.sleep(LOOP_PROBE_S)
            metrics.EVENT_LOOP_LAG.observe(max(0.0, loop.time() - planned))

    @app.timer(interval=cut_check_interval_s, name="head-cutter")
    async def cut_idle_heads() -> None:
        # Partitions that stopped receiving data still get their heads cut.
        for p, cut, took in await storage.cut_due(cut_check_interval_s):
            metrics.CUT_SECONDS.observe(took)
            if took >= SLOW_CUT_S:  # consumption shares the loop with it: say what made it long
                log.warning("cut of partition %d took %.1f s: %d segments written in %.1f s, %d blocks sealed"
                            " in %.1f s%s, changelogs flushed in %.1f s", p, took, cut.segments, cut.write_s,
                            cut.sealed, cut.seal_s, " (seal budget spent)" if cut.deferred else "", cut.flush_s)
            metrics.BLOCKS_WRITTEN.inc(cut.blocks)
            metrics.SEGMENTS_WRITTEN.inc(cut.segments)
            metrics.DECIMAL_SEGMENTS_WRITTEN.inc(cut.decimal_segments)
            metrics.BLOCKS_SEALED.inc(cut.sealed)
        for p in storage.loaded_partitions():
            if storage.retention_due(p):
                for tier, n in (await storage.apply_retention(p, int(time.time() * 1000))).items():
                    metrics.BLOCKS_EXPIRED.labels(tier).inc(n)
        # Then the seal backlog, as far as the seal budget allows: cuts of every partition come first.
        sealed, seal_s = 0, 0.0
        for p in storage.loaded_partitions():
            stats = await storage.maybe_seal(p)
            if stats is not None:
                sealed += stats.sealed
                seal_s += stats.seal_s + stats.flush_s
        st = storage.stats()
        if sealed:
            metrics.BLOCKS_SEALED.inc(sealed)
            log.info("%d blocks sealed between cuts in %.1f s, %d waiting", sealed, seal_s, st["seal_backlog"])
        metrics.HEAD_POINTS.set(st["head_points"])
        metrics.SERIES.set(st["series"])
        metrics.UNSEALED_BLOCKS.set(st["unsealed_blocks"])
        metrics.SEAL_BACKLOG.set(st["seal_backlog"])
