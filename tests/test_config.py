"""Settings from MF_* variables: defaults, conversion, refusal of unknown values."""

from __future__ import annotations

import asyncio

import pytest

from metricsflow.config import load_settings
from metricsflow.worker_main import new_event_loop


def test_kafka_compression_default_and_choice() -> None:
    assert load_settings(env={}).kafka_compression == "zstd"
    assert load_settings(env={"MF_KAFKA_COMPRESSION": "lz4"}).kafka_compression == "lz4"
    assert load_settings(env={"MF_KAFKA_COMPRESSION": "none"}).kafka_compression == "none"


def test_unknown_kafka_compression_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="MF_KAFKA_COMPRESSION='brotli': one of none, gzip, snappy, lz4, zstd"):
        load_settings(env={"MF_KAFKA_COMPRESSION": "brotli"})


def test_point_batch_format_default_choice_and_refusal() -> None:
    assert load_settings(env={}).point_batch_format == 2
    assert load_settings(env={"MF_POINT_BATCH_FORMAT": "1"}).point_batch_format == 1
    with pytest.raises(ValueError, match="MF_POINT_BATCH_FORMAT=3: 1 or 2"):
        load_settings(env={"MF_POINT_BATCH_FORMAT": "3"})


def test_segment_codec_default_choice_and_refusal() -> None:
    assert load_settings(env={}).segment_codec == "raw_decimal"
    assert load_settings(env={"MF_SEGMENT_CODEC": "raw"}).segment_codec == "raw"
    with pytest.raises(ValueError, match="MF_SEGMENT_CODEC='decimal': one of raw_decimal, raw"):
        load_settings(env={"MF_SEGMENT_CODEC": "decimal"})


def test_collector_producer_linger_default_choice_and_refusal() -> None:
    assert load_settings(env={}).collector_producer_linger_ms == 0
    assert load_settings(env={"MF_COLLECTOR_PRODUCER_LINGER_MS": "5"}).collector_producer_linger_ms == 5
    with pytest.raises(ValueError, match="MF_COLLECTOR_PRODUCER_LINGER_MS=-1: cannot be negative"):
        load_settings(env={"MF_COLLECTOR_PRODUCER_LINGER_MS": "-1"})


def test_worker_loop_default_choice_and_refusal() -> None:
    import uvloop

    assert load_settings(env={}).worker_loop == "uvloop"
    with pytest.raises(ValueError, match="MF_WORKER_LOOP='trio': one of uvloop, asyncio"):
        load_settings(env={"MF_WORKER_LOOP": "trio"})
    for kind, loop_type in (("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)):
        loop = new_event_loop(load_settings(env={"MF_WORKER_LOOP": kind}).worker_loop)
        try:
            assert isinstance(loop, loop_type) and (kind == "uvloop") == isinstance(loop, uvloop.Loop)
        finally:
            loop.close()


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_faust_consumer_thread_gets_the_worker_loop_kind(kind: str) -> None:
    import uvloop
    from mode.threads import ServiceThread

    loop = new_event_loop(kind)
    asyncio.set_event_loop(loop)
    # Faust's Kafka consumer runs in a mode ServiceThread, on the loop its constructor makes.
    thread = ServiceThread(loop=loop)
    try:
        assert isinstance(thread.thread_loop, uvloop.Loop) == (kind == "uvloop")
    finally:
        thread.thread_loop.close()
        asyncio.set_event_loop(None)
        loop.close()
        asyncio.set_event_loop_policy(None)
