"""Rules split over partitions: message format, exact covers, and one semantics with the engine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.alerting import GroupPlans, dependent_rules
from metricsflow.alerting import AlertState, evaluate_group, instant_query_func, load_rule_text
from metricsflow.alerting.partials import (
    PartialFormatError,
    PartialMessage,
    RulePartial,
    exact_cover,
    group_prefix,
    parse_table_key,
    table_key,
)
from metricsflow.promql import Engine, MemorySource

T0 = 1_700_000_000_000
RULES = """
groups:
  - name: split
    interval: 10s
    rules:
      - record: job:x:sum
        expr: sum by (job) (x)
      - alert: TotalHigh
        expr: sum(x) > 50
        labels: {severity: page}
        annotations: {summary: "total {{ $value }}"}
      - alert: RecordedHigh
        expr: job:x:sum > 20
        for: 20s
      - record: host:x:rate1m
        expr: rate(x[1m])
      - alert: TopHosts
        expr: topk(2, x) > 3
      - alert: AvgByJob
        expr: avg by (job) (x) >= 2.5
      - alert: SpreadHigh
        expr: stddev(x) > 1
"""


def _group():
    loaded = load_rule_text(RULES, "rules.yml")
    assert not loaded.errors
    return loaded.groups[0]


def _series(n_hosts: int, t_end: int, scale: float) -> list[tuple[dict[str, str], np.ndarray, np.ndarray]]:
    out = []
    ts = np.arange(t_end - 120_000, t_end + 1, 10_000, dtype=np.int64)
    for h in range(n_hosts):
        labels = {"__name__": "x", "host": f"h{h}", "job": "a" if h % 3 else "b"}
        vals = (h % 5 + 1) * scale + (ts - ts[0]) / 60_000.0 * (h % 2)
        out.append((labels, ts, vals.astype(np.float64)))
    return out


def _split(series, parts: int) -> list[MemorySource]:
    sources = [MemorySource() for _ in range(parts)]
    for i, (labels, ts, vals) in enumerate(series):
        sources[hash(labels["host"]) % parts if i % 7 else i % parts].add(labels, ts, vals)
    return sources


def _union(series) -> MemorySource:
    src = MemorySource()
    for labels, ts, vals in series:
        src.add(labels, ts, vals)
    return src


def test_message_round_trip_and_refusals() -> None:
    msg = PartialMessage("f;g", T0, (0, 2), "w1", (RulePartial("k1", "partial", b"\x00\x01"),
                                                   RulePartial("k2", "series", b""),
                                                   RulePartial("k3", "error", b"bad")))
    assert PartialMessage.from_bytes(msg.to_bytes()) == msg
    data = msg.to_bytes()
    for bad in (b"", data[:3], data[:-1], data.replace(b'"v":1', b'"v":9'), b"\x02\x00\x00\x00{}"):
        with pytest.raises(PartialFormatError):
            PartialMessage.from_bytes(bad)


def test_table_keys_sort_by_time_and_name_the_coverage() -> None:
    keys = [table_key("f;g", t, parts) for t, parts in ((T0 + 1000, (1,)), (T0, (3, 0)), (T0 - 5, ()))]
    assert sorted(keys) == [keys[2], keys[1], keys[0]]
    assert all(k.startswith(group_prefix("f;g")) for k in keys)
    assert parse_table_key(keys[1], "f;g") == (T0, (0, 3))
    assert table_key("f;g", T0, (0, 3)) == table_key("f;g", T0, [3, 0]), "a re-sent coverage overwrites itself"
    assert not table_key("f;g2", T0, (0,)).startswith(group_prefix("f;g"))


@pytest.mark.parametrize(("coverages", "partitions", "expected"), [
    ([(0, 1), (2, 3)], 4, [[0, 1]]),
    ([(0, 1)], 4, None),
    ([(0, 1, 2, 3), (2, 3)], 4, [[0]]),
    ([(0, 1), (0, 1), (2, 3)], 4, [[0, 2], [1, 2]]),  # the same coverage twice is counted once
    ([(0, 1, 2), (2, 3), (0, 1)], 4, [[2, 1]]),  # overlap during a rebalance: the disjoint pair
    ([(0, 1, 2), (1, 2, 3)], 4, None),
    ([(0, 1, 2, 3, 4)], 4, None),  # sent with another partition count
    ([(), (0,)], 1, [[1]]),
])
def test_exact_cover(coverages, partitions, expected) -> None:
    got = exact_cover(coverages, partitions)
    if expected is None:
        assert got is None
    else:
        assert sorted(got) in [sorted(e) for e in expected]


def test_dependent_rules_are_those_reading_an_earlier_record() -> None:
    g = _group()
    assert dependent_rules(g) == [False, False, True, False, False, False, False]
    loaded = load_rule_text("""
