"""How long the worker's Kafka consumer lets the broker hold an empty fetch.

Faust creates its consumer with ``fetch_max_wait_ms=1500``. The Kafka client keeps one
fetch in flight per broker and leaves out the partitions whose records the application
has not consumed yet; when every mf.points partition still had records, the fetch held
only quiet topics (mf.series, mf.ingest, the rule partials), and the broker kept it for
the full 1.5 s while mf.points filled up behind it. Under steady load the worker then
consumed in bursts every ~1.6 s, and freshness was a 0–1.6 s sawtooth
(perf/RESULTS.md, "Changelog records in batches, fetches no longer held 1.5 s"). A short
wait adds empty fetches to an idle worker: at 100 ms it used 5.4 % of a core instead of
3.2 %, at 250 ms 2.0 %.
"""

from __future__ import annotations

from typing import Any

FETCH_MAX_WAIT_MS = 250
_PATCHED = "_mf_fetch_max_wait"


def short_fetch_waits(max_wait_ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Make the worker consumers Faust creates from now on wait at most ``max_wait_ms`` per fetch
    (idempotent)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    create = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, _PATCHED, False):
        return

    def create_worker_consumer(self: AIOKafkaConsumerThread, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms  # read when the consumer starts its fetcher
        return consumer

    setattr(create_worker_consumer, _PATCHED, True)
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]
