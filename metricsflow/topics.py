"""The Kafka topics metricsflow owns, created idempotently by whichever process starts first."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from metricsflow.config import Settings

log = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> list[NewTopic]:
    rf = settings.replication_factor
    p = settings.partitions
    return [
        NewTopic(settings.topic("points"), p, rf,
                 topic_configs={"cleanup.policy": "delete", "retention.ms": str(settings.points_retention_ms),
                                "max.message.bytes": str(4 * 1024 * 1024)}),
        # Same partition count as points: a worker owns a series' points and its labels.
        NewTopic(settings.topic("series"), p, rf, topic_configs={"cleanup.policy": "compact"}),
        # Alert state transitions, keyed by rule and alert fingerprint.
        NewTopic(settings.topic("alerts"), p, rf, topic_configs={"cleanup.policy": "compact"}),
        # Partial rule results, each sent to its rule group's partition (the group owner's); read at once.
        NewTopic(settings.topic("rule_partials"), p, rf,
                 topic_configs={"cleanup.policy": "delete", "retention.ms": str(3600 * 1000),
                                "max.message.bytes": str(8 * 1024 * 1024)}),
        NewTopic(settings.topic("ingest"), p, rf,
                 topic_configs={"cleanup.policy": "delete", "retention.ms": str(24 * 3600 * 1000),
                                "max.message.bytes": str(4 * 1024 * 1024)}),
    ]


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> None:
    """Create missing topics; existing ones are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topic_specs(settings) if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:  # a racing creator is fine; anything else is not
                if "already exists" not in str(exc).lower():
                    raise
            log.info("created topics %s", [t.name for t in missing])
    finally:
        await admin.close()