groups:
  - name: g
    rules:
      - alert: Early
        expr: later:x > 1
      - record: later:x
        expr: sum(x)
      - alert: Any
        expr: '{job="a"} > 1'
      - alert: Regex
        expr: '{__name__=~"later:.*"} > 1'
      - alert: Other
        expr: '{__name__=~"y.*"} > 1'
""", "r.yml")
    assert dependent_rules(loaded.groups[0]) == [False, False, True, True, False]


def _run_split(g, sources, t: int, states):
    plans = GroupPlans(g)
    ts = t - g.query_offset_ms
    msgs = [PartialMessage("f;g", t, (i,), f"w{i}", tuple(plans.partials(ts, src))) for i, src in enumerate(sources)]
    msgs = [PartialMessage.from_bytes(m.to_bytes()) for m in msgs]  # as read back from the table
    injected: list = []
    return evaluate_group(g, lambda e, at: [], t, states, None, injected.extend,
                          rule_query=plans.rule_query(msgs, injected))


def _run_whole(g, union: MemorySource, t: int, states):
    def write(samples) -> None:
        for s in samples:
            union.add(s.labels, [s.time_ms], [s.value])

    return evaluate_group(g, instant_query_func(Engine(union)), t, states, None, write)


def _samples(result) -> list[tuple]:
    # (labels, time, is-NaN (staleness marker), value)
    return sorted((tuple(sorted(s.labels.items())), s.time_ms, math.isnan(s.value), 0.0 if math.isnan(s.value)
                   else s.value) for s in result.samples)


@pytest.mark.parametrize("parts", [1, 3, 5])
def test_split_evaluation_equals_the_engine_over_all_series(parts: int) -> None:
    """One semantics: partials of a disjoint split, merged, give what the engine gives over the union,
    across evaluations (pending → firing), including the rule that reads this evaluation's record."""
    g = _group()
    split_states: dict[str, AlertState] = {}
    whole_states: dict[str, AlertState] = {}
    for step, scale in enumerate((1.0, 4.0, 4.0, 4.0, 0.5)):
        t = T0 + step * 10_000
        series = _series(12, t, scale)
        split = _run_split(g, _split(series, parts), t, split_states)
        whole = _run_whole(g, _union(series), t, whole_states)
        assert not split.errors and not whole.errors
        s, w = _samples(split), _samples(whole)
        assert [x[:3] for x in s] == [x[:3] for x in w]
        assert [x[3] for x in s] == pytest.approx([x[3] for x in w], rel=1e-12)
        assert {k: v.rule_state for k, v in split.states.items()} == {k: v.rule_state for k, v in whole.states.items()}
        notified = [(n.labels, n.status) for n in whole.notifications]
        assert [(n.labels, n.status) for n in split.notifications] == notified
        split_states, whole_states = dict(split.states), dict(whole.states)
    fired = {k for k, st in whole_states.items() if any(a.fired_at_ms for a in st.alerts.values())}
    assert any("/RecordedHigh/" in k for k in fired), "the dependent rule saw this evaluation's record and fired"


