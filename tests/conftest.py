"""Session-wide real Kafka broker for integration tests (KRaft, 127.0.0.1, own port and data dir)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from metricsflow.stack import kafka
from tests.support import Stack, free_port


@pytest.fixture(scope="session")
def kafka_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kafka.KafkaNode | None]:
    """The session's broker as started here; None when ``MF_TEST_KAFKA`` names one started elsewhere."""
    if os.environ.get("MF_TEST_KAFKA"):
        yield None
        return
    port = free_port()
    node = kafka.KafkaNode(tmp_path_factory.mktemp("kafka"), port=port, controller_port=free_port())
    kafka.start(node)
    try:
        yield node
    finally:
        kafka.stop(node)


@pytest.fixture(scope="session")
def kafka_broker(kafka_node: kafka.KafkaNode | None) -> str:
    """A real single-node Kafka 4 broker, shared by the session; tests isolate by topic prefix."""
    return kafka_node.bootstrap if kafka_node is not None else os.environ["MF_TEST_KAFKA"]


@pytest.fixture
def stack(kafka_broker: str, tmp_path: Path) -> Iterator[Stack]:
    st = Stack(bootstrap=kafka_broker, workdir=tmp_path)
    try:
        yield st
    finally:
        st.stop_all()
