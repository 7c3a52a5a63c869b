"""Rule evaluation in the stream: partial results per partition, merged by the group's owner.

Every worker loads the same rule files. A group belongs to the partition
``xxh3(file/group) mod partitions``; the active owner of that partition is the
group's *owner*, and the group's alert state lives in that partition of the
``alerts`` table: when the owner dies, the worker that takes the partition over
restores the table from the changelog and continues the same alerts (same
activeAt), without a resolve/fire pair.

Each evaluation time ``t`` (the group's interval grid; a group's task wakes on the
wall-clock tick and when data arrives), in two halves:

Every worker (``send_partials``), for the partitions it owns at that moment:
  1. read from local storage every series the group's rules select at ``t``;
  2. per rule, ``Plan.evaluate_partial`` on those series (selection, per-series
     functions, partial aggregates), in a thread; a rule that reads a series recorded
     by an earlier rule of the group sends its selected raw series instead;
  3. send one ``PartialMessage`` (its partitions, ``t``, one entry per rule) to the
     group's partition of ``rule_partials`` — or store it directly when it owns the group.

The owner (``merge_ready``), on every partial that arrives and every tick:
  1. the ``rule_partials`` table holds the messages per (group, t, partitions); find the
     newest ``t`` after the last evaluation whose messages cover every partition exactly
     once (``exact_cover``);
  2. per rule, ``Plan.merge`` of the covering partials (or the engine over the raw series
     plus the samples earlier rules of this evaluation recorded), then the state machine
     (``evaluate_group``), in a thread;
  3. store the new states (RocksDB + changelog) and the transitions on mf.alerts;
  4. hand notifications to the dispatcher and write the recorded samples, ALERTS and
     ALERTS_FOR_STATE back through the ingest pipeline;
  5. delete the messages of ``t`` and earlier (tombstones); times that never became
     complete are dropped after a horizon and counted.
The state's ``last_evaluation_ms`` makes step 1 idempotent: a replayed or late message
for an evaluated time is ignored, so nothing is counted twice or evaluated twice.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import faust
import numpy as np
import xxhash

from metricsflow.alerting import (
    AlertState,
    EvalOptions,
    EvalResult,
    Group,
    NotificationDispatcher,
    RecordingRule,
    Sample,
    evaluate_group,
    load_rule_files,
)
from metricsflow.alerting import metrics as alert_metrics
from metricsflow.alerting.partials import (
    PartialFormatError,
    PartialMessage,
    RulePartial,
    exact_cover,
    group_prefix,
    parse_table_key,
    reads_recorded,
    table_key,
)
from metricsflow.alerting.query import vector_of
from metricsflow.alerting.state import alert_transitions
from metricsflow.collector.kafka_writer import KafkaWriter
from metricsflow.collector.pipeline import IngestPipeline
from metricsflow.config import Settings
from metricsflow.errors import BackendUnavailable, MetricsflowError
from metricsflow.model import ParseResult, SeriesSamples
from metricsflow.promql import Engine, MemorySource, SeriesData, pushdown, selections
from tables.partition_store import PartitionStore
from tables.storage import WorkerStorage
from web.cluster import PEER_TIMEOUT_S, Cluster, decode_series, encode_series

log = logging.getLogger(__name__)
LOOKBACK_MS = 300_000
# An evaluation time whose partials are still incomplete this long after it is dropped
# (a worker died and the group has not rebalanced yet: about the 10 s session timeout).
MIN_PARTIAL_HORIZON_MS = 10_000
Vector = list[tuple[dict[str, str], float]]
_I64 = struct.Struct(">q")


def group_partition(group: Group, partitions: int) -> int:
    return xxhash.xxh3_64_intdigest(f"{group.file}/{group.name}".encode()) % partitions


def samples_to_series(samples: list[Sample]) -> list[SeriesSamples]:
    by_labels: dict[tuple[tuple[str, str], ...], list[Sample]] = defaultdict(list)
    for s in samples:
        by_labels[tuple(sorted(s.labels.items()))].append(s)
    return [SeriesSamples(dict(key), np.array([s.time_ms for s in group], np.int64),
                          np.array([s.value for s in group], np.float64)) for key, group in by_labels.items()]


async def select_partitions(storage: WorkerStorage, tenant: str, partitions: list[int],
                            sels: list[tuple]) -> MemorySource:
    """The series of ``sels`` stored in exactly ``partitions`` (local reads, no HTTP).

    Reads stay on the event loop (the head is not safe against a concurrent append), but
    yield after every selection and partition: ~1 CPU-s of reads for a 100-rule group over
    10k series held the loop for seconds (perf/RESULTS.md, "Alerting").
    """
    source = MemorySource()
    for matchers, start, end, *_ in sels:
        for p in partitions:
            index = storage.state(p).index
            sids = index.select(tenant, matchers)
            for sid, (ts, vals) in zip(sids, storage.read_many(p, sids, start, end), strict=True):
                if ts.size:
                    source.add_keyed(index.label_key(sid), ts, vals)
            await asyncio.sleep(0)
    return source


class PartialEvaluationError(MetricsflowError):
    """A rule's partials cannot be merged (a worker's part failed, or workers load different rules)."""


def dependent_rules(group: Group) -> list[bool]:
    """Per rule: does it read a series that an earlier recording rule of the group records?

    Prometheus runs a group's rules in order and appends each rule's output before the
    next one runs; such a rule must see this evaluation's recorded value, which no worker
    has yet, so its raw series go to the owner, which adds the recorded samples first.
    """
    recorded: list[str] = []
    out = []
    for rule in group.rules:
        try:
            sels = [m for m, _a, _b in selections(rule.expr, 0, 0, 0)]
        except Exception:  # refused at evaluation, with the engine's message
            sels = []
        out.append(reads_recorded(sels, recorded))
        if isinstance(rule, RecordingRule):
            recorded.append(rule.name)
    return out


class GroupPlans:
    """How one group's rules split: what a worker computes for its partitions, and how the owner merges.

    Shared by every evaluation of the group; ``pushdown.plan`` parses each expression once.
    """

    def __init__(self, group: Group) -> None:
        self.group = group
        self.dependent = dependent_rules(group)
        self._plans: dict[str, pushdown.Plan] = {}

    def plan(self, expr: str) -> pushdown.Plan:
        plan = self._plans.get(expr)
        if plan is None:
            plan = self._plans[expr] = pushdown.plan(expr, lookback_ms=LOOKBACK_MS)
        return plan

    def selections(self, ts: int) -> list[tuple]:
        """Every distinct selection of the group's rules at ``ts`` (rules often share one)."""
        unique: set[tuple] = set()
        for i, rule in enumerate(self.group.rules):
            try:
                if self.dependent[i]:
                    sels = selections(rule.expr, ts, ts, 0, LOOKBACK_MS)
                else:
                    sels = self.plan(rule.expr).selections(ts, ts, 0)
            except Exception:  # reported per rule by partials()
                continue
            unique.update((tuple(m), *rest) for m, *rest in sels)
        return [(list(m), *rest) for m, *rest in unique]

    def partials(self, ts: int, source: MemorySource) -> list[RulePartial]:
        """One entry per rule over ``source`` (some partitions' series); touches nothing else."""
        out = []
        for i, rule in enumerate(self.group.rules):
            key = self.group.rule_key(i)
            try:
                if self.dependent[i]:
                    series: list[SeriesData] = []
                    for m, a, b in selections(rule.expr, ts, ts, 0, LOOKBACK_MS):
                        series.extend(source.select(m, a, b))
                    out.append(RulePartial(key, "series", encode_series(series)))
                else:
                    out.append(RulePartial(key, "partial", self.plan(rule.expr).evaluate_partial(source, ts, ts, 0)))
            except Exception as exc:  # the owner records it as the rule's error
                out.append(RulePartial(key, "error", (str(exc) or type(exc).__name__).encode()))
        return out

    def rule_query(self, msgs: list[PartialMessage], injected: list[Sample]) -> Callable[[int, str, int], Vector]:
        """``evaluate_group``'s ``rule_query`` over the messages of one exact cover.

        ``injected`` fills, while the group runs, with the samples of the rules before.
        """
        g = self.group

        def rule_query(i: int, expr: str, ts: int) -> Vector:
            parts = [m.rules[i] if i < len(m.rules) else None for m in msgs]
            kinds = set()
            for rp in parts:
                if rp is None or rp.rule_key != g.rule_key(i):
                    raise PartialEvaluationError("workers evaluate different rule files for this group")
                if rp.kind == "error":
                    raise PartialEvaluationError(rp.data.decode(errors="replace"))
                kinds.add(rp.kind)
            if kinds == {"partial"}:
                return vector_of(self.plan(expr).merge([rp.data for rp in parts if rp], ts, ts, 0))
            if kinds != {"series"}:
                raise PartialEvaluationError(f"workers sent different kinds of partial: {sorted(kinds)}")
            source = MemorySource()
            for rp in parts:
                if rp is not None:
                    source.add_series(decode_series(rp.data))
            for s in injected:  # this evaluation's recorded samples (and ALERTS), as Prometheus appends them
                source.add(s.labels, [s.time_ms], [s.value])
            return vector_of(Engine(source, lookback_ms=LOOKBACK_MS).instant(expr, ts))

        return rule_query