def test_a_failed_partial_is_the_rules_error_and_spares_the_others() -> None:
    g = _group()
    plans = GroupPlans(g)
    src = _union(_series(4, T0, 1.0))
    good = plans.partials(T0, src)
    bad = [RulePartial(good[0].rule_key, "error", b"out of memory"), *good[1:]]
    msgs = [PartialMessage("f;g", T0, (0,), "w0", tuple(bad))]
    injected: list = []
    result = evaluate_group(g, lambda e, at: [], T0, {}, None, injected.extend,
                            rule_query=plans.rule_query(msgs, injected))
    assert [e.rule_name for e in result.errors] == ["job:x:sum"]
    assert result.errors[0].message == "out of memory"
    assert result.states[g.rule_key(1)].health == "ok"
    # Workers with other rule files: refused, not mixed.
    other = [RulePartial("someone/else/000000000000", p.kind, p.data) for p in good]
    result = evaluate_group(g, lambda e, at: [], T0, {}, None, None,
                            rule_query=plans.rule_query([PartialMessage("f;g", T0, (0,), "w", tuple(other))], []))
    assert len(result.errors) == len(g.rules)
    assert "different rule files" in result.errors[0].message


class DictStore:
    """The PartitionStore contract (get/put/delete/scan per partition) over dicts: the owner's
    bookkeeping without a Faust app; the Faust-table path runs in integration/test_alerting_stream.py."""

    def __init__(self) -> None:
        self.data: dict[int, dict[bytes, bytes]] = {}

    def put(self, p: int, key: bytes, value: bytes) -> None:
        self.data.setdefault(p, {})[key] = value

    def get(self, p: int, key: bytes) -> bytes | None:
        return self.data.get(p, {}).get(key)

    def delete(self, p: int, key: bytes) -> None:
        self.data.get(p, {}).pop(key, None)

    def scan(self, p: int, lo: bytes = b"", hi: bytes | None = None):
        for k in sorted(self.data.get(p, {})):
            if k >= lo and (hi is None or k < hi):
                yield k, self.data[p][k]


OWNER_RULES = """
groups:
  - name: owner
    interval: 1s
    rules:
      - alert: DoubleCounted
        expr: sum(y) > 12
"""


def test_owner_evaluates_exact_covers_once_and_drops_the_rest(tmp_path) -> None:
    import asyncio
    import time

    from agents.alerting import RuleRunner
    from metricsflow.alerting import metrics as am
    from metricsflow.config import Settings

    rules = tmp_path / "rules.yml"
    rules.write_text(OWNER_RULES)
    settings = Settings(rules_files=(str(rules),), partitions=4)
    alerts, partials = DictStore(), DictStore()
    runner = RuleRunner(settings, alerts, partials, None, None, lambda: {0, 1, 2, 3})  # type: ignore[arg-type]
    [g] = runner.groups
    owner = runner.partition_of(g)
    plans = GroupPlans(g)
    now = int(time.time() * 1000) // 1000 * 1000

    def message(t: int, parts: tuple[int, ...], host: str) -> bytes:
        src = MemorySource()
        src.add({"__name__": "y", "host": host}, [t - 1000], [5.0])  # each part sums to 5; all = 10
        return PartialMessage(f"{g.file};{g.name}", t, parts, "w", tuple(plans.partials(t, src))).to_bytes()

    def pending() -> list[int]:
        return sorted({parse_table_key(k, f"{g.file};{g.name}")[0] for k in partials.data.get(owner, {})})

    def skipped(reason: str) -> float:
        return am.RULE_EVALUATIONS_SKIPPED.labels(g.key, reason)._value.get()

    async def scenario() -> None:
        t_old, t1, t2, t3, t5 = now - 60_000, now - 8000, now - 6000, now - 4000, now
        incomplete = skipped("incomplete")
        runner.accept_partial(owner, message(t_old, (0, 1), "a"))  # a worker died: never completed
        assert await runner.merge_ready(g) is None and pending() == [], "dropped after the horizon"
        assert skipped("incomplete") == incomplete + 1
        runner.accept_partial(owner, message(t1, (0, 1), "a"))
        assert await runner.merge_ready(g) is None and pending() == [t1], "half a cover waits"
        runner.accept_partial(owner, message(t1, (2, 3), "b"))
        runner.accept_partial(owner, message(t1, (2, 3), "b"))  # replayed: the same key, counted once
        result = await runner.merge_ready(g)
        assert result is not None and result.time_ms == t1 and not result.errors
        assert result.states[g.rule_key(0)].alerts == {}, "sum 10, not 15: nothing counted twice"
        assert runner.last_evaluated(g) == t1 and pending() == []
        late = am.RULE_PARTIALS_REFUSED.labels("late")._value.get()
        runner.accept_partial(owner, message(t1, (0, 1), "a"))
        assert pending() == [] and am.RULE_PARTIALS_REFUSED.labels("late")._value.get() == late + 1

        superseded = skipped("superseded")
        runner.accept_partial(owner, message(t2, (0, 1), "a"))
        runner.accept_partial(owner, message(t3, (0, 1, 2, 3), "a"))
        runner.accept_partial(owner, message(t5, (2, 3), "b"))  # incomplete, still current
        result = await runner.merge_ready(g)
        assert result is not None and result.time_ms == t3
        assert pending() == [t5]
        assert skipped("superseded") == superseded + 1
        runner.accept_partial(owner, message(t5, (0, 1, 2), "a"))  # overlaps: no exact cover
        assert await runner.merge_ready(g) is None and pending() == [t5]
        runner.accept_partial(owner, message(t5, (0, 1), "a"))
        assert (await runner.merge_ready(g)).time_ms == t5 and pending() == []
        # A successor reads the last evaluation from the alerts table, not from memory.
        successor = RuleRunner(settings, alerts, partials, None, None, lambda: {0, 1, 2, 3})  # type: ignore[arg-type]
        assert successor.last_evaluated(successor.groups[0]) == t5
        runner._pool.shutdown()
        successor._pool.shutdown()

    asyncio.run(scenario())


