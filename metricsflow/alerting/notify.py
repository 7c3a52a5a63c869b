"""Alert notifications: Alertmanager API v2 and generic webhooks, never blocking evaluation.

Every receiver gets its own bounded queue and background task (as Prometheus'
notifier does per Alertmanager): :meth:`NotificationDispatcher.submit` only appends to
the queues and returns; a slow or dead receiver fills its own queue, whose *oldest*
alerts are then dropped and counted (newer state supersedes older state, and firing
alerts are re-sent every resend delay anyway).

Alertmanager receives one attempt per batch, like Prometheus: the resend cycle and
``endsAt`` = now + 4 × max(interval, resend delay) already tolerate lost sends.
Webhooks get retries with exponential backoff because nothing re-sends resolved
notifications to them after the 15-minute retention.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson

from metricsflow.errors import MetricsflowError, RetryableError

from . import metrics
from .evaluator import Notification
from .gofmt import format_rfc3339_ms
from .state import fingerprint

__all__ = [
    "AlertmanagerNotifier",
    "NotificationDispatcher",
    "Notifier",
    "NotifyError",
    "RetryPolicy",
    "WebhookNotifier",
    "alertmanager_payload",
    "webhook_payloads",
]

log = logging.getLogger(__name__)

DEFAULT_QUEUE_CAPACITY = 10_000  # Prometheus --alertmanager.notification-queue-capacity
DEFAULT_MAX_BATCH = 64  # Prometheus' maxBatchSize
DEFAULT_TIMEOUT_S = 10.0  # Prometheus' default alertmanager timeout


class NotifyError(MetricsflowError):
    """A receiver refused a batch for good (4xx other than 429)."""


class RetryableNotifyError(RetryableError):
    """A receiver failed in a way that may succeed later (connection error, 5xx, 429)."""


class Notifier(Protocol):
    """One receiver. ``send`` delivers one batch or raises; it may take its time."""

    name: str

    async def send(self, alerts: Sequence[Notification]) -> None: ...


def alertmanager_payload(alerts: Sequence[Notification]) -> list[dict[str, Any]]:
    """The body of ``POST /api/v2/alerts`` (``postableAlerts``)."""
    return [
        {
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": format_rfc3339_ms(a.starts_at_ms),
            "endsAt": format_rfc3339_ms(a.ends_at_ms),
            "generatorURL": a.generator_url,
        }
        for a in alerts
    ]


def _common(maps: Sequence[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in sorted(first.items()) if all(m.get(k) == v for m in maps[1:])}


def webhook_payloads(
    alerts: Sequence[Notification], receiver: str, external_url: str, now_ms: int | None = None
) -> list[dict[str, Any]]:
    """Alertmanager's webhook payloads (version 4), one per ``alertname`` group.

    As in Alertmanager, a firing alert's ``endsAt`` is not exposed (Go's zero time).
    """
    by_name: dict[str, list[Notification]] = {}
    for a in alerts:
        by_name.setdefault(a.labels.get("alertname", ""), []).append(a)
    out = []
    for name, group in sorted(by_name.items()):
        status = "firing" if any(not a.resolved for a in group) else "resolved"
        out.append({
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{name}"}}',
            "truncatedAlerts": 0,
            "status": status,
            "receiver": receiver,
            "groupLabels": {"alertname": name},
            "commonLabels": _common([a.labels for a in group]),
            "commonAnnotations": _common([a.annotations for a in group]),
            "externalURL": external_url,
            "alerts": [
                {
                    "status": a.status,
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": format_rfc3339_ms(a.starts_at_ms),
                    "endsAt": format_rfc3339_ms(a.ends_at_ms if a.resolved else 0),
                    "generatorURL": a.generator_url,
                    "fingerprint": f"{fingerprint(a.labels):016x}",
                }
                for a in group
            ],
        })
    return out


def _receiver_name(kind: str, url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{kind}:{host}{parts.path}"  # no credentials or query strings in metric labels


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 10.0

    def backoff_s(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1`` (attempt counts from 1): 0.5, 1, 2, 4, ... capped."""
        return min(self.max_backoff_s, self.initial_backoff_s * (2 ** (attempt - 1)))


