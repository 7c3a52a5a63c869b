"""The one insert path every protocol ends in: validate, hash, group, ship.

Each protocol handler parses its wire format into a ``ParseResult`` and calls
``IngestPipeline.accept``; nothing protocol-specific happens past that point.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from metricsflow import series_batch
from metricsflow.collector import metrics
from metricsflow.collector.kafka_writer import KafkaWriter, Message
from metricsflow.collector.validation import Limits, check_labels, check_tenant, validate
from metricsflow.config import Settings
from metricsflow.errors import InvalidInput
from metricsflow.ingest.label_sets import LABEL_SETS_KEPT
from metricsflow.model import ParseResult, Rejection, SampleColumns, SeriesSamples, UniformRuns
from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.pointbatch import DECIMAL_FORMAT_VERSION, FORMAT_VERSION, decimal_values, encode_columns
from metricsflow.samples import sort_and_dedup
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
    """Series ids already announced on mf.series by this collector, at most ``capacity``.

    Two generations instead of an LRU: a hit in the old one moves the id to the
    current one, and when the current one is full it becomes the old one. An
    ordered-dict LRU paid a method call and a ``move_to_end`` per series of every
    request; this pays one dict probe. Forgetting an id only re-announces it.
    """

    def __init__(self, capacity: int) -> None:
        self._current: set[int] = set()
        self._old: set[int] = set()
        self._generation = max(1, capacity // 2)

    def __contains__(self, sid: int) -> bool:
        return sid in self._current or self._promote(sid)

    def missing(self, sids: list[int]) -> list[int]:
        """The ids of ``sids`` not announced yet, in order (repeats kept)."""
        current = self._current
        if current.issuperset(sids):  # the steady write: one pass in C instead of a probe per id in Python
            return []
        return [sid for sid in sids if sid not in current and not self._promote(sid)]

    def _promote(self, sid: int) -> bool:
        if sid in self._old:
            self.add(sid)
            return True
        return False

    def add(self, sid: int) -> None:
        self._current.add(sid)
        if len(self._current) >= self._generation:
            self._old, self._current = self._current, set()


# What the cache knows of a label set: why it is refused (or None), its series id and partition.
LabelSetInfo = tuple[Rejection | None, int, int]


class _RequestSeries(NamedTuple):
    """A steady request's series as ``_keep`` found them, none refused (never changed once made)."""

    labels: list[dict[str, str]]  # held: while the entry is kept no other dict can take their ids
    sids: list[int]
    parts: list[int]
    sid_array: np.ndarray  # the same as arrays, for the point messages (~100 µs per write made from lists)
    part_array: np.ndarray