def test_watermark_gate_waits_for_the_end_offsets_read_at_t() -> None:
    import asyncio
    import time

    from agents.alerting import WatermarkGate
    from metricsflow.alerting import metrics as am

    consumed = {0: 9, 1: 4}
    reads: list[list[int]] = []

    async def end_offsets(parts: list[int]) -> dict[int, int]:
        reads.append(parts)
        return {0: 10, 1: 7}  # partition 0 consumed up to its end; partition 1 three records behind

    async def scenario() -> None:
        gate = WatermarkGate(end_offsets, lambda p: consumed[p], wait_ms=5000)
        t = 1_000_000
        assert await gate.due(t, [0], t + 10), "partition 0 has everything that existed at t"
        assert not await gate.due(t, [0, 1], t + 10), "partition 1 has not consumed offsets 5 and 6"
        assert not await gate.due(t, [0, 1], t + 4999)
        consumed[1] = 6
        assert await gate.due(t, [0, 1], t + 100), "caught up: due before the wait runs out"
        assert reads == [[0], [0, 1]], "end offsets are read once per evaluation time and partitions"
        consumed[1] = 0
        behind = am.RULE_PARTIALS_BEHIND.labels("1")._value.get()
        assert not await gate.due(t + 1000, [0, 1], t + 1000)
        assert await gate.due(t + 1000, [0, 1], t + 6000), "after the wait: sent with what is there"
        assert am.RULE_PARTIALS_BEHIND.labels("1")._value.get() == behind + 1

        async def broken(parts: list[int]) -> dict[int, int]:
            raise RuntimeError("rebalancing")

        assert await WatermarkGate(broken, lambda p: -1, 5000).due(t, [0], t), "no offsets: rules are not held"

        async def hanging(parts: list[int]) -> dict[int, int]:
            await asyncio.sleep(30)
            return {}

        started = time.monotonic()
        assert await WatermarkGate(hanging, lambda p: -1, 600).due(t, [0], t), "a silent broker: not held"
        assert time.monotonic() - started < 5
        assert await WatermarkGate(None, lambda p: -1, 5000).due(t, [0], t)

    asyncio.run(scenario())
