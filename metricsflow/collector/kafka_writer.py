"""The collector's only path to Kafka: idempotent, acks=all, bounded in time.

``write`` returns only after Kafka acknowledged every message (invariant 1) or
raises ``BackendUnavailable`` within ``ack_timeout_s`` (invariant 6). While the
broker is away the producer keeps reconnecting in the background, so the
collector recovers without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from metricsflow.errors import BackendUnavailable

log = logging.getLogger(__name__)

# (topic, partition, key, value)
Message = tuple[str, int, bytes | None, bytes]


class KafkaWriter:
    def __init__(self, bootstrap: str, ack_timeout_s: float, retry_after_s: float = 2.0,
                 compression: str = "none", linger_ms: int = 0) -> None:
        self._bootstrap = bootstrap
        self._compression = None if compression == "none" else compression
        self._ack_timeout_s = ack_timeout_s
        self._linger_ms = linger_ms
        self._retry_after_s = retry_after_s
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def ready(self) -> bool:
        return self._producer is not None

    def start(self) -> None:
        """Begin connecting in the background; writes answer 503 until connected."""
        self._connector = asyncio.get_running_loop().create_task(self._connect_forever())

    async def _connect_forever(self) -> None:
        delay = 0.2
        while not self._closing and self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True,
                linger_ms=self._linger_ms, max_request_size=8 * 1024 * 1024, request_timeout_ms=30_000,
                max_batch_size=1024 * 1024, compression_type=self._compression,
            )
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                log.warning("kafka at %s not reachable (%s); retrying in %.1fs", self._bootstrap, exc, delay)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._producer = producer
            log.info("connected to kafka at %s", self._bootstrap)

    async def _reset(self) -> None:
        """Drop a producer that failed for good and connect a fresh one."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)
        if not self._closing and (self._connector is None or self._connector.done()):
            self._connector = asyncio.get_running_loop().create_task(self._connect_forever())

    async def write(self, messages: Sequence[Message]) -> None:
        """Send all messages and wait for their acks, or raise BackendUnavailable in bounded time."""
        producer = self._producer
        if producer is None:
            raise BackendUnavailable("kafka is not connected", self._retry_after_s)

        # No send suspends while the topics' metadata is known and their batches have room, so the
        # sender sees a write's messages together: one produce request, even without a linger.
        async def send_all() -> None:
            futures = [await producer.send(t, value=v, key=k, partition=p) for t, p, k, v in messages]
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(send_all(), self._ack_timeout_s)
        except TimeoutError:
            raise BackendUnavailable(f"kafka did not acknowledge within {self._ack_timeout_s:g} s",
                                     self._retry_after_s) from None
        except KafkaError as exc:
            log.warning("kafka write failed: %r; reconnecting", exc)
            await self._reset()
            raise BackendUnavailable(f"kafka write failed: {exc}", self._retry_after_s) from exc

    async def close(self) -> None:
        self._closing = True
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connector
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), 10)
            self._producer = None
