"""What the sync and the asyncio client share: configuration, the bounded point
buffer, per-series state, batch encoding, backoff and accounting.

Hot-path contract (see docs/client.md): recording a point takes one uncontended
lock, one dict lookup for counters/distributions and one list append — about
1–3 µs in CPython 3.11, never I/O, never waiting for the sender.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from metricsflow.ingest.names import sanitize_label_name, sanitize_metric_name
from metricsflow.model import METRIC_NAME_LABEL, MetricKind
from metricsflow.wire import encode_labels, encode_series, encode_write_request

DropPolicy = Literal["drop_newest", "drop_oldest"]
TransportName = Literal["grpc", "http"]

DEFAULT_GRPC_TARGET = "127.0.0.1:50051"
DEFAULT_HTTP_TARGET = "http://127.0.0.1:8080"

# A distribution observation whose timestamp collides with the previous one of the
# same series is moved 1 ms later (storage keeps one sample per (series, ms)); it
# may run at most this far ahead of the wall clock, beyond that it is dropped.
MAX_DISTRIBUTION_SKEW_MS = 1_000

# Buffer-internal kind of counter() points: the client keeps the running total per
# series and sends it (a COUNTER on the wire); write(kind=COUNTER) sends values as given.
RUNNING_COUNTER = 0x100 | MetricKind.COUNTER

_DISTRIBUTION = int(MetricKind.DISTRIBUTION)

# (metric name, kind, sorted tag items)
SeriesKey = tuple[str, int, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Every knob of a client; built once, never mutated.

    ``target`` is ``host:port`` for gRPC or a base URL (``http://host:8080``) for
    HTTP. The memory bound is ``max_buffered_points`` waiting plus one batch of at
    most ``batch_points`` in flight.
    """

    target: str = DEFAULT_GRPC_TARGET
    transport: TransportName = "grpc"
    tenant: str = "default"
    batch_points: int = 5_000
    flush_interval_s: float = 1.0
    max_buffered_points: int = 100_000
    drop_policy: DropPolicy = "drop_newest"
    max_series: int = 100_000
    request_timeout_s: float = 10.0
    backoff_base_s: float = 0.1
    backoff_max_s: float = 30.0
    default_tags: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.transport not in ("grpc", "http"):
            raise ValueError(f"transport {self.transport!r}: want 'grpc' or 'http'")
        if self.drop_policy not in ("drop_newest", "drop_oldest"):
            raise ValueError(f"drop_policy {self.drop_policy!r}: want 'drop_newest' or 'drop_oldest'")
        if self.batch_points < 1 or self.max_buffered_points < 1 or self.max_series < 1:
            raise ValueError("batch_points, max_buffered_points and max_series must be >= 1")
        if self.flush_interval_s <= 0 or self.request_timeout_s <= 0:
            raise ValueError("flush_interval_s and request_timeout_s must be > 0")


def make_config(target: str | None, config: ClientConfig | None, options: Mapping[str, object]) -> ClientConfig:
    """``config`` (or the defaults) with ``target`` and keyword ``options`` applied."""
    base = config or ClientConfig()
    values = {f.name: getattr(base, f.name) for f in dataclasses.fields(ClientConfig)}
    unknown = set(options) - set(values)
    if unknown:
        raise TypeError(f"unknown client option(s): {sorted(unknown)}")
    values.update(options)
    if isinstance(values["default_tags"], Mapping):
        values["default_tags"] = tuple(sorted((str(k), str(v)) for k, v in values["default_tags"].items()))
    if target is not None:
        values["target"] = target
    elif config is None and values["transport"] == "http" and values["target"] == DEFAULT_GRPC_TARGET:
        values["target"] = DEFAULT_HTTP_TARGET
    return ClientConfig(**values)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ClientStats:
    """A snapshot of a client's counters (all since creation).

    * ``recorded``: points handed to the client (including those later dropped).
    * ``sent``: points in requests the collector answered (accepted + rejected).
    * ``accepted`` / ``rejected``: as counted by the collector; a 400 /
      INVALID_ARGUMENT answer rejects every point of its batch (never retried).
    * ``dropped``: points that never reached the collector; ``dropped_by_reason``
      splits them: ``buffer_full``, ``series_limit``, ``invalid_value``,
      ``distribution_skew``, ``send_failed`` (non-retryable transport error),
      ``close_timeout``.
    * ``retries``: request attempts that failed with a retryable error and were
      retried after a backoff; ``errors``: failed request attempts of any kind.
    * ``requests``: request attempts; ``buffered``: points waiting right now.
    """

    recorded: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    dropped: int = 0
    retries: int = 0
    errors: int = 0
    requests: int = 0
    buffered: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    last_error: str = ""