class WatermarkGate:
    """When a worker may compute its partial for evaluation time ``t``.

    Once each of its partitions has consumed every mf.points record that existed at ``t``
    (the end offsets, read at or after ``t``), so nothing acknowledged before ``t`` is
    missed; or, when consumption lags, after ``wait_ms`` past ``t`` with what is there
    (counted). Event time so advances with the data, and with the wall clock when none comes.
    """

    def __init__(self, end_offsets: Callable[[list[int]], Awaitable[dict[int, int]]] | None,
                 consumed: Callable[[int], int], wait_ms: int) -> None:
        self._end_offsets = end_offsets
        self._consumed = consumed
        self._wait_ms = wait_ms
        self._targets: dict[tuple[int, tuple[int, ...]], asyncio.Future] = {}  # shared by groups of one t
        self._observed: set[tuple[int, tuple[int, ...]]] = set()

    async def due(self, t: int, parts: list[int], now_ms: int) -> bool:
        if self._end_offsets is None:
            return True
        key = (t, tuple(parts))
        task = self._targets.get(key)
        if task is None:
            for old in [k for k in self._targets if k[0] < t - 600_000]:
                del self._targets[old]
                self._observed.discard(old)
            task = self._targets[key] = asyncio.ensure_future(self._read(parts))
        try:
            read_at, targets = await asyncio.shield(task)
        except Exception as exc:  # no end offsets (rebalancing, broker away): do not hold rules back
            log.debug("end offsets for %s not read: %s", parts, exc)
            del self._targets[key]
            return True
        behind = [p for p in parts if self._consumed(p) + 1 < targets.get(p, 0)]
        if not behind:
            if key not in self._observed:
                self._observed.add(key)
                alert_metrics.RULE_WATERMARK_WAIT_SECONDS.observe(max(0.0, time.monotonic() - read_at))
            return True
        if now_ms >= t + self._wait_ms:
            for p in behind:
                alert_metrics.RULE_PARTIALS_BEHIND.labels(str(p)).inc()
            return True
        return False

    async def _read(self, parts: list[int]) -> tuple[float, dict[int, int]]:
        assert self._end_offsets is not None
        read_at = time.monotonic()
        # A broker that does not answer must not hold the rules longer than the wait itself.
        return read_at, await asyncio.wait_for(self._end_offsets(parts), max(0.5, self._wait_ms / 1000))