class _LabelSetCache:
    """(tenant, label items as parsed) → (why refused or None, series id, partition).

    Clients send the same label sets request after request; checking names with
    regexes and hashing the canonical bytes was a third of the collector's CPU
    (perf/flamegraphs/S_grpc_collector.top.txt). A hit costs one flat tuple of
    the names then the values (474 ns for 11 labels against 789 ns for a tuple
    of item pairs; label strings cache their own hashes) and one dict probe.
    One dict per tenant; bounded: all are dropped when together full.
    """

    def __init__(self, limits: Limits, partitions: int, capacity: int = 500_000) -> None:
        self._limits = limits
        self._partitions = partitions
        self._capacity = capacity
        self._size = 0
        self._tenants: dict[str, dict[tuple[str, ...], LabelSetInfo]] = {}
        # By the identity of a labels dict a parser hands out again for the same label set
        # (``ParseResult.shared_labels``): one probe by ``id`` instead of building and hashing a
        # tuple of 22 strings (121 against 721 ns for 11 labels). An entry holds its dict, so no
        # other object can have that id while it is here (the ``is`` check says so in the code).
        # Bounded by what the parser keeps: past it, an entry would only keep a dict alive.
        self._shared: dict[str, dict[int, tuple[dict[str, str], LabelSetInfo]]] = {}
        self._shared_size = 0
        self._shared_capacity = LABEL_SETS_KEPT
        # A steady client sends the same series in the same order request after request: by the
        # identities of such a request's labels dicts (in order), its series ids and partitions, kept
        # only when none was refused. One probe per request instead of one per series (the loop was
        # ~20 % of the pipeline's CPU on the M load). An entry holds its dicts, so the ids stay
        # theirs; bounded by the series held, like the parser's label sets.
        self._requests: dict[tuple[str, tuple[int, ...]], _RequestSeries] = {}
        self._requests_size = 0

    @staticmethod
    def key(labels: dict[str, str]) -> tuple[str, ...]:
        # Names then values: two dicts give the same key iff they have the same items in the same order.
        return (*labels, *labels.values())

    def entries(self, tenant: str) -> dict[tuple[str, ...], LabelSetInfo]:
        """The tenant's entries, to probe with ``key``; on a miss call ``miss``."""
        entries = self._tenants.get(tenant)
        if entries is None:
            entries = self._tenants[tenant] = {}
        return entries

    def shared(self, tenant: str) -> dict[int, tuple[dict[str, str], LabelSetInfo]]:
        """The tenant's entries by labels dict identity, to probe with ``id(labels)``; on a miss call ``share``."""
        shared = self._shared.get(tenant)
        if shared is None:
            shared = self._shared[tenant] = {}
        return shared

    def share(self, tenant: str, labels: dict[str, str], info: LabelSetInfo) -> None:
        if self._shared_size >= self._shared_capacity:
            for shared in self._shared.values():
                shared.clear()
            self._shared.clear()
            self._shared_size = 0
        self.shared(tenant)[id(labels)] = (labels, info)
        self._shared_size += 1

    def request(self, tenant: str, ids: tuple[int, ...]) -> _RequestSeries | None:
        """A steady request's series ids and partitions kept by ``keep_request``, by its labels dicts' ids."""
        return self._requests.get((tenant, ids))

    def keep_request(self, tenant: str, ids: tuple[int, ...], labels: list[dict[str, str]], sids: list[int],
                     parts: list[int]) -> None:
        if len(ids) > self._shared_capacity:  # alone over the bound: not kept
            return
        if self._requests_size + len(ids) > self._shared_capacity:
            self._requests.clear()
            self._requests_size = 0
        self._requests[(tenant, ids)] = _RequestSeries(list(labels), sids, parts, np.array(sids, dtype=np.uint64),
                                                       np.array(parts, dtype=np.intp))
        self._requests_size += len(ids)

    def lookup(self, tenant: str, labels: dict[str, str]) -> LabelSetInfo:
        hit = self.entries(tenant).get(self.key(labels))
        return hit if hit is not None else self.miss(tenant, labels)

    def miss(self, tenant: str, labels: dict[str, str]) -> LabelSetInfo:
        bad = check_labels(labels, self._limits)
        sid = series_id(tenant, labels) if bad is None else 0
        info = (bad, sid, partition_for(sid, self._partitions))
        if self._size >= self._capacity:
            # Emptied in place, then forgotten: a caller still holding one only misses.
            for entries in self._tenants.values():
                entries.clear()
            self._tenants.clear()
            self._size = 0
        self.entries(tenant)[self.key(labels)] = info
        self._size += 1
        return info


@dataclass(slots=True)
class _Kept:
    """The storable part of one request: series in request order and their points laid end to end."""

    series: Sequence[SeriesSamples]  # labels valid, at least one point in the accept window
    sids: list[int]
    parts: list[int]
    lengths: np.ndarray  # int64, points per kept series (each sorted by time, repeats dropped)
    timestamps_ms: np.ndarray  # int64, every kept point, series after series
    values: np.ndarray  # float64, likewise
    accepted: int  # points in the window, counted before repeats were dropped (as always)
    rejections: list[Rejection]
    sid_array: np.ndarray | None = None  # ``sids`` and ``parts`` as arrays: a known request's, kept with it
    part_array: np.ndarray | None = None


