"""A started consumer of the real broker takes the fetch size FetchSizer sets, and still gets a
record that alone is far below that size (the broker answers after the fetch's max wait)."""

from __future__ import annotations

import asyncio

import faust
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from agents.consumer_fetch import FetchSizer, short_fetch_waits
from tests.support import free_port

pytestmark = pytest.mark.integration


async def test_a_sized_fetch_still_brings_a_lone_record(kafka_broker: str) -> None:
    short_fetch_waits()
    topic = f"mf-test-fetch-{free_port()}"
    app = faust.App(f"mf-test-fetch-{free_port()}", broker=f"kafka://{kafka_broker}")
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all")
    await producer.start()
    await consumer.start()
    try:
        await producer.send_and_wait(topic, b"warm-up", partition=0)  # creates the topic
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 1)
        fetcher = consumer._fetcher
        assert fetcher._fetch_min_bytes == 1  # the client's own name for the setting, read per fetch
        sizer = FetchSizer()
        sizer.consumed(10 << 20)
        size = sizer.adjust()
        assert size > 1000 and fetcher._fetch_min_bytes == size
        await asyncio.sleep(0.3)  # a fetch built before the change may be in flight
        await producer.send_and_wait(topic, b"lone", partition=0)
        # Far below the fetch size: the broker answers at the fetch's max wait (250 ms), not never.
        got = await asyncio.wait_for(consumer.getone(tp), 10)
        assert got.value == b"lone"
    finally:
        await consumer.stop()
        await producer.stop()