class RuleRunner:
    def __init__(self, settings: Settings, store: PartitionStore, partials: PartitionStore, storage: WorkerStorage,
                 cluster: Cluster, owned: Callable[[], set[int]],
                 end_offsets: Callable[[list[int]], Awaitable[dict[int, int]]] | None = None) -> None:
        loaded = load_rule_files(settings.rules_files)
        for err in loaded.errors:
            log.error("rule refused: %s", err)
        self.errors = [str(e) for e in loaded.errors]
        self.groups: list[Group] = list(loaded.groups)
        self._by_key = {self._gkey(g): g for g in self.groups}
        self._plans = {self._gkey(g): GroupPlans(g) for g in self.groups}
        self._settings = settings
        self._store = store
        self._partials = partials
        self._storage = storage
        self._cluster = cluster
        self._owned = owned
        self._writer = KafkaWriter(settings.kafka_bootstrap, ack_timeout_s=10.0, compression=settings.kafka_compression)
        self._pipeline = IngestPipeline(settings, self._writer)
        self.dispatcher: NotificationDispatcher | None = None
        self._options = EvalOptions(external_url=settings.external_url or settings.worker_url)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rules")
        self._next_send: dict[str, int] = {}
        self._waiting: dict[str, int] = {}  # group → evaluation time whose partial waits for the watermark
        self._gate = WatermarkGate(end_offsets, storage.consumed_offset if storage is not None else lambda p: -1,
                                   int(settings.rule_watermark_wait_s * 1000))
        self._owning: set[str] = set()  # groups this worker evaluated since it last gained them
        self._evaluated: dict[str, int] = {}  # group → last evaluated t seen here (the table has the truth)
        self.last_result: dict[str, EvalResult] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._closed = False

    @staticmethod
    def _gkey(g: Group) -> str:
        return f"{g.file};{g.name}"

    def partition_of(self, g: Group) -> int:
        return group_partition(g, self._settings.partitions)

    def owned_groups(self) -> list[Group]:
        owned = self._owned()
        return [g for g in self.groups if self.partition_of(g) in owned]

    def states_of(self, g: Group) -> dict[str, AlertState]:
        p = self.partition_of(g)
        out = {}
        for i in range(len(g.rules)):
            key = g.rule_key(i)
            raw = self._store.get(p, key.encode())
            if raw is not None:
                out[key] = AlertState.from_bytes(raw)
        return out

    def local_states(self) -> dict[str, AlertState]:
        out: dict[str, AlertState] = {}
        for g in self.owned_groups():
            out.update(self.states_of(g))
        return out

    def _last_key(self, g: Group) -> bytes:
        # Beside the rules' states in the alerts table; a NUL never occurs in a rule key.
        return self._gkey(g).encode() + b"\x00last_evaluation_ms"

    def last_evaluated(self, g: Group) -> int:
        """The newest evaluated time of ``g`` (one 8-byte read, not every rule's state)."""
        raw = self._store.get(self.partition_of(g), self._last_key(g))
        if raw is not None and len(raw) == 8:
            return max(self._evaluated.get(self._gkey(g), 0), _I64.unpack(raw)[0])
        states = self.states_of(g).values()  # state written before this key existed
        return max([self._evaluated.get(self._gkey(g), 0), *(s.last_evaluation_ms for s in states)])

    def notify_data_arrived(self) -> None:
        for wake in self._wakes.values():
            wake.set()

    async def run(self) -> None:
        """Send partials for, and (where owned) evaluate, every group, each in its own task.

        A slow group must not delay a fast one (seen with a 100-rule group next to a
        1 s group: the fast one ran every 2.3 s). Each task wakes early when data or a partial arrives.
        """
        if not self.groups:
            return
        self._writer.start()
        self.dispatcher = NotificationDispatcher(list(self._settings.alertmanager_urls),
                                                 list(self._settings.webhook_urls),
                                                 external_url=self._options.external_url)
        await asyncio.gather(*(self._run_group(g) for g in self.groups))

    async def _run_group(self, g: Group) -> None:
        key = self._gkey(g)
        wake = self._wakes.setdefault(key, asyncio.Event())
        while not self._closed:
            wake.clear()
            now = int(time.time() * 1000)
            t = now // g.interval_ms * g.interval_ms
            parts = sorted(self._owned())
            if not parts:
                self._waiting.pop(key, None)
            elif t >= self._next_send.get(key, 0) or key in self._waiting:
                t_eval = self._waiting.setdefault(key, t)
                try:
                    if await self._gate.due(t_eval, parts, now):
                        del self._waiting[key]
                        await self.send_partials(g, t_eval, parts)
                        self._next_send[key] = t_eval + g.interval_ms
                except BackendUnavailable as exc:
                    log.warning("group %s: partials for %d not sent: %s", g.name, t_eval, exc)
                except Exception:  # one broken evaluation must not end the group's schedule
                    if self._closed:
                        return  # the pool is shut down during the worker's shutdown
                    log.exception("group %s: partials for %d failed", g.name, t_eval)
                    self._next_send[key] = t_eval + g.interval_ms
            if self.partition_of(g) in self._owned():
                if key not in self._owning:
                    self._owning.add(key)
                    states = self.states_of(g)
                    firing = sum(a.state == "firing" for s in states.values() for a in s.alerts.values())
                    log.info("group %s: evaluated here from now (partition %d): %d rule states, %d alerts firing, "
                             "last evaluation %d", g.name, self.partition_of(g), len(states), firing,
                             self.last_evaluated(g))
                try:
                    await self.merge_ready(g)
                except BackendUnavailable as exc:
                    log.warning("group %s not evaluated: %s", g.name, exc)
                except Exception:
                    if self._closed:
                        return
                    log.exception("group %s: evaluation failed", g.name)
            else:
                self._owning.discard(key)
            try:
                await asyncio.wait_for(wake.wait(), self._settings.rule_tick_s)
            except TimeoutError:
                pass

    # -- every worker: the part its partitions hold ----------------------------------------------

    async def send_partials(self, g: Group, t: int, parts: list[int]) -> PartialMessage:
        ts = t - g.query_offset_ms
        plans = self._plans[self._gkey(g)]
        source = await select_partitions(self._storage, self._settings.rules_tenant, parts,
                                         plans.selections(ts))  # step 1
        if not set(parts) <= self._owned():
            raise BackendUnavailable(f"partitions {parts} moved while they were read")  # the next tick retries
        loop = asyncio.get_running_loop()
        rules = await loop.run_in_executor(self._pool, plans.partials, ts, source)  # step 2
        msg = PartialMessage(self._gkey(g), t, tuple(parts), self._settings.worker_id, tuple(rules))
        value = msg.to_bytes()
        owner = self.partition_of(g)
        if owner in self._owned():  # step 3
            self.accept_partial(owner, value)
        else:
            topic = self._settings.topic("rule_partials")
            await self._writer.write([(topic, owner, msg.group_key.encode(), value)])
        for p in parts:
            alert_metrics.RULE_PARTIALS_SENT.labels(str(p)).inc()
        return msg

    # -- the owner: partials meet, the rest of the rule runs -------------------------------------

    def accept_partial(self, partition: int, value: bytes) -> None:
        """Store one partial in the rule_partials table (idempotent: same coverage, same key)."""
        try:
            msg = PartialMessage.from_bytes(value)
        except PartialFormatError as exc:
            alert_metrics.RULE_PARTIALS_REFUSED.labels("unreadable").inc()
            log.warning("rule partial refused: %s", exc)
            return
        g = self._by_key.get(msg.group_key)
        if g is None or self.partition_of(g) != partition:
            alert_metrics.RULE_PARTIALS_REFUSED.labels("unknown_group").inc()
            return
        if msg.time_ms <= self._evaluated.get(msg.group_key, 0):
            alert_metrics.RULE_PARTIALS_REFUSED.labels("late").inc()
            return
        self._partials.put(partition, table_key(msg.group_key, msg.time_ms, msg.partitions), value)
        alert_metrics.RULE_PARTIALS_RECEIVED.labels(g.key).inc()
        wake = self._wakes.get(msg.group_key)
        if wake is not None:
            wake.set()

    async def merge_ready(self, g: Group) -> EvalResult | None:
        key = self._gkey(g)
        p = self.partition_of(g)
        prefix = group_prefix(key)
        pending: dict[int, list[tuple[bytes, tuple[int, ...]]]] = defaultdict(list)
        for k, _v in self._partials.scan(p, prefix, prefix[:-1] + b"\x01"):
            t, parts = parse_table_key(k, key)
            pending[t].append((k, parts))
        if not pending:
            return None
        last = before = self.last_evaluated(g)
        result = None
        for t in sorted(pending, reverse=True):  # step 1
            if t <= last:
                break
            cover = exact_cover([parts for _k, parts in pending[t]], self._settings.partitions)
            if cover is not None:
                raw = [self._partials.get(p, pending[t][i][0]) for i in cover]
                if any(v is None for v in raw):
                    continue  # only this task deletes; kept for safety: never merge less than a cover
                msgs = [PartialMessage.from_bytes(v) for v in raw if v is not None]
                result = await self.evaluate(g, t, msgs)  # steps 2-4
                last = t
                break
        # A worker may wait MF_RULE_WATERMARK_WAIT_S before it sends: keep the others' partials longer.
        wait_ms = int(self._settings.rule_watermark_wait_s * 1000)
        horizon = int(time.time() * 1000) - max(3 * g.interval_ms, MIN_PARTIAL_HORIZON_MS, wait_ms + 5000)
        for t, items in pending.items():  # step 5
            if t > last and t >= horizon:
                continue
            if before < t < last:
                alert_metrics.RULE_EVALUATIONS_SKIPPED.labels(g.key, "superseded").inc()
            elif t > last:
                alert_metrics.RULE_EVALUATIONS_SKIPPED.labels(g.key, "incomplete").inc()
                log.warning("group %s: partials for %d covered %s of %d partitions; not evaluated", g.name, t,
                            sorted({q for _k, parts in items for q in parts}), self._settings.partitions)
            for k, _parts in items:
                self._partials.delete(p, k)
        return result

    async def evaluate(self, g: Group, t: int, msgs: list[PartialMessage]) -> EvalResult:
        p = self.partition_of(g)
        before = self.states_of(g)
        injected: list[Sample] = []
        loop = asyncio.get_running_loop()
        tenant = self._settings.rules_tenant

        def template_query(expr: str, ts: int) -> Vector:
            # `query` in a template may read anything: the query API's own scatter-gather.
            sels = selections(expr, ts, ts, 0, LOOKBACK_MS)
            fut = asyncio.run_coroutine_threadsafe(self._cluster.gather(tenant, sels), loop)
            source = fut.result(PEER_TIMEOUT_S + 5)
            for s in injected:
                source.add(s.labels, [s.time_ms], [s.value])
            return vector_of(Engine(source, lookback_ms=LOOKBACK_MS).instant(expr, ts))

        run = partial(evaluate_group, g, template_query, t, before, self._options, injected.extend,
                      rule_query=self._plans[self._gkey(g)].rule_query(msgs, injected))
        result = await loop.run_in_executor(self._pool, run)
        transitions = []
        for key, state in result.states.items():
            self._store.put(p, key.encode(), state.to_bytes())
            transitions += alert_transitions(key, before.get(key), state)
        self._store.put(p, self._last_key(g), _I64.pack(t))
        if transitions:
            # The state must be in its changelog before anyone hears of it: a successor that
            # restored an older state would start the alert again (new activeAt) after kill -9.
            await self._store.flush()
        self._evaluated[self._gkey(g)] = t
        messages = [(self._settings.topic("alerts"), p, k, v) for k, v in transitions]
        if messages:
            await self._writer.write(messages)  # type: ignore[arg-type]
        if self.dispatcher is not None and result.notifications:
            self.dispatcher.submit(result.notifications)
        if result.samples:
            series = samples_to_series(list(result.samples))
            await self._pipeline.accept(tenant, ParseResult(series=series), "rules")
        self.last_result[self._gkey(g)] = result
        return result

    async def close(self) -> None:
        self._closed = True
        if self.dispatcher is not None:
            await self.dispatcher.close()
        await self._writer.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def register_rule_partials_agent(app: faust.App, topic: faust.TopicT, runner: RuleRunner) -> None:
    """The owner's side of the rule_partials topic: each message into the rule_partials table."""

    @app.agent(topic, name="rule-partials")
    async def collect_partials(stream: faust.StreamT) -> None:
        async for event in stream.events():
            runner.accept_partial(event.message.partition, event.value)