class _Counts:
    """Mutable counters behind ClientStats; each field is touched by one thread or under the lock."""

    __slots__ = ("accepted", "drops", "errors", "last_error", "rejected", "requests", "retries", "sent")

    def __init__(self) -> None:
        self.sent = self.accepted = self.rejected = self.retries = self.errors = self.requests = 0
        self.drops: dict[str, int] = {}
        self.last_error = ""


class Batch:
    """Points as three parallel columns: series keys, int64 ms timestamps, float64 values.

    Columns, not per-point tuples: 100k buffered tuples made CPython's cyclic GC
    stall callers for up to 50 ms (measured); arrays of numbers are not tracked.
    """

    __slots__ = ("keys", "timestamps_ms", "values")

    def __init__(self) -> None:
        self.keys: list[SeriesKey] = []
        self.timestamps_ms = array("q")
        self.values = array("d")

    def __len__(self) -> int:
        return len(self.keys)

    def tail_from(self, head: int) -> Batch:
        if not head:
            return self
        out = Batch()
        out.keys = self.keys[head:]
        out.timestamps_ms = self.timestamps_ms[head:]
        out.values = self.values[head:]
        return out


class Recorder:
    """The bounded buffer plus per-series state, behind one lock.

    Points are kept in chunks of ``batch_points`` so the sender takes a whole
    batch in O(1) under the lock. ``drop_newest`` refuses the point being
    recorded when full; ``drop_oldest`` evicts the oldest buffered point (an O(1)
    head offset into the oldest chunk). Series keys are interned (one tuple per
    series), so a buffered point costs ~8+8+8 bytes.
    """

    def __init__(self, config: ClientConfig) -> None:
        self._lock = threading.Lock()
        self._capacity = config.max_buffered_points
        self._chunk = config.batch_points
        self._drop_oldest = config.drop_policy == "drop_oldest"
        self._max_series = config.max_series
        self._chunks: deque[Batch] = deque()  # full chunks, oldest first
        self._tail = Batch()  # the chunk being filled (newest points)
        self._head = 0  # points of the oldest chunk already evicted
        self._count = 0
        self._interned: dict[SeriesKey, SeriesKey] = {}
        self._totals: dict[SeriesKey, float] = {}  # counter series -> cumulative value
        self._last_ts: dict[SeriesKey, int] = {}  # distribution series -> last timestamp used
        self.recorded = 0
        self.drops: dict[str, int] = {}

    @property
    def buffered(self) -> int:
        return self._count

    def _drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + n

    def count_drop(self, reason: str) -> None:
        with self._lock:
            self.recorded += 1
            self._drop(reason)

    def add(self, key: SeriesKey, value: float, ts_ms: int | None) -> bool:
        """Record one point; True when a batch just filled up (wake the sender)."""
        auto_ts = ts_ms is None
        now_ms: int = time.time_ns() // 1_000_000 if ts_ms is None else ts_ms
        kind = key[1]
        with self._lock:
            self.recorded += 1
            interned = self._interned.get(key)
            if interned is None:
                if len(self._interned) >= self._max_series:
                    self._interned.clear()  # only sharing is lost; buffered points keep their keys
                interned = self._interned[key] = key
            key = interned
            if kind == RUNNING_COUNTER:  # counter(): the point carries the running total
                total = self._totals.get(key)
                if total is None:
                    if len(self._totals) >= self._max_series:
                        self._drop("series_limit")
                        return False
                    total = 0.0
                value = self._totals[key] = total + value
            elif kind == _DISTRIBUTION and auto_ts:  # one sample per (series, ms) is stored
                last = self._last_ts.get(key)
                if last is not None and now_ms <= last:
                    if last + 1 > now_ms + MAX_DISTRIBUTION_SKEW_MS:
                        self._drop("distribution_skew")
                        return False
                    now_ms = last + 1
                elif last is None and len(self._last_ts) >= self._max_series:
                    self._last_ts.clear()  # only collision avoidance is lost
                self._last_ts[key] = now_ms
            if self._count >= self._capacity:
                if not self._drop_oldest:
                    self._drop("buffer_full")
                    return False
                self._evict_oldest()
            tail = self._tail
            tail.keys.append(key)
            tail.timestamps_ms.append(now_ms)
            tail.values.append(value)
            self._count += 1
            if len(tail.keys) >= self._chunk:
                self._chunks.append(tail)
                self._tail = Batch()
                return True
            return False

    def _evict_oldest(self) -> None:
        oldest = self._chunks[0] if self._chunks else self._tail
        self._head += 1
        self._count -= 1
        self._drop("buffer_full")
        if self._head >= len(oldest):
            if self._chunks:
                self._chunks.popleft()
            else:
                self._tail = Batch()
            self._head = 0

    def take(self, partial: bool) -> Batch | None:
        """The oldest full batch; with ``partial`` also a not yet full one. None if none."""
        with self._lock:
            if self._chunks:
                batch = self._chunks.popleft()
            elif partial and self._tail.keys:
                batch, self._tail = self._tail, Batch()
            else:
                return None
            head, self._head = self._head, 0
            self._count -= len(batch) - head
        return batch.tail_from(head)

    def discard_all(self, reason: str) -> int:
        with self._lock:
            n = self._count
            self._chunks.clear()
            self._tail = Batch()
            self._head = self._count = 0
            if n:
                self._drop(reason, n)
        return n


