"""A stopped worker comes back with all its data: from local RocksDB, or from the changelogs alone, with
the points no cut has made durable yet replayed from mf.points."""

from __future__ import annotations

import asyncio
import re
import shutil
import time

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rocksdict import AccessType, Rdict

from tests.support import Stack, http, metric_value, query_raw, wait_for

pytestmark = pytest.mark.integration
N_SERIES, N_POINTS = 50, 60


def write_points(stack: Stack, metric: str, base_ms: int) -> None:
    points = [{"metric_name": metric, "timestamp": base_ms + k * 1000, "value": float(i * 1000 + k),
               "tags": {"s": str(i)}} for i in range(N_SERIES) for k in range(N_POINTS)]
    status, _, body = http("POST", stack.collector_url + "/v1/metrics", orjson.dumps({"metrics": points}),
                           {"Content-Type": "application/json"})
    assert status == 202, body


def count(worker: str, metric: str, base_ms: int) -> int:
    result = query_raw(worker, metric, base_ms / 1000 - 1, base_ms / 1000 + N_POINTS + 1)
    return sum(len(r["values"]) for r in result)


def assert_all(worker: str, metric: str, base_ms: int) -> None:
    result = query_raw(worker, metric, base_ms / 1000 - 1, base_ms / 1000 + N_POINTS + 1)
    assert len(result) == N_SERIES
    for r in result:
        i = int(r["metric"]["s"])
        np.testing.assert_array_equal([float(v) for _, v in r["values"]], i * 1000 + np.arange(N_POINTS))


def test_graceful_restart_and_recovery_from_changelog(stack: Stack) -> None:
    stack.start_collector()
    # A long cut interval keeps the first batch in the head only (mf.points holds it); the restart cuts it.
    worker_proc, worker = stack.start_worker("w1", MF_HEAD_CUT_INTERVAL_S="3600")
    base = int(time.time() * 1000) - 600_000
    write_points(stack, "restart_chunked", base)
    wait_for(lambda: count(worker, "restart_chunked", base) == N_SERIES * N_POINTS, 60, "first batch visible")
    worker_proc.stop()  # graceful: SIGTERM

    worker_proc, worker = stack.start_worker("w1", MF_HEAD_CUT_INTERVAL_S="0.5")
    assert_all(worker, "restart_chunked", base)  # replayed from mf.points, then cut
    write_points(stack, "restart_head", base)
    wait_for(lambda: count(worker, "restart_head", base) == N_SERIES * N_POINTS, 60, "second batch visible")
    # The cut's segments went to the changelog in batches; Faust's persisted offsets must still name
    # each partition's last record, or a restart would re-read the changelog from its start. The
    # tables keep no write-ahead log: read beside the worker, only what it flushed is there.
    wait_for(lambda: force_flush(worker) and offsets_persisted(stack, "segments"), 30,
             "segment changelog offsets persisted")
    worker_proc.stop()

    # Wipe the local state: everything must come back from the Kafka changelogs.
    shutil.rmtree(stack.workdir / "data")
    worker_proc, worker = stack.start_worker("w1")
    assert_all(worker, "restart_chunked", base)
    assert_all(worker, "restart_head", base)
    # Recovered from the changelogs, which the consumer then stops fetching (agents/consumer_fetch.py).
    def changelogs(state: str) -> float | None:
        return metric_value(worker, "mf_worker_consumer_partitions", kind="changelog", state=state)

    wait_for(lambda: changelogs("fetched") == 0 and (changelogs("paused") or 0) > 0, 10,
             "the recovered changelogs paused in the Kafka client")


def force_flush(worker: str) -> bool:
    """POST /internal/force_flush: the worker's storage tables written to disk."""
    status, _, body = http("POST", worker + "/internal/force_flush")
    assert status == 200, body
    assert orjson.loads(body)["databases_flushed"] > 0, body
    return True


def offsets_persisted(stack: Stack, table: str) -> bool:
    """The table's changelog has records, and every partition's persisted offset is its last one."""
    ends = changelog_ends(stack, table)
    return any(ends.values()) and persisted_offsets(stack, table) == {p: end - 1 for p, end in ends.items() if end}


def persisted_offsets(stack: Stack, table: str) -> dict[int, int]:
    """Per partition of a worker's table (opened read-only beside it): the changelog offset Faust
    recorded as stored locally."""
    out = {}
    for db_dir in (stack.workdir / "data").rglob(f"{table}-*.db"):
        db = Rdict(str(db_dir), access_type=AccessType.read_only())
        try:
            offset = db.get(b"__faust\0offset__")
        finally:
            db.close()
        if offset is not None:
            out[int(db_dir.name[len(table) + 1:-3])] = int(offset)
    return out


def changelog_ends(stack: Stack, table: str) -> dict[int, int]:
    async def ends() -> dict[int, int]:
        topic = stack.changelog_topic(table)
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(stack.partitions)]
            return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
        finally:
            await consumer.stop()
    return asyncio.run(ends())


def committed_everything(stack: Stack) -> bool:
    """Faust committed every mf.points offset: a restart re-reads nothing from the group's position."""
    async def check() -> bool:
        topic = stack.prefix + "points"
        tps = [TopicPartition(topic, p) for p in range(stack.partitions)]
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=None, enable_auto_commit=False)
        await admin.start()
        await consumer.start()
        try:
            committed = await admin.list_consumer_group_offsets(stack.app_id, partitions=tps)
            ends = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
            await admin.close()
        return all(tp in committed and committed[tp].offset == ends[tp] for tp in tps)
    return asyncio.run(check())


def test_kill9_after_commit_before_cut_replays_mf_points(stack: Stack) -> None:
    """Points whose offsets Faust committed but that no cut has written come back from mf.points, once."""
    stack.start_collector()
    worker_proc, worker = stack.start_worker("w1", MF_HEAD_CUT_INTERVAL_S="3600")
    base = int(time.time() * 1000) - 600_000
    write_points(stack, "uncut", base)
    wait_for(lambda: count(worker, "uncut", base) == N_SERIES * N_POINTS, 60, "points in the head")
    wait_for(lambda: committed_everything(stack), 30, "Faust committed every consumed offset")
    worker_proc.kill9()  # no cut ran: the points are only in mf.points

    worker_proc, worker = stack.start_worker("w1", MF_HEAD_CUT_INTERVAL_S="3600")
    assert_all(worker, "uncut", base)  # exactly once: every value in place, no extra sample
    assert re.search(r"replayed \d+ messages, [1-9]\d* points", worker_proc.tail(400)), "a replay ran"
    assert count(worker, "uncut", base) == N_SERIES * N_POINTS


def test_a_worker_refuses_an_mf_points_topic_that_forgets_the_head(stack: Stack) -> None:
    """The topic keeps the retention it was created with; the worker checks the topic, not only its setting."""
    stack.start_collector(MF_POINTS_RETENTION_MS="60000")  # creates the topics with a 60 s retention

    async def points_topic_exists() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
        await admin.start()
        try:
            return stack.prefix + "points" in await admin.list_topics()
        finally:
            await admin.close()
    wait_for(lambda: asyncio.run(points_topic_exists()), 30, "mf.points created by the collector")
    worker_proc, _ = stack.start_worker("w1", wait_ready=False, MF_HEAD_CUT_INTERVAL_S="300")
    wait_for(lambda: not worker_proc.alive(), 90, f"the worker stops\n{worker_proc.tail()}")
    assert "retention.ms=60000 is below" in worker_proc.tail(400)
