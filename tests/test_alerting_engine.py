"""Rules evaluated end to end through the real PromQL engine (metricsflow.promql) over memory data."""

from __future__ import annotations

import pytest

from metricsflow.alerting.evaluator import evaluate_group
from metricsflow.alerting.query import RuleResultTypeError, instant_query_func
from metricsflow.alerting.rules import load_rule_text
from metricsflow.alerting.state import AlertState, Sample

promql = pytest.importorskip("metricsflow.promql.engine")
source_mod = pytest.importorskip("metricsflow.promql.source")

RULES = """
groups:
- name: e2e
  interval: 1m
  rules:
  - record: job:errors:rate1m
    expr: sum by (job) (rate(errors_total[1m]))
  - alert: ErrorsHigh
    expr: job:errors:rate1m > 1
    for: 2m
    labels: {severity: page}
    annotations: {summary: "{{ $labels.job }}: {{ $value | humanize }} errors/s"}
  - record: two
    expr: 1 + 1
  - record: bad_type
    expr: errors_total[1m]
"""


def test_rules_through_the_real_engine() -> None:
    (group,) = load_rule_text(RULES, "e2e.yml").groups
    src = source_mod.MemorySource()
    # errors_total grows by 300 per minute (5/s) for job api, 30 per minute for job db.
    ts = list(range(0, 600_001, 15_000))
    src.add({"__name__": "errors_total", "job": "api"}, ts, [t / 1000 * 5 for t in ts])
    src.add({"__name__": "errors_total", "job": "db"}, ts, [t / 1000 * 0.5 for t in ts])
    engine = promql.Engine(src)
    query = instant_query_func(engine)

    def write(samples: list[Sample]) -> None:
        for s in samples:  # written back at once, like Prometheus appends each rule's output
            src.add(s.labels, [s.time_ms], [s.value])

    states: dict[str, AlertState] = {}
    seen: list[tuple[int, str | None]] = []
    for t in range(120_000, 480_001, 60_000):
        res = evaluate_group(group, query, t, states, write=write)
        states = res.states
        alert = [a for st in states.values() for a in st.alerts.values()]
        seen.append((t, alert[0].state if alert else None))
        errors = {e.rule_name: e.message for e in res.errors}
        assert errors == {"bad_type": "rule result is not a vector or scalar"}
        two = [s for s in res.samples if s.labels["__name__"] == "two"]
        assert [(s.labels, s.value) for s in two] == [({"__name__": "two"}, 2.0)]
    # The alert sees the recording rule's value of the same evaluation: pending at once.
    assert [s for _, s in seen[:4]] == ["pending", "pending", "firing", "firing"]
    firing = next(a for st in states.values() for a in st.alerts.values())
    assert firing.labels == {"alertname": "ErrorsHigh", "job": "api", "severity": "page"}
    assert firing.annotations == {"summary": "api: 5 errors/s"}
    assert issubclass(RuleResultTypeError, ValueError)
