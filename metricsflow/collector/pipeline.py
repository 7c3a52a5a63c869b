"""The one insert path every protocol ends in: validate, hash, group, ship.

Each protocol handler parses its wire format into a ``ParseResult`` and calls
``IngestPipeline.accept``; nothing protocol-specific happens past that point.
"""

from __future__ import annotations

import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field

from metricsflow.collector import metrics
from metricsflow.collector.kafka_writer import KafkaWriter, Message
from metricsflow.collector.validation import Limits, check_labels, check_tenant, sort_and_dedup, validate
from metricsflow.config import Settings
from metricsflow.errors import InvalidInput
from metricsflow.model import ParseResult, Rejection, SeriesSamples
from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.pointbatch import Run, encode_batches
from metricsflow.series_id import partition_for, series_id

MAX_REASONS = 10  # the response lists the first few rejections; the counters have them all


@dataclass(slots=True)
class WriteOutcome:
    accepted: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "status": "success" if self.accepted or not self.rejected else "error",
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejections": [{"reason": r.reason, "detail": r.detail, "points": r.points} for r in self.rejections],
        }

    def to_proto(self) -> pb.WriteResponse:
        return pb.WriteResponse(
            accepted=self.accepted, rejected=self.rejected,
            rejections=[pb.Rejection(reason=r.reason, detail=r.detail, points=r.points) for r in self.rejections])


class _RecentSeries:
    """Bounded LRU of series ids already announced on mf.series by this collector."""

    def __init__(self, capacity: int) -> None:
        self._ids: OrderedDict[int, None] = OrderedDict()
        self._capacity = capacity

    def __contains__(self, sid: int) -> bool:
        if sid in self._ids:
            self._ids.move_to_end(sid)
            return True
        return False

    def add(self, sid: int) -> None:
        self._ids[sid] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


class _LabelSetCache:
    """(tenant, label items as parsed) → (why refused or None, series id).

    Clients send the same label sets request after request; checking names with
    regexes and hashing the canonical bytes was a third of the collector's CPU
    (perf/flamegraphs/S_grpc_collector.top.txt). A dict hit costs the tuple hash,
    and label strings cache their own hashes. Bounded: cleared when full.
    """

    def __init__(self, limits: Limits, capacity: int = 500_000) -> None:
        self._limits = limits
        self._capacity = capacity
        self._entries: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[Rejection | None, int]] = {}

    def lookup(self, tenant: str, labels: dict[str, str]) -> tuple[Rejection | None, int]:
        key = (tenant, tuple(labels.items()))
        hit = self._entries.get(key)
        if hit is None:
            bad = check_labels(labels, self._limits)
            hit = (bad, series_id(tenant, labels) if bad is None else 0)
            if len(self._entries) >= self._capacity:
                self._entries.clear()
            self._entries[key] = hit
        return hit


class IngestPipeline:
    def __init__(self, settings: Settings, writer: KafkaWriter) -> None:
        self._settings = settings
        self._limits = Limits.from_settings(settings)
        self._writer = writer
        self._points_topic = settings.topic("points")
        self._series_topic = settings.topic("series")
        self._announced = _RecentSeries(1_000_000)
        self._label_sets = _LabelSetCache(self._limits)

    def check_tenant(self, tenant: str) -> None:
        bad = check_tenant(tenant, self._settings.tenants)
        if bad is not None:
            raise InvalidInput(bad.reason, bad.detail)

    async def accept(self, tenant: str, parsed: ParseResult, protocol: str) -> WriteOutcome:
        """Store what is valid in ``parsed``; raises BackendUnavailable if Kafka does not ack in time."""
        started = time.perf_counter()
        self.check_tenant(tenant)
        now_ms = int(time.time() * 1000)
        valid, rejections = validate(parsed.series, self._limits, now_ms,
                                     lambda labels: self._label_sets.lookup(tenant, labels)[0])
        rejections = parsed.rejections + rejections
        messages, new_series, accepted = self._build_messages(tenant, valid, now_ms)
        if messages:
            await self._writer.write(messages)
        for sid in new_series:
            self._announced.add(sid)
        metrics.SERIES_ANNOUNCED.inc(len(new_series))
        rejected = sum(r.points for r in rejections)
        metrics.POINTS_ACCEPTED.labels(protocol).inc(accepted)
        for r in rejections:
            metrics.POINTS_REJECTED.labels(protocol, r.reason).inc(r.points)
        metrics.ACK_SECONDS.labels(protocol).observe(time.perf_counter() - started)
        return WriteOutcome(accepted, rejected, rejections[:MAX_REASONS])

    def _build_messages(self, tenant: str, series: list[SeriesSamples],
                        now_ms: int) -> tuple[list[Message], list[int], int]:
        partitions = self._settings.partitions
        runs: dict[int, list[Run]] = defaultdict(list)
        announce: list[Message] = []
        new_series: list[int] = []
        accepted = 0
        for s in series:
            sid = self._label_sets.lookup(tenant, s.labels)[1]
            part = partition_for(sid, partitions)
            ts, values = sort_and_dedup(s.timestamps_ms, s.values)
            runs[part].append((sid, ts, values))
            accepted += s.timestamps_ms.shape[0]
            if sid not in self._announced:
                info = pb.SeriesInfo(tenant=tenant, kind=int(s.kind), first_seen_ms=now_ms,
                                     labels=[pb.Label(name=k, value=v) for k, v in sorted(s.labels.items()) if v])
                announce.append((self._series_topic, part, sid.to_bytes(8, "big"), info.SerializeToString()))
                new_series.append(sid)
        messages = list(announce)
        for part, part_runs in runs.items():
            for value in encode_batches(part_runs, self._settings.max_points_per_message, now_ms):
                messages.append((self._points_topic, part, None, value))
        return messages, new_series, accepted