def series_key(name: str, kind: int, tags: Mapping[str, object] | None) -> SeriesKey:
    """The buffer's key of one series (``kind`` may be RUNNING_COUNTER)."""
    items = tuple(sorted((k, v if type(v) is str else str(v)) for k, v in tags.items())) if tags else ()
    return (name, kind, items)


class BatchEncoder:
    """Turns buffered points into one WriteRequest; label bytes cached per series.

    Names are sanitised like the other non-Prometheus protocols
    (``metricsflow.ingest.names``): ``http.requests`` becomes ``http_requests``.
    """

    def __init__(self, config: ClientConfig) -> None:
        self._default_tags = dict(config.default_tags)
        self._labels: dict[SeriesKey, bytes] = {}
        self._max = config.max_series

    def _label_bytes(self, key: SeriesKey) -> bytes:
        cached = self._labels.get(key)
        if cached is None:
            if len(self._labels) >= self._max:
                self._labels.clear()
            labels = {sanitize_label_name(k): v for k, v in self._default_tags.items()}
            labels.update((sanitize_label_name(k), v) for k, v in key[2])
            labels = {k: v for k, v in labels.items() if v}  # "" means "no label" (Prometheus)
            labels[METRIC_NAME_LABEL] = sanitize_metric_name(key[0])
            kind = key[1] & 0xFF  # RUNNING_COUNTER is a COUNTER on the wire
            cached = self._labels[key] = encode_labels(labels) + bytes((0x30, kind))  # Series.kind (field 6)
        return cached

    def encode(self, batch: Batch) -> bytes:
        index: dict[SeriesKey, int] = {}
        codes = np.fromiter((index.setdefault(k, len(index)) for k in batch.keys), np.int64, len(batch))
        ts = np.frombuffer(batch.timestamps_ms, dtype=np.int64)
        values = np.frombuffer(batch.values, dtype=np.float64)
        if len(index) > 1:
            order = np.argsort(codes, kind="stable")  # keeps each series' points in recording order
            ts, values = ts[order], values[order]
            bounds = np.cumsum(np.bincount(codes, minlength=len(index)))
        else:
            bounds = np.array([len(batch)])
        series = []
        lo = 0
        for key, hi in zip(index, bounds.tolist(), strict=True):
            series.append(encode_series(self._label_bytes(key), ts[lo:hi], values[lo:hi]))
            lo = hi
        return encode_write_request(series)


def backoff_delay_s(attempt: int, base_s: float, cap_s: float, retry_after_s: float | None = None,
                    rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter (AWS architecture blog, 2015).

    ``uniform(0, min(cap, base·2^attempt))``; a server's Retry-After is a floor:
    the result is never shorter than it (and also capped by ``cap_s``).
    """
    ceiling = min(cap_s, base_s * (2.0 ** min(attempt, 62)))
    delay = rand() * ceiling
    if retry_after_s is not None and retry_after_s > delay:
        delay = min(retry_after_s, cap_s)
    return delay


def snapshot(recorder: Recorder, counts: _Counts) -> ClientStats:
    drops = dict(recorder.drops)
    for reason, n in counts.drops.items():
        drops[reason] = drops.get(reason, 0) + n
    return ClientStats(
        recorded=recorder.recorded, sent=counts.sent, accepted=counts.accepted, rejected=counts.rejected,
        dropped=sum(drops.values()), retries=counts.retries, errors=counts.errors, requests=counts.requests,
        buffered=recorder.buffered, dropped_by_reason=drops, last_error=counts.last_error)