async def _post_json(session: aiohttp.ClientSession, url: str, body: Any, timeout_s: float) -> None:
    try:
        async with session.post(
            url,
            data=orjson.dumps(body),
            headers={"Content-Type": "application/json", "User-Agent": "metricsflow-alerting"},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            text = (await resp.read())[:512].decode("utf-8", "replace")
            if resp.status // 100 == 2:
                return
            msg = f"{url}: HTTP {resp.status}: {text.strip()}"
            if resp.status >= 500 or resp.status == 429:
                raise RetryableNotifyError(msg)
            raise NotifyError(msg)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise RetryableNotifyError(f"{url}: {type(exc).__name__}: {exc}") from exc


class _SessionHolder:
    """One aiohttp session per dispatcher, created on the loop that uses it."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class AlertmanagerNotifier:
    """``POST {url}/api/v2/alerts``; ``url`` is the Alertmanager base URL (path prefix allowed)."""

    def __init__(self, url: str, sessions: _SessionHolder | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.name = _receiver_name("alertmanager", url)
        self._sessions = sessions or _SessionHolder()
        self._timeout_s = timeout_s

    async def send(self, alerts: Sequence[Notification]) -> None:
        await _post_json(self._sessions.get(), self.url, alertmanager_payload(alerts), self._timeout_s)


class WebhookNotifier:
    """POSTs Alertmanager-webhook-shaped payloads to ``url``, retrying with backoff."""

    def __init__(
        self,
        url: str,
        sessions: _SessionHolder | None = None,
        *,
        receiver: str = "metricsflow",
        external_url: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.url = url
        self.name = _receiver_name("webhook", url)
        self.receiver = receiver
        self.external_url = external_url
        self._sessions = sessions or _SessionHolder()
        self._timeout_s = timeout_s
        self._retry = retry or RetryPolicy()

    async def send(self, alerts: Sequence[Notification]) -> None:
        for payload in webhook_payloads(alerts, self.receiver, self.external_url):
            attempt = 1
            while True:
                try:
                    await _post_json(self._sessions.get(), self.url, payload, self._timeout_s)
                    break
                except RetryableNotifyError as exc:
                    if attempt >= self._retry.max_attempts:
                        raise
                    delay = self._retry.backoff_s(attempt)
                    log.info("webhook %s attempt %d failed (%s); retrying in %.2fs", self.name, attempt, exc, delay)
                    await asyncio.sleep(delay)
                    attempt += 1


class _Queue:
    """A receiver's bounded queue and the task draining it in batches."""

    def __init__(self, notifier: Notifier, capacity: int, max_batch: int) -> None:
        self.notifier = notifier
        self.capacity = capacity
        self.max_batch = max_batch
        self.items: deque[Notification] = deque()
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.dropped = 0
        self.sent = 0
        self.failed = 0
        self.task: asyncio.Task[None] | None = None

    def put(self, alerts: Sequence[Notification]) -> None:
        name = self.notifier.name
        for a in alerts:
            if len(self.items) >= self.capacity:
                self.items.popleft()  # drop the oldest: newer state supersedes it
                self.dropped += 1
                metrics.NOTIFICATIONS_DROPPED.labels(name).inc()
            self.items.append(a)
        metrics.NOTIFICATION_QUEUE_LENGTH.labels(name).set(len(self.items))
        if self.items:
            self.idle.clear()
            self.wake.set()
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(), name=f"notify {name}")

    async def _run(self) -> None:
        name = self.notifier.name
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.items:
                n = min(self.max_batch, len(self.items))
                batch = [self.items.popleft() for _ in range(n)]
                metrics.NOTIFICATION_QUEUE_LENGTH.labels(name).set(len(self.items))
                started = time.perf_counter()
                try:
                    await self.notifier.send(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a failing receiver is counted and logged, never fatal
                    self.failed += len(batch)
                    metrics.NOTIFICATIONS_FAILED.labels(name).inc(len(batch))
                    log.warning("sending %d alerts to %s failed: %s", len(batch), name, exc)
                else:
                    self.sent += len(batch)
                    metrics.NOTIFICATIONS_SENT.labels(name).inc(len(batch))
                    metrics.NOTIFICATION_LATENCY_SECONDS.labels(name).observe(time.perf_counter() - started)
            self.idle.set()


class NotificationDispatcher:
    """Fans alerts out to every Alertmanager and webhook; ``submit`` never waits.

    Use from one asyncio event loop: ``submit`` starts the per-receiver tasks on the
    running loop the first time; ``await close()`` drains (bounded) and stops them.
    """

    def __init__(
        self,
        urls_alertmanager: list[str],
        urls_webhook: list[str],
        *,
        external_url: str = "",
        receiver: str = "metricsflow",
        queue_capacity: int = DEFAULT_QUEUE_CAPACITY,
        max_batch: int = DEFAULT_MAX_BATCH,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._sessions = _SessionHolder()
        notifiers: list[Notifier] = [AlertmanagerNotifier(u, self._sessions, timeout_s) for u in urls_alertmanager]
        notifiers += [
            WebhookNotifier(u, self._sessions, receiver=receiver, external_url=external_url, timeout_s=timeout_s,
                            retry=retry)
            for u in urls_webhook
        ]
        self._queues = [_Queue(n, queue_capacity, max_batch) for n in notifiers]
        self._closed = False

    @classmethod
    def from_notifiers(cls, notifiers: Sequence[Notifier], queue_capacity: int = DEFAULT_QUEUE_CAPACITY,
                       max_batch: int = DEFAULT_MAX_BATCH) -> NotificationDispatcher:
        """A dispatcher over any :class:`Notifier` implementations (e.g. a Kafka topic sink)."""
        d = cls([], [], queue_capacity=queue_capacity, max_batch=max_batch)
        d._queues = [_Queue(n, queue_capacity, max_batch) for n in notifiers]
        return d

    def submit(self, alerts: Sequence[Notification]) -> None:
        """Queue ``alerts`` for every receiver and return at once (must run on the event loop)."""
        if self._closed:
            raise RuntimeError("NotificationDispatcher is closed")
        if not alerts:
            return
        for q in self._queues:
            q.put(alerts)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per receiver: sent, failed, dropped, queued (also exported as metrics)."""
        return {
            q.notifier.name: {"sent": q.sent, "failed": q.failed, "dropped": q.dropped, "queued": len(q.items)}
            for q in self._queues
        }

    async def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queue is empty and idle; False if ``timeout_s`` passed first."""
        try:
            async with asyncio.timeout(timeout_s):
                for q in self._queues:
                    await q.idle.wait()
            return True
        except TimeoutError:
            return False

    async def close(self, drain_timeout_s: float = 5.0) -> None:
        """Try to deliver what is queued (bounded), then stop the tasks and the HTTP session."""
        if self._closed:
            return
        self._closed = True
        await self.flush(drain_timeout_s)
        tasks = [q.task for q in self._queues if q.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._sessions.close()
