"""The worker's Kafka consumer lets the broker hold an empty fetch 250 ms, not Faust's 1.5 s
(agents/consumer_fetch.py): a fetch of quiet topics held mf.points back for 1.5 s at a time."""

from __future__ import annotations

import asyncio

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from agents.consumer_fetch import FETCH_MAX_WAIT_MS, short_fetch_waits


def _worker_consumer_wait_ms() -> int:
    async def build() -> int:
        app = faust.App("mf-test-fetch", broker="kafka://127.0.0.1:1")  # never connects: the consumer is not started
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        return consumer._fetch_max_wait_ms
    return asyncio.run(build())


def test_worker_consumers_wait_briefly_for_an_empty_fetch() -> None:
    short_fetch_waits()
    short_fetch_waits()  # idempotent: one wrapper, not two
    assert _worker_consumer_wait_ms() == FETCH_MAX_WAIT_MS < 1500
    wrapped = AIOKafkaConsumerThread._create_worker_consumer
    assert getattr(wrapped, "_mf_fetch_max_wait", False)
