"""Notifications against real receivers: Debian's prometheus-alertmanager and local aiohttp webhooks.

Alertmanager runs on a free 127.0.0.1 port with clustering off and a ``null`` receiver;
we push alerts through :class:`NotificationDispatcher` and read them back from
Alertmanager's own ``GET /api/v2/alerts``. Waits poll with a deadline.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from metricsflow.alerting.evaluator import EvalOptions, Notification, evaluate_group
from metricsflow.alerting.notify import NotificationDispatcher, RetryPolicy
from metricsflow.alerting.rules import load_rule_text
from metricsflow.alerting.state import AlertState, fingerprint
from metricsflow.stack.process import stop_pid
from tests.support import free_port

AM_BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

AM_CONFIG = """\
route:
  receiver: "null"
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: "null"
"""

RULES = """
groups:
- name: am
  interval: 15s
  rules:
  - alert: MetricsflowTestAlert
    expr: errors > 0
    labels: {severity: page}
    annotations: {summary: "{{ $labels.instance }} has {{ $value }} errors"}
"""


async def wait_until(check: Callable[[], Awaitable[Any]], timeout_s: float, what: str) -> Any:
    """Poll an async check until truthy; fail with ``what`` past the deadline (never block the loop)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except Exception as exc:  # not up yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; last: {last!r}")


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    if AM_BINARY is None:
        pytest.skip("prometheus-alertmanager is not installed (apt-get install -y prometheus-alertmanager)")
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(AM_CONFIG)
    (tmp_path / "data").mkdir()
    log = open(tmp_path / "alertmanager.log", "wb")  # closed in finally
    proc = subprocess.Popen(
        [AM_BINARY, f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
         f"--storage.path={tmp_path / 'data'}", f"--config.file={config}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"alertmanager exited: {(tmp_path / 'alertmanager.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("alertmanager did not become ready within 30s")
            time.sleep(0.1)
        yield url
    finally:
        stop_pid(proc.pid)  # SIGTERM, then SIGKILL after a bound; reaps the child
        proc.wait(timeout=5)  # lets Popen record the exit (no "still running" warning)
        log.close()


async def am_alerts(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with session.get(url + "/api/v2/alerts") as resp:
        assert resp.status == 200
        return [a for a in await resp.json() if a["labels"].get("alertname") == "MetricsflowTestAlert"]


async def test_alert_reaches_alertmanager_and_resolves(alertmanager: str) -> None:
    (group,) = load_rule_text(RULES, "am.yml").groups
    errors = {"value": 3.0}

    def query(expr: str, t: int) -> list[tuple[dict[str, str], float]]:
        assert expr == "errors > 0"
        return [] if errors["value"] == 0 else [({"instance": "web-1"}, errors["value"])]

    opts = EvalOptions(external_labels={"cluster": "test"}, external_url="http://metricsflow:9090")
    dispatcher = NotificationDispatcher([alertmanager], [])
    states: dict[str, AlertState] = {}
    # Evaluate 15 s in the past, so the resolving evaluation below happens "now":
    # Alertmanager treats an alert as resolved once its endsAt has passed.
    now_ms = int(time.time() * 1000) - 15_000
    try:
        res = evaluate_group(group, query, now_ms, states, opts)
        states = res.states
        assert len(res.notifications) == 1
        dispatcher.submit(res.notifications)

        async with aiohttp.ClientSession() as session:
            async def firing() -> list[dict[str, Any]]:
                return await am_alerts(session, alertmanager)

            (alert,) = await wait_until(firing, 20, "the alert in Alertmanager's /api/v2/alerts")
            assert alert["labels"] == {"alertname": "MetricsflowTestAlert", "instance": "web-1",
                                       "severity": "page", "cluster": "test"}
            assert alert["annotations"] == {"summary": "web-1 has 3 errors"}
            assert alert["status"]["state"] == "active"
            assert alert["generatorURL"] == "http://metricsflow:9090/graph?g0.expr=errors+%3E+0&g0.tab=1"
            assert alert["fingerprint"] == f"{fingerprint(alert['labels']):016x}"  # same hash as Alertmanager

            # The condition clears: the next evaluation resolves and notifies with endsAt = now.
            errors["value"] = 0
            res = evaluate_group(group, query, now_ms + 15_000, states, opts)
            (resolved,) = res.notifications
            assert resolved.status == "resolved" and resolved.ends_at_ms == now_ms + 15_000
            dispatcher.submit(res.notifications)

            async def gone() -> bool:
                return await am_alerts(session, alertmanager) == []

            await wait_until(gone, 20, "the resolved alert to leave Alertmanager's active alerts")
        assert await dispatcher.flush(5)
        (stats,) = dispatcher.stats().values()
        assert stats["sent"] == 2 and stats["failed"] == 0 and stats["dropped"] == 0
    finally:
        await dispatcher.close()


# ---------------------------------------------------------------- webhooks


class Receiver:
    """A local webhook receiver whose behaviour per request the test chooses."""

    def __init__(self, fail_first: int = 0, delay_s: float = 0.0) -> None:
        self.fail_first = fail_first
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.attempts = 0
        self.attempt_times: list[float] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        self.attempt_times.append(time.monotonic())
        if self.attempts <= self.fail_first:
            return web.Response(status=503, text="try later")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.requests.append(await request.json())
        return web.Response(status=200)


@pytest.fixture
async def receiver_factory() -> AsyncIterator[Callable[..., Awaitable[tuple[Receiver, str]]]]:
    runners: list[web.AppRunner] = []

    async def start(**kwargs: Any) -> tuple[Receiver, str]:
        rec = Receiver(**kwargs)
        app = web.Application()
        app.router.add_post("/hook", rec.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return rec, f"http://127.0.0.1:{port}/hook"

    yield start
    for r in runners:
        await r.cleanup()


def notification(name: str = "HookAlert", instance: str = "a", resolved: bool = False) -> Notification:
    return Notification(
        labels={"alertname": name, "instance": instance, "severity": "page"},
        annotations={"summary": f"{instance} broke"},
        starts_at_ms=1_700_000_000_000,
        ends_at_ms=1_700_000_060_000 if resolved else 1_700_000_240_000,
        generator_url="http://mf/graph?g0.expr=x&g0.tab=1",
        resolved=resolved,
    )


async def test_webhook_retries_with_backoff(receiver_factory: Callable[..., Awaitable[tuple[Receiver, str]]]) -> None:
    rec, url = await receiver_factory(fail_first=2)
    dispatcher = NotificationDispatcher([], [url], external_url="http://mf:9090", receiver="oncall",
                                        retry=RetryPolicy(max_attempts=4, initial_backoff_s=0.1, max_backoff_s=1))
    try:
        dispatcher.submit([notification(instance="a"), notification(instance="b")])

        async def delivered() -> bool:
            return len(rec.requests) == 1

        await wait_until(delivered, 10, "the webhook to succeed on the third attempt")
        assert rec.attempts == 3
        gaps = [b - a for a, b in zip(rec.attempt_times, rec.attempt_times[1:], strict=False)]
        assert gaps[0] >= 0.09 and gaps[1] >= 0.19  # 0.1 s then 0.2 s: exponential
        (payload,) = rec.requests
        assert payload["version"] == "4"
        assert payload["status"] == "firing"
        assert payload["receiver"] == "oncall"
        assert payload["groupKey"] == '{}:{alertname="HookAlert"}'
        assert payload["groupLabels"] == {"alertname": "HookAlert"}
        assert payload["commonLabels"] == {"alertname": "HookAlert", "severity": "page"}
        assert payload["commonAnnotations"] == {}
        assert payload["externalURL"] == "http://mf:9090"
        assert [a["labels"]["instance"] for a in payload["alerts"]] == ["a", "b"]
        first = payload["alerts"][0]
        assert first["status"] == "firing"
        assert first["startsAt"] == "2023-11-14T22:13:20Z"
        assert first["endsAt"] == "0001-01-01T00:00:00Z"  # not exposed while firing, as Alertmanager does
        assert len(first["fingerprint"]) == 16
        await dispatcher.flush(5)
        (stats,) = dispatcher.stats().values()
        assert stats == {"sent": 2, "failed": 0, "dropped": 0, "queued": 0}
    finally:
        await dispatcher.close()


async def test_webhook_gives_up_after_max_attempts(
    receiver_factory: Callable[..., Awaitable[tuple[Receiver, str]]],
) -> None:
    rec, url = await receiver_factory(fail_first=100)
    dispatcher = NotificationDispatcher([], [url], retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.05))
    try:
        dispatcher.submit([notification(resolved=True)])
        assert await dispatcher.flush(10)
        assert rec.attempts == 3
        (stats,) = dispatcher.stats().values()
        assert stats["failed"] == 1 and stats["sent"] == 0
    finally:
        await dispatcher.close()


async def test_slow_webhook_never_blocks_evaluation(
    receiver_factory: Callable[..., Awaitable[tuple[Receiver, str]]],
) -> None:
    rec, url = await receiver_factory(delay_s=2.0)
    dispatcher = NotificationDispatcher([], [url], queue_capacity=5, max_batch=1)
    (group,) = load_rule_text(RULES, "slow.yml").groups
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    try:
        states: dict[str, AlertState] = {}
        t0 = int(time.time() * 1000)
        worst_submit_s = 0.0
        for i in range(20):  # 20 evaluations, each with a new firing alert, while the receiver hangs
            res = evaluate_group(group, lambda e, t, i=i: [({"instance": f"i{i}"}, 1.0)], t0 + i * 15_000, states)
            states = res.states
            started = time.perf_counter()
            dispatcher.submit(res.notifications)
            worst_submit_s = max(worst_submit_s, time.perf_counter() - started)
            await asyncio.sleep(0)
        assert worst_submit_s < 0.01, f"submit took {worst_submit_s * 1000:.1f} ms"
        await asyncio.sleep(0.5)
        assert ticks >= 20  # the loop kept running while the send was in flight
        (stats,) = dispatcher.stats().values()
        # 1 batch in flight, queue capped at 5: the oldest of the rest were dropped and counted.
        assert stats["queued"] == 5 and stats["dropped"] > 0
        assert stats["dropped"] + stats["queued"] + 1 >= 20
    finally:
        tick_task.cancel()
        await dispatcher.close(drain_timeout_s=0.1)
    assert rec.attempts >= 1
