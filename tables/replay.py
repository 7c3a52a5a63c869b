"""Rebuild the heads of newly assigned partitions from mf.points itself.

mf.points is the log of the head (Kafka Streams' "source topic as changelog"): a
worker keeps no copy of the messages it consumed. Per partition the cut records
a durable *cut offset*, the first mf.points offset not yet made durable in
segments or chunks (``WorkerStorage.cut_offset``). After an assignment, once
Faust has restored the tables, every assigned partition is replayed from its cut
offset up to the group's committed offset — where Faust resumes — with a
group-less consumer (assign + seek), through the same ``ingest_points`` as the
agent. The replay runs inside Faust's on_rebalance_complete signal, before Faust
seeks and resumes the stream partitions, so the head sees the messages in
offset order, exactly as if the worker had never stopped. The points agent still
checks a per-partition gate (``wait``) before it ingests a message, for a
partition no assignment announced.

A replay is idempotent: the head keeps the latest value of a repeated (series,
timestamp), and the next cut writes segments keyed by the head's first offset,
the same keys an interrupted cut of the same messages wrote.

Constraint: the records between the cut offset and the committed offset must
still be in mf.points, so its retention must exceed a cut interval plus the
longest time a partition may stay unowned (``check_points_retention``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from agents import metrics
from metricsflow.config import Settings
from metricsflow.errors import InvalidInput, MetricsflowError
from tables.storage import WorkerStorage

log = logging.getLogger(__name__)
# mf.points must keep at least this many cut intervals: one for the head, the rest for
# a worker group that is down or rebalancing while the head is not cut (docs/capacity.md).
MIN_RETENTION_CUT_INTERVALS = 12
_PROGRESS_EVERY_S = 5.0


class RetentionTooShort(MetricsflowError, ValueError):
    """Operator action: raise MF_POINTS_RETENTION_MS (and the topic's retention.ms) or lower the cut interval."""


def check_points_retention(settings: Settings, retention_ms: int | None = None, source: str = "") -> None:
    """Refuse to run when mf.points may delete records no cut has made durable yet.

    ``retention_ms`` defaults to the setting; the replay passes the topic's own retention.ms,
    since an existing topic keeps its configuration (metricsflow/topics.py).
    """
    if retention_ms is None:
        retention_ms, source = settings.points_retention_ms, "points_retention_ms"
    needed_ms = MIN_RETENTION_CUT_INTERVALS * settings.head_cut_interval_s * 1000
    if 0 <= retention_ms < needed_ms:  # Kafka's -1: no time limit
        raise RetentionTooShort(
            f"cannot start: {source}={retention_ms} is below {MIN_RETENTION_CUT_INTERVALS} × "
            f"head_cut_interval_s ({needed_ms:.0f} ms); the head is replayed from {settings.topic('points')} "
            f"after a restart, so its records must outlive the cut")


async def topic_retention_ms(admin: AIOKafkaAdminClient, topic: str) -> int | None:
    """The topic's retention.ms (None if the broker did not say)."""
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": None})
    for response in await admin.describe_configs([resource]):
        for res in response.resources:
            for entry in res[4]:  # (name, value, read_only, is_default, is_sensitive[, synonyms])
                if entry[0] == "retention.ms" and entry[1] is not None:
                    return int(entry[1])
    return None


class PointsReplay:
    """Per-partition replay of mf.points into the head, and the gate the points agent waits on."""

    def __init__(self, settings: Settings, storage: WorkerStorage, group_id: str,
                 recovered: Callable[[], Awaitable[None]], crash: Callable[[BaseException], Awaitable[None]]) -> None:
        self._settings = settings
        self._storage = storage
        self._group_id = group_id
        self._recovered = recovered  # returns once Faust has restored the tables
        self._crash = crash  # stops the worker: it must not run with a log that forgets the head
        self._topic = settings.topic("points")
        self._ready: dict[int, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def is_ready(self, partition: int) -> bool:
        event = self._ready.get(partition)
        return event is not None and event.is_set()

    def idle(self) -> bool:
        return all(e.is_set() for e in self._ready.values())

    async def wait(self, partition: int) -> None:
        """Return once ``partition``'s head holds everything below Faust's resume offset."""
        event = self._ready.get(partition)
        if event is None:  # not announced by an assignment: replay it now rather than ingest out of order
            event = self._ready[partition] = asyncio.Event()
            self._storage.drop({partition})
            self._spawn([partition])
        await event.wait()

    async def run(self, partitions: set[int]) -> None:
        """Replay ``partitions`` now, before Faust resumes fetching them (called from on_rebalance_complete).

        Faust sends that signal once the tables are restored and before it seeks and resumes the
        stream partitions, so the points agent never has to wait. Holding the agent instead, with
        the fetcher running, lost messages: Faust delivered the committed offset and then jumped
        ahead (seen in tests/integration/test_durability.py, two workers).
        """
        self.start(partitions, wait_for_recovery=False)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def start(self, partitions: set[int], wait_for_recovery: bool = True) -> None:
        """Replay ``partitions`` (the assignment); the storage has dropped their in-memory state."""
        self.stop()
        for p in list(self._ready):
            if p not in partitions:
                self._ready.pop(p).set()  # release anything still waiting on a partition that moved
        for p in partitions:
            self._ready.setdefault(p, asyncio.Event()).clear()
        if partitions:
            self._spawn(sorted(partitions), wait_for_recovery)

    def _spawn(self, partitions: list[int], wait_for_recovery: bool = True) -> None:
        task = asyncio.ensure_future(self._run(partitions, wait_for_recovery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self, partitions: set[int] | None = None) -> None:
        """Cancel running replays (on revocation); their partitions are replayed again by the next ``start``."""
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        for p in partitions or ():
            event = self._ready.pop(p, None)
            if event is not None:
                event.set()

    async def _run(self, partitions: list[int], wait_for_recovery: bool) -> None:
        if wait_for_recovery:
            await self._recovered()
        delay_s = 1.0
        while True:
            todo = [p for p in partitions if not self._ready[p].is_set()]
            try:
                await self._replay_all(todo)
                return
            except RetentionTooShort as exc:
                log.error("%s", exc)
                metrics.ERRORS.labels("points_retention_too_short").inc()
                await self._crash(exc)
                return
            except Exception:
                # The agent stays held on these partitions meanwhile: nothing is ingested out of order.
                log.exception("replay of %s partitions %s failed; retrying in %.0fs", self._topic, todo, delay_s)
                metrics.ERRORS.labels("replay_failed").inc()
                self._storage.drop(set(todo))  # a partial head is rebuilt from its cut offset again
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 30.0)

    async def _replay_all(self, partitions: list[int]) -> None:
        ends = await self._committed(partitions)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
        await consumer.start()
        try:
            for p in partitions:
                await self._replay(consumer, p, ends.get(p))
                self._ready[p].set()
        finally:
            await consumer.stop()

    async def _committed(self, partitions: list[int]) -> dict[int, int | None]:
        """The group's committed offsets: where Faust resumes each partition (None: from the beginning)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self._settings.kafka_bootstrap)
        await admin.start()
        try:
            retention_ms = await topic_retention_ms(admin, self._topic)
            if retention_ms is not None:
                check_points_retention(self._settings, retention_ms, f"{self._topic} retention.ms")
            tps = [TopicPartition(self._topic, p) for p in partitions]
            got = await admin.list_consumer_group_offsets(self._group_id, partitions=tps)
        finally:
            await admin.close()
        return {tp.partition: (meta.offset if meta is not None and meta.offset >= 0 else None)
                for tp, meta in got.items()}

    async def _replay(self, consumer: AIOKafkaConsumer, partition: int, end: int | None) -> None:
        started = time.monotonic()
        start = self._storage.cut_offset(partition)
        if end is None or (start is not None and start >= end):
            log.info("partition %d: nothing to replay (cut offset %s, committed %s)", partition, start, end)
            return
        tp = TopicPartition(self._topic, partition)
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        if start is None:
            start = first
        elif start < first:
            # Retention deleted records that no cut had made durable: they are lost (docs/capacity.md).
            log.error("partition %d: cut offset %d is below the first retained offset %d of %s; "
                      "%d messages are gone", partition, start, first, self._topic, first - start)
            metrics.ERRORS.labels("replay_records_expired").inc(first - start)
            start = first
        consumer.seek(tp, start)
        messages = points = 0
        last_report = started
        log.info("partition %d: replaying %s offsets %d..%d", partition, self._topic, start, end - 1)
        position = start
        while position < end:
            batches = await consumer.getmany(tp, timeout_ms=1000, max_records=500)
            for record in batches.get(tp, []):
                if record.offset >= end:
                    position = end
                    break
                position = record.offset + 1
                messages += 1
                if record.value is None:
                    continue
                try:
                    points += self._storage.ingest_points(partition, record.offset, record.value).points
                except InvalidInput:
                    continue  # counted and logged when the agent first skipped it
            if not batches:
                position = max(position, await consumer.position(tp))
            now = time.monotonic()
            if now - last_report >= _PROGRESS_EVERY_S:
                log.info("partition %d: replayed %d/%d messages, %d points", partition, position - start,
                         end - start, points)
                last_report = now
        elapsed = time.monotonic() - started
        metrics.REPLAYED_POINTS.inc(points)
        metrics.REPLAY_SECONDS.observe(elapsed)
        log.info("partition %d: replayed %d messages, %d points from %s in %.2fs", partition, messages, points,
                 self._topic, elapsed)
