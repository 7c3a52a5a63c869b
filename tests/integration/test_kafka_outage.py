"""Kafka stopped → the collector answers 503 + Retry-After within the bound; Kafka back → writes succeed."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from metricsflow.stack import kafka
from tests.support import Stack, free_port, http, wait_for

pytestmark = pytest.mark.integration
ACK_TIMEOUT_S = 2.0


def write(stack: Stack, value: float) -> tuple[int, dict[str, str], float]:
    body = orjson.dumps({"metrics": [{"metric_name": "outage", "value": value}]})
    started = time.monotonic()
    status, headers, _ = http("POST", stack.collector_url + "/v1/metrics", body, {"Content-Type": "application/json"})
    return status, headers, time.monotonic() - started


def unavailable_count(stack: Stack) -> float:
    _, _, text = http("GET", stack.collector_url + "/metrics")
    for line in text.decode().splitlines():
        if line.startswith("mf_collector_kafka_unavailable_total "):
            return float(line.split()[1])
    raise AssertionError("mf_collector_kafka_unavailable_total missing from /metrics")


def test_collector_fails_fast_and_recovers_without_restart(tmp_path: Path) -> None:
    node = kafka.KafkaNode(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    kafka.start(node)
    stack = Stack(bootstrap=node.bootstrap, workdir=tmp_path, partitions=2)
    try:
        collector = stack.start_collector(MF_KAFKA_ACK_TIMEOUT_S=str(ACK_TIMEOUT_S))
        wait_for(lambda: write(stack, 1.0)[0] == 202, 60, "first write accepted")

        before = unavailable_count(stack)
        kafka.stop(node)
        for i in range(3):
            status, headers, elapsed = write(stack, 2.0 + i)
            assert status == 503, status
            assert int(headers["Retry-After"]) >= 1
            assert elapsed < ACK_TIMEOUT_S + 1.5, f"503 took {elapsed:.1f}s, bound is {ACK_TIMEOUT_S}s"
        assert unavailable_count(stack) == before + 3, "every refused request is counted"

        kafka.start(node)
        wait_for(lambda: write(stack, 9.0)[0] == 202, 90, "writes accepted again after Kafka restart")
        assert collector.alive(), "the collector must not have been restarted"
    finally:
        stack.stop_all()
        kafka.stop(node)
