"""The worker's Kafka consumer (agents/consumer_fetch.py): the broker holds an empty fetch 250 ms,
not Faust's 1.5 s (a fetch of quiet topics held mf.points back for 1.5 s at a time), and a busy
worker's fetches gather ~30 ms of its consumed bytes (a fetch for every few small messages)."""

from __future__ import annotations

import asyncio

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from agents.consumer_fetch import (
    FETCH_MAX_WAIT_MS,
    FETCH_MIN_BYTES_MAX,
    FetchSizer,
    fetch_min_bytes,
    paused_in_client,
    short_fetch_waits,
    skip_paused_in_livelock_check,
)


def _worker_consumer() -> object:
    async def build() -> object:
        app = faust.App("mf-test-fetch", broker="kafka://127.0.0.1:1")  # never connects: the consumer is not started
        return app.consumer._thread._create_worker_consumer(app.transport)
    return asyncio.run(build())


def test_worker_consumers_wait_briefly_for_an_empty_fetch() -> None:
    short_fetch_waits()
    short_fetch_waits()  # idempotent: one wrapper, not two
    assert _worker_consumer()._fetch_max_wait_ms == FETCH_MAX_WAIT_MS < 1500  # type: ignore[attr-defined]
    wrapped = AIOKafkaConsumerThread._create_worker_consumer
    assert getattr(wrapped, "_mf_fetch_max_wait", False)


def test_fetch_size_is_the_fill_time_of_the_consumed_rate() -> None:
    assert fetch_min_bytes(0.0) == 1  # idle: the broker answers as soon as it has a record
    assert fetch_min_bytes(10.0) == 1
    assert fetch_min_bytes(1_000_000.0) == 30_000  # 1 MB/s: 30 ms of it
    assert fetch_min_bytes(1_000_000.0, fill_s=0.1) == 100_000
    assert fetch_min_bytes(1e12) == FETCH_MIN_BYTES_MAX


def test_sizer_sets_the_fetch_size_of_the_worker_consumers_and_drops_it_when_the_load_stops() -> None:
    short_fetch_waits()
    consumer = _worker_consumer()
    assert consumer._fetch_min_bytes == 1  # type: ignore[attr-defined]  # Faust's (the client's default)
    sizer = FetchSizer()
    sizer.consumed(100 * FETCH_MIN_BYTES_MAX)  # far more than the cap in well under a second
    assert sizer.adjust() == FETCH_MIN_BYTES_MAX
    assert consumer._fetch_min_bytes == FETCH_MIN_BYTES_MAX  # type: ignore[attr-defined]
    assert sizer.adjust() == 1  # nothing consumed since
    assert consumer._fetch_min_bytes == 1  # type: ignore[attr-defined]


def test_a_zero_fill_time_keeps_fetches_answered_at_once() -> None:
    short_fetch_waits()
    consumer = _worker_consumer()
    sizer = FetchSizer(fill_s=0.0)
    sizer.consumed(100 * FETCH_MIN_BYTES_MAX)
    assert sizer.adjust() == 1
    assert consumer._fetch_min_bytes == 1  # type: ignore[attr-defined]


def test_the_livelock_check_skips_partitions_paused_in_the_client() -> None:
    """Faust logs an error every 2.5 s for each assigned partition its client has not fetched for 5 minutes;
    the changelogs the worker pauses on purpose must not count (agents/consumer_fetch.py)."""
    checked: list[str] = []

    class Thread:  # the two attributes Faust's consumer thread has that the check reads
        _consumer: object = None

        def verify_event_path(self, now: float, tp: TopicPartition) -> None:
            checked.append(tp.topic)

    skip_paused_in_livelock_check(Thread)
    skip_paused_in_livelock_check(Thread)  # idempotent: one wrapper, not two

    async def run() -> None:
        thread = Thread()
        own, stream = TopicPartition("t-segments-changelog", 0), TopicPartition("t.points", 0)
        thread.verify_event_path(0.0, own)  # no consumer yet: checked as before
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")  # never started: no connection
        consumer.assign([own, stream])
        thread._consumer = consumer
        consumer.pause(own)
        assert paused_in_client(thread, own) and not paused_in_client(thread, stream)
        thread.verify_event_path(0.0, own)
        thread.verify_event_path(0.0, stream)
        consumer.resume(own)
        thread.verify_event_path(0.0, own)
        await consumer.stop()

    asyncio.run(run())
    assert checked == ["t-segments-changelog", "t.points", "t-segments-changelog"]
