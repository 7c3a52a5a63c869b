"""The mf.ingest agent: native WriteRequests from Kafka producers in any language.

They take the collector's own path (``IngestPipeline``: validate, hash, group,
ship to mf.points/mf.series), so a point produced to mf.ingest is stored exactly
as one sent to a collector. The offset of an mf.ingest message is committed only
after its points were acknowledged on mf.points: a Kafka hiccup is retried, never
skipped.
"""

from __future__ import annotations

import asyncio
import logging

import faust

from agents import metrics
from metricsflow.collector.kafka_writer import KafkaWriter
from metricsflow.collector.pipeline import IngestPipeline
from metricsflow.config import Settings
from metricsflow.errors import BackendUnavailable, InvalidInput
from metricsflow.ingest.native import parse_native_with_tenant
from metricsflow.model import DEFAULT_TENANT

log = logging.getLogger(__name__)
PROTOCOL = "kafka"


def register_ingest_agent(app: faust.App, settings: Settings, topic: faust.TopicT) -> None:
    writer = KafkaWriter(settings.kafka_bootstrap, ack_timeout_s=30.0, compression=settings.kafka_compression)
    pipeline = IngestPipeline(settings, writer)

    @app.agent(topic, name="ingest-repartition")
    async def repartition(stream: faust.StreamT) -> None:
        if not writer.ready:
            writer.start()
        async for body in stream:
            try:
                parsed, tenant = parse_native_with_tenant(body)  # one parse for points and tenant
                if tenant is None:
                    raise InvalidInput("invalid_tenant", "the tenant field is not valid UTF-8")
                tenant = tenant or DEFAULT_TENANT
                pipeline.check_tenant(tenant)
            except InvalidInput as exc:
                metrics.INGEST_REJECTED.labels(exc.reason).inc()
                log.warning("mf.ingest message refused: %s", exc)
                continue
            delay = 0.2
            while True:
                try:
                    outcome = await pipeline.accept(tenant, parsed, PROTOCOL)
                    break
                except BackendUnavailable as exc:
                    log.warning("mf.ingest: cannot write points yet (%s); retrying", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            for r in outcome.rejections:
                metrics.INGEST_REJECTED.labels(r.reason).inc(r.points)
            metrics.INGEST_ACCEPTED.inc(outcome.accepted)

    @app.on_before_shutdown.connect
    async def close_writer(_app: faust.App, **_: object) -> None:
        await writer.close()
