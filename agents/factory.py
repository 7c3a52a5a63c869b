"""The Faust application of a metricsflow worker.

``create_app(settings)`` builds everything explicitly from one Settings object;
``agents.app`` builds one from MF_* variables for ``faust -A agents.app worker``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.producer import ProducerBuffer

from agents.alerting import RuleRunner, register_rule_partials_agent
from agents.consumer_fetch import FetchSizer, short_fetch_waits, stop_fetching_own_changelogs
from agents.end_offsets import EndOffsets
from agents.event_delivery import deliver_without_tasks
from agents.ingest import register_ingest_agent
from agents.quiet_monitor import QuietMonitor
from agents.topology import register_agents
from metricsflow import kafka_zstd
from metricsflow.config import Settings
from metricsflow.heap import freeze_long_lived
from tables.partition_store import PartitionStore
from tables.replay import PointsReplay, check_points_retention
from tables.rocks_options import skip_wal, table_options, use_zstd
from tables.storage import StorageTables, WorkerStorage
from web.cluster import Cluster
from web.server import WebServer

CHANGELOG_BUFFER_MESSAGES = 200_000
CHANGELOG_BATCH_BYTES = 1024 * 1024
COMMIT_EVERY_NEVER = 1 << 62
SLOW_FLUSH_S = 1.0
log = logging.getLogger(__name__)
RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


def _raw_table(app: faust.App, name: str, partitions: int) -> faust.Table:
    # bytes key/value types make Faust use the "raw" serializer, also when it applies changelogs in recovery.
    return app.Table(name, partitions=partitions, key_type=bytes, value_type=bytes, options=table_options(name))


async def flush_changelogs(producer: Any, batched: Sequence[PartitionStore] = ()) -> None:
    """Every changelog record sent so far, and those ``batched`` stores hold, is acknowledged by Kafka.

    Faust's buffer hands its records to the Kafka client one per event-loop turn, from a
    task of its own: behind a busy points agent a cut's ~1,250 segments took 1-5 s to leave
    it (perf/RESULTS.md, "Cut flushes"). Here they are handed over in one loop, in queue
    order. Faust's own ``flush()`` also gives up on its buffer after 0.1 s without progress,
    and the cut moves its offset only after this returns: the buffer is empty before the
    Kafka client is flushed. The held records go after Faust's buffer (a batch never overtakes an
    earlier record of its partition), and a batch Kafka refused fails the flush, so no cut offset
    moves past records that did not land.
    """
    started = time.perf_counter()
    buffer = producer.buffer
    queued = buffer.size
    while True:
        try:
            record = buffer.pending.get_nowait()
        except asyncio.QueueEmpty:
            break
        await buffer._send_pending(record)
    buffer.message_sent.set()
    futures = [future for store in batched for future in await store.send_batched()]
    handed = time.perf_counter()
    await producer.flush()
    refused = [r for r in await asyncio.gather(*futures, return_exceptions=True) if isinstance(r, BaseException)]
    if refused:
        raise refused[0]
    took = time.perf_counter() - started
    if took >= SLOW_FLUSH_S:
        log.warning("changelog flush took %.1f s: %d records queued, %.1f s until handed to the Kafka client",
                    took, queued, handed - started)


def create_app(settings: Settings) -> faust.App:
    check_points_retention(settings)  # the heads are replayed from mf.points: its records must outlive a cut
    use_zstd()  # before Faust opens any table
    kafka_zstd.use_level(settings.kafka_zstd_level)  # the changelogs' batches
    skip_wal()
    short_fetch_waits()  # before Faust creates its consumer
    deliver_without_tasks(FaustConsumer)
    datadir = Path(settings.data_dir) / settings.worker_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=";".join(f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")),
        store="rocksdb://",
        datadir=str(datadir),
        # Our own aiohttp server serves the API; Faust's is off but the URL is still
        # shared with the group so every worker knows who owns which partition.
        web_enabled=False,
        canonical_url=settings.worker_url,
        table_standby_replicas=settings.standby_replicas,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_compression_type=None if settings.kafka_compression == "none" else settings.kafka_compression,
        producer_max_request_size=8 * 1024 * 1024,
        # A cut sends ~1,250 segments per partition at once; at Faust's 16 KB batches the Kafka
        # client took 0.3-0.45 s to take 1,226 of them, 35 ms at 1 MB (perf/RESULTS.md, "Cut flushes").
        producer_max_batch_size=CHANGELOG_BATCH_BYTES,
        consumer_max_fetch_size=8 * 1024 * 1024,
        broker_commit_interval=1.0,
        # Faust's fetch loop itself commits after every broker_commit_every (10,000) messages, and
        # a commit awaits the producer's flush: no stream gets a message until the changelogs
        # queued by then (a cut's, seconds of them before flush_changelogs) are acknowledged.
        # The 1 s timer commits in a task of its own; durability rests on the cut offsets.
        broker_commit_every=COMMIT_EVERY_NEVER,
        # kill -9 of a worker is noticed after the session timeout; 60 s (Faust's default) is too slow a failover.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        table_cleanup_interval=60.0,
        Monitor=QuietMonitor,  # made by Faust with its loop and beacon, as its own would be
    )
    # Faust's conductor stops feeding every stream while its producer buffer holds more than
    # ProducerBuffer.max_messages (100) unsent records, and a cut sends one changelog record per
    # segment (~1,250 per partition at 10k series) at once: consumption stalled for each cut
    # (ingest delay p99 up to 30 s in perf/bench_e2e.py's steady phase). The cut awaits the flush
    # of what it sent, so the buffer stays bounded by one cut's records.
    ProducerBuffer.max_messages = CHANGELOG_BUFFER_MESSAGES
    points = app.topic(settings.topic("points"), partitions=settings.partitions, **RAW)
    series = app.topic(settings.topic("series"), partitions=settings.partitions, **RAW)
    # Table changelogs are the "segment topics": compacted, one partition per source partition.
    # No copy of mf.points: it is the log of the heads, replayed from each partition's cut offset.
    cutmarks = _raw_table(app, "cutmarks", settings.partitions)
    chunks = _raw_table(app, "chunks", settings.partitions)
    segments = _raw_table(app, "segments", settings.partitions)
    series_table = _raw_table(app, "series", settings.partitions)
    # A cut and a seal write a record per series to these: their changelog records go in batches.
    rollups = {tier: PartitionStore(_raw_table(app, f"rollup_{tier}", settings.partitions), batched=True)
               for tier in ("1m", "1h")}
    chunk_store, segment_store = PartitionStore(chunks, batched=True), PartitionStore(segments, batched=True)
    batched = [segment_store, chunk_store, *rollups.values()]
    points_topic = settings.topic("points")

    def active_partitions() -> set[int]:
        if not app.assignor:
            return set()
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == points_topic}

    async def flush() -> None:
        await flush_changelogs(app.producer, batched)

    tables = StorageTables(cutmarks=PartitionStore(cutmarks), chunks=chunk_store, segments=segment_store,
                           series=PartitionStore(series_table), rollups=rollups)
    storage = WorkerStorage(settings, tables, active_partitions, flush)

    async def recovered() -> None:
        await app.tables.recovery.completed.wait()

    replay = PointsReplay(settings, storage, app.conf.id, recovered, app.crash)
    register_agents(app, storage, replay, points, series,
                    cut_check_interval_s=min(5.0, max(0.25, settings.head_cut_interval_s / 4)),
                    fetch_sizer=FetchSizer(settings.fetch_fill_ms / 1000))
    register_ingest_agent(app, settings, app.topic(settings.topic("ingest"), partitions=settings.partitions, **RAW))

    @app.on_partitions_revoked.connect
    async def on_revoked(_app: faust.App, revoked: set, **_: object) -> None:  # type: ignore[type-arg]
        moved = {tp.partition for tp in revoked if tp.topic == points_topic}
        replay.stop(moved)
        storage.drop(moved)

    @app.on_rebalance_complete.connect
    async def on_rebalanced(_app: faust.App, **_: object) -> None:
        # Restored tables may hold segments and series this worker has not seen in memory;
        # every head is rebuilt from mf.points before Faust resumes fetching the partitions.
        replay.stop()
        storage.drop_all()
        try:
            paused = await stop_fetching_own_changelogs(app)
            log.info("stopped fetching %d changelog partitions of the tables recovered here", paused)
        except Exception as exc:  # a saving, never a reason to fail the rebalance
            log.warning("could not pause the changelogs of the tables recovered here: %r", exc)
        await replay.run(active_partitions())
        freeze_long_lived()  # the restored partitions' index and heads live until the next rebalance

    def ready() -> bool:
        recovery = app.tables.recovery
        return bool(recovery.completed.is_set() and not recovery.in_recovery and active_partitions()
                    and replay.idle())

    def peers() -> set[str]:
        # Every worker that owns table partitions, as announced in the group's assignment.
        try:
            return {str(url) for url in app.router.tables_metadata()}
        except Exception:  # no assignment yet
            return set()

    cluster = Cluster(storage, settings.worker_url, peers)
    # Rules: partial results per partition meet in the group owner's rule_partials table (agents/alerting.py).
    def rule_partitions() -> set[int]:
        # Until the tables are restored and the heads replayed, a partial would undercount and an
        # owner would start its alerts afresh (new activeAt) over the state it has not restored yet.
        # ``app.rebalancing`` covers the gap Faust leaves between a new assignment and the start
        # of its recovery, where ``recovery.completed`` is still set from the previous one.
        return active_partitions() if ready() and not app.rebalancing else set()

    points_end_offsets = EndOffsets(settings.kafka_bootstrap, points_topic)
    rules = RuleRunner(settings, PartitionStore(_raw_table(app, "alerts", settings.partitions)),
                       PartitionStore(_raw_table(app, "rule_partials", settings.partitions)), storage, cluster,
                       rule_partitions, points_end_offsets)
    register_rule_partials_agent(app, app.topic(settings.topic("rule_partials"), partitions=settings.partitions,
                                                **RAW), rules)
    storage.on_data = rules.notify_data_arrived

    @app.task
    async def evaluate_rules() -> None:
        await rules.run()

    @app.on_before_shutdown.connect
    async def close_rules(_app: faust.App, **_: object) -> None:
        await rules.close()
        await points_end_offsets.close()

    web = WebServer(storage, ready, cluster, settings.web_host, settings.web_port, rules=rules)
    # mode starts and stops dependencies with the app, so the API lives as long as the worker.
    app.add_dependency(web)
    app.metricsflow_storage = storage  # type: ignore[attr-defined]
    return app
