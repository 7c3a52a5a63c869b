"""Notification payload shapes and the dispatcher's queueing (drop oldest, never block)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from metricsflow.alerting.evaluator import Notification
from metricsflow.alerting.notify import (
    NotificationDispatcher,
    RetryPolicy,
    alertmanager_payload,
    webhook_payloads,
)


def n(name: str, instance: str, resolved: bool = False, **extra: str) -> Notification:
    return Notification(
        labels={"alertname": name, "instance": instance, **extra},
        annotations={"summary": "s", "runbook": f"r-{instance}"},
        starts_at_ms=1_700_000_000_000,
        ends_at_ms=1_700_000_100_500 if resolved else 1_700_000_240_000,
        generator_url="http://mf/graph?g0.expr=up&g0.tab=1",
        resolved=resolved,
    )


def test_alertmanager_payload_shape() -> None:
    assert alertmanager_payload([n("A", "a", True)]) == [{
        "labels": {"alertname": "A", "instance": "a"},
        "annotations": {"summary": "s", "runbook": "r-a"},
        "startsAt": "2023-11-14T22:13:20Z",
        "endsAt": "2023-11-14T22:15:00.5Z",
        "generatorURL": "http://mf/graph?g0.expr=up&g0.tab=1",
    }]


def test_webhook_payloads_group_by_alertname() -> None:
    payloads = webhook_payloads([n("B", "x", True), n("A", "a", sev="1"), n("A", "b", True, sev="1")],
                                "team", "http://mf")
    assert [(p["groupKey"], p["status"], len(p["alerts"])) for p in payloads] == [
        ('{}:{alertname="A"}', "firing", 2),
        ('{}:{alertname="B"}', "resolved", 1),
    ]
    a = payloads[0]
    assert a["commonLabels"] == {"alertname": "A", "sev": "1"}
    assert a["commonAnnotations"] == {"summary": "s"}
    assert [x["status"] for x in a["alerts"]] == ["firing", "resolved"]
    assert [x["endsAt"] for x in a["alerts"]] == ["0001-01-01T00:00:00Z", "2023-11-14T22:15:00.5Z"]
    assert set(a) == {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
                      "commonLabels", "commonAnnotations", "externalURL", "alerts"}


def test_retry_backoff_is_exponential_and_capped() -> None:
    p = RetryPolicy(max_attempts=10, initial_backoff_s=0.5, max_backoff_s=3)
    assert [p.backoff_s(i) for i in range(1, 6)] == [0.5, 1.0, 2.0, 3, 3]


class Gate:
    """A notifier that blocks until released, recording what it was given."""

    name = "gate"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.batches: list[list[str]] = []

    async def send(self, alerts: Sequence[Notification]) -> None:
        await self.release.wait()
        self.batches.append([a.labels["instance"] for a in alerts])


class Failing:
    name = "failing"

    async def send(self, alerts: Sequence[Notification]) -> None:
        raise ConnectionError("receiver down")


async def test_full_queue_drops_oldest_and_counts() -> None:
    gate, failing = Gate(), Failing()
    d = NotificationDispatcher.from_notifiers([gate, failing], queue_capacity=3, max_batch=2)
    try:
        d.submit([n("A", "0")])
        await asyncio.sleep(0)  # the gate's task takes "0" and blocks in send
        d.submit([n("A", str(i)) for i in range(1, 6)])  # 5 more into a queue of 3
        stats = d.stats()
        assert stats["gate"] == {"sent": 0, "failed": 0, "dropped": 2, "queued": 3}
        gate.release.set()
        assert await d.flush(5)
        assert gate.batches == [["0"], ["3", "4"], ["5"]]  # 1 and 2 were the oldest: dropped
        assert d.stats()["gate"] == {"sent": 4, "failed": 0, "dropped": 2, "queued": 0}
        # A failing receiver is counted and does not affect the other one.
        assert d.stats()["failing"]["failed"] + d.stats()["failing"]["dropped"] == 6
    finally:
        await d.close()


async def test_submit_after_close_is_refused() -> None:
    d = NotificationDispatcher([], [])
    await d.close()
    try:
        d.submit([n("A", "a")])
    except RuntimeError as exc:
        assert "closed" in str(exc)
    else:
        raise AssertionError("submit after close must fail")