class IngestPipeline:
    def __init__(self, settings: Settings, writer: KafkaWriter) -> None:
        self._settings = settings
        self._limits = Limits.from_settings(settings)
        self._writer = writer
        self._points_topic = settings.topic("points")
        self._series_topic = settings.topic("series")
        self._announced = _RecentSeries(1_000_000)
        self._label_sets = _LabelSetCache(self._limits, settings.partitions)
        # Group commit: requests kept while ``writes_in_flight`` writes are out wait here and go in the next.
        self._waiting: list[tuple[str, _Kept, asyncio.Future[None]]] = []
        self._writes: set[asyncio.Task[None]] = set()
        self._max_writes = settings.collector_writes_in_flight
        self._linger_s = settings.collector_linger_ms / 1000
        self._linger_points = settings.collector_linger_points
        self._waiting_points = 0
        self._waiting_since = 0.0  # loop time the oldest waiting request arrived
        self._linger_timer: asyncio.TimerHandle | None = None

    def check_tenant(self, tenant: str) -> None:
        bad = check_tenant(tenant, self._settings.tenants)
        if bad is not None:
            raise InvalidInput(bad.reason, bad.detail)

    async def accept(self, tenant: str, parsed: ParseResult, protocol: str,
                     received: float | None = None) -> WriteOutcome:
        """Store what is valid in ``parsed``; raises BackendUnavailable if Kafka does not ack in time.

        ``received`` (``time.perf_counter()`` when the body was in, before parsing) starts the ack histogram.
        """
        started = time.perf_counter() if received is None else received
        self.check_tenant(tenant)
        now_ms = int(time.time() * 1000)
        kept = self._keep(tenant, parsed.series, now_ms, parsed.shared_labels, parsed.columns)
        rejections = parsed.rejections + kept.rejections
        if kept.sids:
            await self._written(tenant, kept)
        rejected = sum(r.points for r in rejections)
        metrics.POINTS_ACCEPTED.labels(protocol).inc(kept.accepted)
        for r in rejections:
            metrics.POINTS_REJECTED.labels(protocol, r.reason).inc(r.points)
        metrics.ACK_SECONDS.labels(protocol).observe(time.perf_counter() - started)
        return WriteOutcome(kept.accepted, rejected, rejections[:MAX_REASONS])

    async def _written(self, tenant: str, kept: _Kept) -> None:
        """Return once ``kept`` is in Kafka (BackendUnavailable if not in time): written with whatever waits.

        A request that finds a write slot free is written at once, so a quiet collector
        adds no wait; a busy one writes the requests of a Kafka round trip together.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._waiting:
            self._waiting_since = loop.time()
        self._waiting.append((tenant, kept, done))
        self._waiting_points += kept.accepted
        self._maybe_start_write()
        await done

    def _maybe_start_write(self) -> None:
        """Start a write of the waiting requests if a slot is free and they need not linger for more."""
        if not self._waiting or len(self._writes) >= self._max_writes:
            return
        if self._linger_s and self._waiting_points < self._linger_points:
            loop = asyncio.get_running_loop()
            due = self._waiting_since + self._linger_s
            if loop.time() < due:
                if self._linger_timer is None:
                    self._linger_timer = loop.call_at(due, self._lingered)
                return
        self._start_write()

    def _lingered(self) -> None:
        self._linger_timer = None
        self._maybe_start_write()

    def _start_write(self) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        group, self._waiting, self._waiting_points = self._waiting, [], 0
        task = asyncio.ensure_future(self._write(group))
        self._writes.add(task)
        task.add_done_callback(self._write_done)

    def _write_done(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        self._maybe_start_write()

    async def _write(self, group: list[tuple[str, _Kept, asyncio.Future[None]]]) -> None:
        try:
            messages, new_series = self._build_messages([(tenant, kept) for tenant, kept, _ in group],
                                                        int(time.time() * 1000))
            writing = time.perf_counter()
            await self._writer.write(messages)
            metrics.KAFKA_WRITE_SECONDS.observe(time.perf_counter() - writing)
            metrics.REQUESTS_PER_WRITE.observe(len(group))
        except BaseException as exc:  # every request of the group answers with it (none was acknowledged)
            for _, _, done in group:
                if not done.done():
                    done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for sid in new_series:
            self._announced.add(sid)
        metrics.SERIES_ANNOUNCED.inc(len(new_series))
        for _, _, done in group:
            if not done.done():  # its request may have gone (cancelled): the points are stored anyway
                done.set_result(None)

    def _keep(self, tenant: str, series: Sequence[SeriesSamples], now_ms: int, shared_labels: bool = False,
              columns: SampleColumns | None = None) -> _Kept:
        """Validate the request: one cache probe per series, the time checks once per request.

        The common request (every point in the accept window, every series in time
        order) costs one label-set probe per series and a few numpy calls per
        request; a known client's steady request (the same labels dicts in the same
        order, none refused) one probe for all its series. With the parser's
        ``columns`` (``ParseResult.columns``) no series' column is touched one by one.
        Any point outside the window sends the request down the per-series
        ``validate``, which words the rejections series by series.
        """
        entries = self._label_sets.entries(tenant)
        miss = self._label_sets.miss
        shared = self._label_sets.shared(tenant) if shared_labels else None
        share = self._label_sets.share
        sids: list[int] = []
        parts: list[int] = []
        refused: list[int] = []  # indexes into series
        rejections: list[Rejection] = []
        # The steady request's series are read by their labels only: no object per series.
        uniform = isinstance(series, UniformRuns)
        all_labels = series.labels if uniform else [s.labels for s in series]
        ids = tuple(map(id, all_labels)) if uniform and shared is not None else None
        known = self._label_sets.request(tenant, ids) if ids is not None else None
        if known is not None:
            sids, parts = known.sids, known.parts
            all_labels = []  # every series known and kept
        for i, labels in enumerate(all_labels):
            hit = shared.get(id(labels)) if shared is not None else None
            if hit is not None and hit[0] is labels:
                info = hit[1]
            else:
                info = entries.get((*labels, *labels.values()))  # _LabelSetCache.key, inlined
                if info is None:
                    info = miss(tenant, labels)
                if shared is not None:
                    share(tenant, labels, info)
            bad, sid, part = info
            if bad is not None:
                rejections.append(Rejection(bad.reason, bad.detail, len(series[i])))
                refused.append(i)
                continue
            sids.append(sid)
            parts.append(part)
        if ids is not None and known is None and not refused:
            self._label_sets.keep_request(tenant, ids, all_labels, sids, parts)
        if not sids:
            return _Kept([], [], [], _NO_LENGTHS, _NO_TIMESTAMPS, _NO_VALUES, 0, rejections)
        if refused:
            dropped = set(refused)
            kept: Sequence[SeriesSamples] = [s for i, s in enumerate(series) if i not in dropped]
        else:
            kept = series
        if columns is not None:
            lengths, timestamps_ms, values = columns.lengths, columns.timestamps_ms, columns.values
            if refused:
                keep = np.ones(len(series), dtype=bool)
                keep[refused] = False
                points = np.repeat(keep, lengths)
                lengths, timestamps_ms, values = lengths[keep], timestamps_ms[points], values[points]
        else:
            lengths = np.fromiter(map(len, kept), dtype=np.int64, count=len(kept))
            timestamps_ms = np.concatenate([s.timestamps_ms for s in kept])
            values = np.concatenate([s.values for s in kept])
        if timestamps_ms.size and (int(timestamps_ms.min()) < now_ms - self._limits.max_past_ms
                                   or int(timestamps_ms.max()) > now_ms + self._limits.max_future_ms):
            return self._keep_per_series(tenant, series, now_ms)
        accepted = int(timestamps_ms.size)
        if not _runs_increase(timestamps_ms, lengths):
            return self._sorted(kept, sids, parts, accepted, rejections)
        arrays = (known.sid_array, known.part_array) if known is not None else (None, None)
        return _Kept(kept, sids, parts, lengths, timestamps_ms, values, accepted, rejections, *arrays)

    def _keep_per_series(self, tenant: str, series: list[SeriesSamples], now_ms: int) -> _Kept:
        """Some points lie outside the accept window: validate series by series (rejections in order)."""
        ok, rejections = validate(series, self._limits, now_ms,
                                  lambda labels: self._label_sets.lookup(tenant, labels)[0])
        sids: list[int] = []
        parts: list[int] = []
        for s in ok:
            _, sid, part = self._label_sets.lookup(tenant, s.labels)
            sids.append(sid)
            parts.append(part)
        return self._sorted(ok, sids, parts, sum(len(s.values) for s in ok), rejections)

    @staticmethod
    def _sorted(kept: list[SeriesSamples], sids: list[int], parts: list[int], accepted: int,
                rejections: list[Rejection]) -> _Kept:
        if not kept:
            return _Kept([], [], [], _NO_LENGTHS, _NO_TIMESTAMPS, _NO_VALUES, 0, rejections)
        runs = [sort_and_dedup(s.timestamps_ms, s.values) for s in kept]
        lengths = np.fromiter((ts.shape[0] for ts, _ in runs), dtype=np.int64, count=len(runs))
        return _Kept(kept, sids, parts, lengths, np.concatenate([ts for ts, _ in runs]),
                     np.concatenate([vs for _, vs in runs]), accepted, rejections)

    def _build_messages(self, group: list[tuple[str, _Kept]], now_ms: int) -> tuple[list[Message], list[int]]:
        """A SeriesBatch per partition of the series not announced yet, then one PointBatch per partition.

        For a group of requests written together: their points are laid out by partition
        as one request's would be (request after request within a partition). Both are
        split at their size caps; the series go first, so a worker knows the labels of a
        series no later than its points.
        """
        messages: list[Message] = []
        all_sids = [sid for _, kept in group for sid in kept.sids]
        new_series = self._announced.missing(all_sids)
        if new_series:
            fresh = set(new_series)
            by_part: dict[int, tuple[list[int], list[bytes]]] = {}
            for tenant, kept in group:
                for s, sid, part in zip(kept.series, kept.sids, kept.parts, strict=True):
                    if sid in fresh:
                        fresh.discard(sid)  # once per write, however often it comes
                        ids, infos = by_part.setdefault(part, ([], []))
                        ids.append(sid)
                        infos.append(series_batch.encode_info(tenant, s.labels, int(s.kind), now_ms))
            for part, (ids, infos) in sorted(by_part.items()):
                for key, value in series_batch.encode_batches(ids, infos):
                    messages.append((self._series_topic, part, key, value))
            new_series = list(dict.fromkeys(new_series))
        if all(kept.sid_array is not None for _, kept in group):  # known requests: their ids as arrays
            sids = np.concatenate([kept.sid_array for _, kept in group])
            parts = np.concatenate([kept.part_array for _, kept in group])
        else:
            sids = np.array(all_sids, dtype=np.uint64)
            parts = np.array([part for _, kept in group for part in kept.parts], dtype=np.intp)
        if len(group) == 1:
            kept = group[0][1]
            lengths, timestamps_ms, values = kept.lengths, kept.timestamps_ms, kept.values
        else:
            lengths = np.concatenate([kept.lengths for _, kept in group])
            timestamps_ms = np.concatenate([kept.timestamps_ms for _, kept in group])
            values = np.concatenate([kept.values for _, kept in group])
        messages.extend(self._point_messages(sids, parts, lengths, timestamps_ms, values, now_ms))
        return messages, new_series

    def _point_messages(self, sids: np.ndarray, parts: np.ndarray, lengths: np.ndarray,
                        timestamps_ms: np.ndarray, values: np.ndarray, now_ms: int) -> list[Message]:
        """One PointBatch per partition (split at its size cap) of the runs given, in their order
        (``sids`` uint64 and ``parts`` intp, one per run)."""
        messages: list[Message] = []
        max_points = self._settings.max_points_per_message
        # Series grouped by partition (given order within each), and their points gathered to match.
        order = np.argsort(parts, kind="stable")
        grouped_lengths = lengths[order]
        grouped_starts = np.cumsum(grouped_lengths) - grouped_lengths
        starts = (np.cumsum(lengths) - lengths)[order]
        gather = np.arange(timestamps_ms.size) + np.repeat(starts - grouped_starts, grouped_lengths)
        timestamps_ms = timestamps_ms[gather]
        values = values[gather]
        decimal = decimal_values(values) if self._settings.point_batch_format == DECIMAL_FORMAT_VERSION else None
        metrics.POINTS_WRITTEN_BY_FORMAT[FORMAT_VERSION if decimal is None else DECIMAL_FORMAT_VERSION].inc(values.size)
        column = values if decimal is None else decimal
        if decimal is not None and decimal.exceptions.size:
            metrics.VALUE_EXCEPTIONS.inc(decimal.exceptions.size)
        series_per_part = np.bincount(parts, minlength=self._settings.partitions).tolist()
        s_at = p_at = 0
        for part, n_series in enumerate(series_per_part):
            if not n_series:
                continue
            sel = order[s_at:s_at + n_series]
            run_lengths = lengths[sel]
            n_points = int(run_lengths.sum())
            for value in encode_columns(sids[sel], run_lengths, timestamps_ms[p_at:p_at + n_points],
                                        column[p_at:p_at + n_points], max_points, now_ms):
                messages.append((self._points_topic, part, None, value))
            s_at += n_series
            p_at += n_points
        return messages


_NO_LENGTHS = np.zeros(0, dtype=np.int64)
_NO_TIMESTAMPS = np.zeros(0, dtype=np.int64)
_NO_VALUES = np.zeros(0, dtype=np.float64)


def _runs_increase(timestamps_ms: np.ndarray, lengths: np.ndarray) -> bool:
    """Whether every run of ``timestamps_ms`` (``lengths`` each) strictly increases: one pass per request."""
    if timestamps_ms.size < 2:
        return True
    rises = timestamps_ms[1:] > timestamps_ms[:-1]
    starts = np.cumsum(lengths)[:-1]  # where runs 1.. begin: the step into them crosses a run boundary
    rises[starts[(starts > 0) & (starts < timestamps_ms.size)] - 1] = True
    return bool(rises.all())
