"""Alert state machine, rule evaluation, samples written back, API shapes and templates."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricsflow.alerting.evaluator import (
    EvalOptions,
    EvalResult,
    alerts_api_data,
    evaluate_group,
    generator_url,
    rules_api_data,
)
from metricsflow.alerting.rules import Group, load_rule_text
from metricsflow.alerting.state import (
    RESOLVED_RETENTION_MS,
    Alert,
    AlertState,
    AlertStateFormatError,
    fingerprint,
)
from metricsflow.alerting.templates import TemplateData, expand_or_error
from metricsflow.model import STALE_NAN_BITS

Vector = list[tuple[dict[str, str], float]]
S = 1000
GOLDEN_FP = "593b3fc30668dd0a"  # fingerprint of {alertname="A", job="x"}
BASE_S = 1_700_000_000  # timelines run at BASE_S + t; 0 would be Go's "never" for lastSentAt


class FakeQuery:
    """``query(expr, t)``: answers from a per-expression function of time; records calls."""

    def __init__(self, answers: dict[str, Callable[[int], Vector]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    def __call__(self, expr: str, time_ms: int) -> Vector:
        self.calls.append((expr, time_ms))
        answer = self.answers[expr]
        return answer(time_ms)


def one_alert_group(for_s: int = 0, keep_s: int = 0, interval: str = "1m", extra: str = "") -> Group:
    text = f"""
groups:
- name: g
  interval: {interval}
  rules:
  - alert: HighLoad
    expr: load > 1
    for: {for_s}s
    keep_firing_for: {keep_s}s
    labels:
      severity: page
    annotations:
      summary: "{{{{ $labels.instance }}}} load is {{{{ $value }}}}"
{extra}"""
    res = load_rule_text(text, "rules.yml")
    assert res.ok, res.errors
    return res.groups[0]


class Timeline:
    """Evaluate a group step by step, keeping state only as bytes (as the worker does)."""

    def __init__(self, group: Group, query: FakeQuery, options: EvalOptions | None = None,
                 serialise: bool = True) -> None:
        self.group, self.query, self.options, self.serialise = group, query, options, serialise
        self.stored: dict[str, bytes | AlertState] = {}

    def states(self) -> dict[str, AlertState]:
        return {k: AlertState.from_bytes(v) if isinstance(v, bytes) else v for k, v in self.stored.items()}

    def eval(self, t_s: float) -> EvalResult:
        res = evaluate_group(self.group, self.query, int((BASE_S + t_s) * S), self.states(), self.options)
        self.stored = {k: v.to_bytes() if self.serialise else v for k, v in res.states.items()}
        return res

    def alert(self) -> Alert | None:
        (st_,) = self.states().values()
        alerts = list(st_.alerts.values())
        assert len(alerts) <= 1
        return alerts[0] if alerts else None


def switch(returned: dict[int, float | None]) -> Callable[[int], Vector]:
    """A query answer: at time t (s) return load=v for instance a, or nothing when v is None."""

    def answer(t_ms: int) -> Vector:
        v = returned.get(t_ms // S - BASE_S)
        return [] if v is None else [({"instance": "a", "job": "node"}, v)]

    return answer


# (name, for s, keep_firing_for s, [(t s, value or None, expected state or None, expected activeAt s)])
TRANSITIONS = [
    ("for 0 fires at once", 0, 0, [(0, 2, "firing", 0), (60, 2, "firing", 0), (120, None, "inactive", 0)]),
    ("pending until for elapsed", 120, 0,
     [(0, 2, "pending", 0), (60, 2, "pending", 0), (119, 2, "pending", 0), (120, 2, "firing", 0),
      (180, 2, "firing", 0)]),
    ("flapping pending is forgotten and restarts", 120, 0,
     [(0, 2, "pending", 0), (60, None, None, None), (120, 2, "pending", 120), (180, 2, "pending", 120),
      (240, 2, "firing", 120)]),
    ("resolve and re-fire gets a new activeAt", 60, 0,
     [(0, 2, "pending", 0), (60, 2, "firing", 0), (120, None, "inactive", 0), (180, 2, "pending", 180),
      (240, 2, "firing", 180)]),
    ("keep_firing_for holds a firing alert", 0, 120,
     [(0, 2, "firing", 0), (60, None, "firing", 0), (120, None, "firing", 0), (180, None, "inactive", 0)]),
    ("keep_firing_for restarts when the condition returns", 0, 120,
     [(0, 2, "firing", 0), (60, None, "firing", 0), (120, 2, "firing", 0), (180, None, "firing", 0),
      (240, None, "firing", 0), (300, None, "inactive", 0)]),
    ("keep_firing_for does not hold pending alerts", 300, 600,
     [(0, 2, "pending", 0), (60, None, None, None)]),
    ("resolved alert kept 15m then dropped", 0, 0,
     [(0, 2, "firing", 0), (60, None, "inactive", 0), (60 + 900, None, "inactive", 0), (60 + 901, None, None, None)]),
]


@pytest.mark.parametrize(("name", "for_s", "keep_s", "steps"), TRANSITIONS, ids=[c[0] for c in TRANSITIONS])
@pytest.mark.parametrize("serialise", [True, False], ids=["via-bytes", "in-memory"])
def test_transitions(name: str, for_s: int, keep_s: int, steps: list, serialise: bool) -> None:
    del name
    returned = {t: v for t, v, _, _ in steps}
    tl = Timeline(one_alert_group(for_s, keep_s), FakeQuery({"load > 1": switch(returned)}), serialise=serialise)
    for t, _, state, active_at in steps:
        res = tl.eval(t)
        assert res.errors == ()
        a = tl.alert()
        got = None if a is None else (a.state, a.active_at_ms // S - BASE_S)
        want = None if state is None else (state, active_at)
        assert got == want, f"at t={t}s"


def test_alerts_samples_exactly_as_prometheus() -> None:
    tl = Timeline(one_alert_group(for_s=60), FakeQuery({"load > 1": switch({10: 2.5, 70: 3.5})}))
    res = tl.eval(10.123)
    base = {"alertname": "HighLoad", "instance": "a", "job": "node", "severity": "page"}
    t0 = BASE_S * S
    assert [(s.labels, s.time_ms - t0, s.value) for s in res.samples] == [
        ({**base, "__name__": "ALERTS", "alertstate": "pending"}, 10_123, 1.0),
        ({**base, "__name__": "ALERTS_FOR_STATE"}, 10_123, BASE_S + 10.0),  # activeAt in whole seconds
    ]
    res = tl.eval(70.5)
    firing = [(s.labels, s.time_ms - t0, s.value) for s in res.samples if not math.isnan(s.value)]
    assert firing == [
        ({**base, "__name__": "ALERTS", "alertstate": "firing"}, 70_500, 1.0),
        ({**base, "__name__": "ALERTS_FOR_STATE"}, 70_500, BASE_S + 10.0),
    ]
    # The pending series ended: it gets a staleness marker, as Prometheus writes one.
    stale = [s for s in res.samples if math.isnan(s.value)]
    assert [s.labels["alertstate"] for s in stale] == ["pending"]
    assert struct.unpack("<Q", struct.pack("<d", stale[0].value))[0] == STALE_NAN_BITS


def test_annotations_and_labels_expanded_and_refreshed() -> None:
    tl = Timeline(one_alert_group(for_s=60), FakeQuery({"load > 1": switch({0: 2.0, 30: 7.25})}))
    tl.eval(0)
    assert tl.alert().annotations == {"summary": "a load is 2"}  # type: ignore[union-attr]
    tl.eval(30)
    a = tl.alert()
    assert a is not None and a.annotations == {"summary": "a load is 7.25"} and a.value == 7.25
    assert a.labels == {"alertname": "HighLoad", "instance": "a", "job": "node", "severity": "page"}


def test_notifications_resend_and_resolve() -> None:
    group = one_alert_group(for_s=0, interval="30s")
    returned = {t: 2.0 for t in range(0, 121, 30)}
    tl = Timeline(group, FakeQuery({"load > 1": switch(returned)}),
                  EvalOptions(external_labels={"cluster": "eu", "severity": "ignored"},
                              external_url="http://mf:9090"))
    sent = {t: tl.eval(t).notifications for t in (0, 30, 60, 90, 120, 150, 180, 240)}
    assert [t for t, n in sent.items() if n] == [0, 90, 150, 240]
    t0 = BASE_S * S
    (first,) = sent[0]
    assert first.status == "firing"
    assert first.starts_at_ms == t0
    assert first.ends_at_ms == t0 + 4 * 60 * S  # 4 x max(interval 30s, resend 60s)
    assert first.labels["cluster"] == "eu" and first.labels["severity"] == "page"
    assert first.generator_url == "http://mf:9090/graph?g0.expr=load+%3E+1&g0.tab=1"
    assert sent[90][0].ends_at_ms == t0 + (90 + 240) * S
    (resolved,) = sent[150]
    assert resolved.status == "resolved" and resolved.ends_at_ms == t0 + 150 * S and resolved.starts_at_ms == t0
    # Resolved alerts are re-sent every resend delay while retained.
    assert sent[240][0].status == "resolved" and sent[240][0].ends_at_ms == t0 + 150 * S


def test_pending_alerts_are_not_sent() -> None:
    tl = Timeline(one_alert_group(for_s=300), FakeQuery({"load > 1": switch({0: 2.0, 60: 2.0})}))
    assert tl.eval(0).notifications == () and tl.eval(60).notifications == ()


@settings(max_examples=60, deadline=None)
@given(
    pattern=st.lists(st.booleans(), min_size=1, max_size=40),
    for_steps=st.integers(0, 4),
    keep_steps=st.integers(0, 4),
)
def test_serialised_state_continues_identically(pattern: list[bool], for_steps: int, keep_steps: int) -> None:
    """A successor worker restoring from bytes at every step sees the same alerts (activeAt too)."""
    returned = {i * 60: (float(i) if on else None) for i, on in enumerate(pattern)}
    group = one_alert_group(for_s=for_steps * 60, keep_s=keep_steps * 60)
    a = Timeline(group, FakeQuery({"load > 1": switch(returned)}), serialise=True)
    b = Timeline(group, FakeQuery({"load > 1": switch(returned)}), serialise=False)
    for i in range(len(pattern)):
        ra, rb = a.eval(i * 60), b.eval(i * 60)
        assert [(s.labels, s.value) for s in ra.samples if not math.isnan(s.value)] == [
            (s.labels, s.value) for s in rb.samples if not math.isnan(s.value)
        ]
        assert ra.notifications == rb.notifications
        sa, sb = a.states(), b.states()
        assert {k: v.alerts for k, v in sa.items()} == {k: v.alerts for k, v in sb.items()}


def test_state_bytes_round_trip_and_versioning() -> None:
    alert = Alert({"alertname": "A", "x": "é"}, {"summary": "s"}, "firing", active_at_ms=1_700_000_000_123,
                  value=math.inf, fired_at_ms=1_700_000_060_000, last_sent_at_ms=5, valid_until_ms=6,
                  keep_firing_since_ms=7)
    nan_alert = Alert({"alertname": "A", "x": "2"}, {}, "pending", active_at_ms=1, value=math.nan)
    state = AlertState({alert.fingerprint: alert, nan_alert.fingerprint: nan_alert}, "err", "boom", 42, 0.25,
                       ((("__name__", "ALERTS"), ("x", "1")),))
    data = state.to_bytes()
    assert data.startswith(b"{") and b'"v":1' in data
    back = AlertState.from_bytes(data)
    assert back.alerts[alert.fingerprint] == alert
    assert math.isnan(back.alerts[nan_alert.fingerprint].value)
    assert (back.health, back.last_error, back.last_evaluation_ms, back.evaluation_duration_s, back.last_series) == (
        "err", "boom", 42, 0.25, state.last_series)
    assert back.to_bytes() == data  # canonical encoding
    for bad in (b"", b"[]", b'{"v": 2}', b'{"v": 1}', b"\xff"):
        with pytest.raises(AlertStateFormatError):
            AlertState.from_bytes(bad)


def test_fingerprint_matches_alertmanager() -> None:
    # FNV-1a 64 offset basis for the empty set; the integration test checks a real
    # label set against the fingerprint Alertmanager itself reports.
    assert fingerprint({}) == 0xCBF29CE484222325
    assert f"{fingerprint({'alertname': 'A', 'job': 'x'}):016x}" == GOLDEN_FP
    assert fingerprint({"a": "b"}) != fingerprint({"a": "c"})


# ---------------------------------------------------------------- evaluator: recording, errors, limits


def test_recording_rule_output_and_labels() -> None:
    text = """
groups:
- name: rec
  labels: {team: t1}
  rules:
  - record: job:up:sum
    expr: sum by (job) (up)
    labels: {tier: api}
  - record: answer
    expr: "42"
"""
    (group,) = load_rule_text(text, "r.yml").groups
    q = FakeQuery({
        "sum by (job) (up)": lambda t: [({"job": "a"}, 1.0), ({"job": "b", "tier": "override-me"}, 2.0)],
        "42": lambda t: [({}, 42.0)],
    })
    res = evaluate_group(group, q, 5_000, {})
    assert [(s.labels, s.time_ms, s.value) for s in res.samples] == [
        ({"__name__": "job:up:sum", "job": "a", "team": "t1", "tier": "api"}, 5_000, 1.0),
        ({"__name__": "job:up:sum", "job": "b", "team": "t1", "tier": "api"}, 5_000, 2.0),
        ({"__name__": "answer", "team": "t1"}, 5_000, 42.0),
    ]
    assert all(s.health == "ok" for s in res.states.values())
    # Next evaluation: job b disappeared -> staleness marker for it.
    q.answers["sum by (job) (up)"] = lambda t: [({"job": "a"}, 1.0)]
    res2 = evaluate_group(group, q, 65_000, res.states)
    stale = [s.labels for s in res2.samples if math.isnan(s.value)]
    assert stale == [{"__name__": "job:up:sum", "job": "b", "team": "t1", "tier": "api"}]


def test_query_offset_moves_query_and_sample_time() -> None:
    text = "groups:\n- name: o\n  query_offset: 1m\n  rules:\n  - record: r\n    expr: up\n"
    (group,) = load_rule_text(text, "r.yml").groups
    q = FakeQuery({"up": lambda t: [({"__name__": "up"}, 1.0)]})
    res = evaluate_group(group, q, 600_000, {})
    assert q.calls == [("up", 540_000)] and res.samples[0].time_ms == 540_000


def test_rule_errors_are_recorded_and_others_continue() -> None:
    text = """
groups:
- name: errs
  rules:
  - record: fails
    expr: up
  - record: dup
    expr: x
  - alert: DupAlert
    expr: y > 0
  - alert: Fine
    expr: z > 0
"""
    (group,) = load_rule_text(text, "e.yml").groups

    def boom(t: int) -> Vector:
        raise RuntimeError("query timed out")

    q = FakeQuery({
        "up": boom,
        "x": lambda t: [({"__name__": "x", "a": "1"}, 1.0), ({"__name__": "y", "a": "1"}, 2.0)],
        "y > 0": lambda t: [({"__name__": "y", "i": "1"}, 1.0), ({"__name__": "w", "i": "1"}, 1.0)],
        "z > 0": lambda t: [({"i": "1"}, 3.0)],
    })
    res = evaluate_group(group, q, 1_000, {})
    assert [(e.rule_name, e.message) for e in res.errors] == [
        ("fails", "query timed out"),
        ("dup", "vector contains metrics with the same labelset after applying rule labels"),
        ("DupAlert", "vector contains metrics with the same labelset after applying alert labels"),
    ]
    health = [(res.states[group.rule_key(i)].health, res.states[group.rule_key(i)].last_error[:5])
              for i in range(4)]
    assert health == [("err", "query"), ("err", "vecto"), ("err", "vecto"), ("ok", "")]
    assert [s.labels["alertname"] for s in res.samples] == ["Fine", "Fine"]


def test_group_limit() -> None:
    text = "groups:\n- name: l\n  limit: 2\n  rules:\n  - alert: A\n    expr: a > 0\n  - record: r\n    expr: b\n"
    (group,) = load_rule_text(text, "l.yml").groups
    three: Vector = [({"i": str(i)}, 1.0) for i in range(3)]
    q = FakeQuery({"a > 0": lambda t: three, "b": lambda t: three})
    res = evaluate_group(group, q, 0, {})
    assert [e.message for e in res.errors] == ["exceeded limit of 2 with 3 alerts", "exceeded limit of 2 with 3 series"]
    assert res.samples == () and res.states[group.rule_key(0)].alerts == {}
    q.answers["a > 0"] = lambda t: three[:2]
    res = evaluate_group(group, q, 60_000, res.states)
    assert len(res.states[group.rule_key(0)].alerts) == 2 and res.states[group.rule_key(0)].health == "ok"


# ---------------------------------------------------------------- API shapes


def test_rules_and_alerts_api_shapes() -> None:
    text = """
groups:
- name: api
  interval: 30s
  rules:
  - alert: HighLoad
    expr: load > 1
    for: 10m
    labels: {severity: page}
    annotations: {summary: "load {{ $value }}"}
  - record: job:load:max
    expr: max by (job) (load)
"""
    (group,) = load_rule_text(text, "/etc/rules.yml").groups
    q = FakeQuery({"load > 1": lambda t: [({"instance": "a"}, 1.5)], "max by (job) (load)": lambda t: []})
    res = evaluate_group(group, q, 1_530_736_032_606, {})
    data = rules_api_data([group], res.states)
    (g,) = data["groups"]
    assert (g["name"], g["file"], g["interval"], g["limit"], g["lastEvaluation"]) == (
        "api", "/etc/rules.yml", 30, 0, "2018-07-04T20:27:12.606Z")
    alerting, recording = g["rules"]
    assert list(alerting) == ["state", "name", "query", "duration", "keepFiringFor", "labels", "annotations",
                              "alerts", "health", "evaluationTime", "lastEvaluation", "type"]
    assert (alerting["state"], alerting["duration"], alerting["keepFiringFor"], alerting["type"]) == (
        "pending", 600, 0, "alerting")
    assert alerting["alerts"] == [{
        "labels": {"alertname": "HighLoad", "instance": "a", "severity": "page"},
        "annotations": {"summary": "load 1.5"},
        "state": "pending",
        "activeAt": "2018-07-04T20:27:12.606Z",
        "value": "1.5e+00",
    }]
    assert recording == {"name": "job:load:max", "query": "max by (job) (load)", "health": "ok",
                         "evaluationTime": recording["evaluationTime"],
                         "lastEvaluation": "2018-07-04T20:27:12.606Z", "type": "recording"}
    assert alerts_api_data([group], res.states) == {"alerts": alerting["alerts"]}
    only_rec = rules_api_data([group], res.states, rule_type="record")
    assert [r["type"] for r in only_rec["groups"][0]["rules"]] == ["recording"]
    assert "alerts" not in rules_api_data([group], res.states, exclude_alerts=True)["groups"][0]["rules"][0]


def test_never_evaluated_rule_api_shape() -> None:
    group = one_alert_group()
    (r,) = rules_api_data([group], {})["groups"][0]["rules"]
    assert (r["health"], r["lastEvaluation"], r["alerts"], r["state"]) == (
        "unknown", "0001-01-01T00:00:00Z", [], "inactive")


def test_generator_url() -> None:
    assert generator_url("http://x:9090/", 'up{job="a b"} == 0') == (
        "http://x:9090/graph?g0.expr=up%7Bjob%3D%22a+b%22%7D+%3D%3D+0&g0.tab=1")


# ---------------------------------------------------------------- templates

DATA = TemplateData(labels={"instance": "host-1:9100", "job": "node", "__name__": "up"}, value=0.123456,
                    external_labels={"cluster": "eu-1"}, external_url="http://prom.example/prefix")

TEMPLATES = [
    ("{{ $labels.instance }} is down", "host-1:9100 is down"),
    ("{{ .Labels.job }}", "node"),
    ("{{ $labels.missing }}|", "|"),
    ("{{ $value }}", "0.123456"),
    ("{{ .Value }}", "0.123456"),
    ("{{ $labels }}", "map[__name__:up instance:host-1:9100 job:node]"),
    ("{{ $externalLabels.cluster }}", "eu-1"),
    ("{{ $externalURL }}", "http://prom.example/prefix"),
    ("{{ $value | humanize }}", "123.5m"),
    ("{{ 1234567.0 | humanize }}", "1.235M"),
    ("{{ 0 | humanize }}", "0"),
    ("{{ 2048 | humanize1024 }}", "2ki"),
    ("{{ $value | humanizePercentage }}", "12.35%"),
    ("{{ 3725 | humanizeDuration }}", "1h 2m 5s"),
    ("{{ 90061 | humanizeDuration }}", "1d 1h 1m 1s"),
    ("{{ 1.5 | humanizeDuration }}", "1.5s"),
    ("{{ 0.002 | humanizeDuration }}", "2ms"),
    ('{{ printf "%.2f" $value }}', "0.12"),
    ('{{ printf "%s=%d" "n" 3 }}', "n=3"),
    ('{{ printf "%d" $value }}', "%!d(float64=0.123456)"),
    ("{{ $labels.job | title }}", "Node"),
    ('{{ "hello world-x" | title }}', "Hello World-X"),
    ("{{ $labels.job | toUpper }}", "NODE"),
    ('{{ "ABC" | toLower }}', "abc"),
    ("{{ if gt $value 0.1 }}high{{ else }}low{{ end }}", "high"),
    ('{{ if eq $labels.job "db" }}db{{ else if eq $labels.job "node" }}node!{{ end }}', "node!"),
    ("{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}", "__name__=up;instance=host-1:9100;job=node;"),
    ("{{ with $labels.job }}job={{ . }}{{ end }}", "job=node"),
    ("a {{- $labels.job -}} b", "anodeb"),
    ("{{/* comment */}}x", "x"),
    ('{{ reReplaceAll "(.*):(.*)" "$1" $labels.instance }}', "host-1"),
    ("{{ $labels.instance | stripPort }}", "host-1"),
    ('{{ match "^host" $labels.instance }}', "true"),
    ("{{ 1700000000 | humanizeTimestamp }}", "2023-11-14 22:13:20 +0000 UTC"),
    ("plain text, no actions", "plain text, no actions"),
    ('{{ if eq $labels.job "db" }}a{{ else if gt $value 1.0 }}b{{ else }}c{{ end }}', "c"),
    ("{{ with $labels.nothing }}x{{ else }}empty{{ end }}", "empty"),
    ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", "2"),
    ('{{ index $labels "job" }} {{ len "abc" }} {{ not false }} {{ and 1 0 }} {{ or 0 "x" }}', "node 3 true 0 x"),
    ('{{ "a" | printf "%s-%s" "b" }}', "b-a"),
    ("{{ 1e6 }} {{ 123456.0 }} {{ 0.00001 }} {{ 5 }}", "1e+06 123456 1e-05 5"),
    ("{{ gt $value 1 }}",
     '<error expanding template: error executing template __alert_X: template: __alert_X:1:115: '
     'executing "__alert_X" at <gt $value 1>: error calling gt: incompatible types for comparison>'),
    ("{{ 3 | $value }}",
     '<error expanding template: error executing template __alert_X: template: __alert_X:1:119: '
     'executing "__alert_X" at <$value>: can\'t give argument to non-function $value>'),
    # Errors: Prometheus' exact wording, never an exception.
    ("{{ $value | nosuch }}",
     '<error expanding template: error parsing template __alert_X: template: __alert_X:1: '
     'function "nosuch" not defined>'),
    ("{{ $nosuch }}",
     '<error expanding template: error parsing template __alert_X: template: __alert_X:1: '
     'undefined variable "$nosuch">'),
    ('{{ humanize "abc" }}',
     '<error expanding template: error executing template __alert_X: template: __alert_X:1:115: '
     'executing "__alert_X" at <humanize "abc">: error calling humanize: '
     'strconv.ParseFloat: parsing "abc": invalid syntax>'),
    ("{{ .Nope }}",
     '<error expanding template: error executing template __alert_X: template: __alert_X:1:115: '
     'executing "__alert_X" at <.Nope>: can\'t evaluate field Nope in type struct { Labels map[string]string; '
     'ExternalLabels map[string]string; ExternalURL string; Value interface {} }>'),
    ("{{ $value",
     "<error expanding template: error parsing template __alert_X: template: __alert_X:1: unclosed action>"),
]


@pytest.mark.parametrize(("text", "want"), TEMPLATES, ids=[t for t, _ in TEMPLATES])
def test_template_expansion(text: str, want: str) -> None:
    assert expand_or_error(text, "X", DATA) == want


def test_template_query_function() -> None:
    def q(expr: str, t: int) -> Vector:
        assert (expr, t) == ("up", 1234)
        return [({"__name__": "up", "instance": "b"}, 0.0), ({"__name__": "up", "instance": "a"}, 1.0)]

    text = '{{ with query "up" }}{{ . | sortByLabel "instance" | first | label "instance" }}={{ . | first | value }}' \
           "{{ end }}"
    assert expand_or_error(text, "X", DATA, query=q, time_ms=1234) == "a=0"


def test_resolved_retention_constant() -> None:
    assert RESOLVED_RETENTION_MS == 15 * 60 * 1000


def test_alert_transitions_for_the_alerts_topic() -> None:
    from metricsflow.alerting.state import alert_transitions

    tl = Timeline(one_alert_group(for_s=60), FakeQuery({"load > 1": switch({0: 2.0, 30: 3.0, 60: 3.0})}),
                  serialise=False)
    key = tl.group.rule_key(0)
    seen = []
    before: AlertState | None = None
    for t in (0, 30, 60, 90):
        after = tl.eval(t).states[key]
        seen.append([(k.decode().rsplit("/", 1)[1], v is not None and orjson.loads(v)["state"])
                     for k, v in alert_transitions(key, before, after)])
        before = after
    fp = f"{fingerprint({'alertname': 'HighLoad', 'instance': 'a', 'job': 'node', 'severity': 'page'}):016x}"
    # pending (new) / nothing (value change only) / firing / inactive (resolved)
    assert seen == [[(fp, "pending")], [], [(fp, "firing")], [(fp, "inactive")]]


@pytest.mark.parametrize(
    ("v", "g", "e"),
    [(1.0, "1", "1e+00"), (0.5, "0.5", "5e-01"), (1e6, "1e+06", "1e+06"), (123456.0, "123456", "1.23456e+05"),
     (1234567.0, "1.234567e+06", "1.234567e+06"), (1e-5, "1e-05", "1e-05"), (-2.5, "-2.5", "-2.5e+00"),
     (0.0, "0", "0e+00"), (math.inf, "+Inf", "+Inf"), (-math.inf, "-Inf", "-Inf"), (math.nan, "NaN", "NaN"),
     (0.1 + 0.2, "0.30000000000000004", "3.0000000000000004e-01")],
)
def test_go_float_formatting(v: float, g: str, e: str) -> None:
    from metricsflow.alerting.gofmt import format_float_e_shortest, format_float_g_shortest

    assert (format_float_g_shortest(v), format_float_e_shortest(v)) == (g, e)


@pytest.mark.parametrize(
    ("fmt", "args", "want"),
    [("%.2f", [1.005], "1.00"), ("%5.1f|%-4d|%04d", [3.14159, 7, 42], "  3.1|7   |0042"),
     ("%v %v", [True, "x"], "true x"), ("%q", ["a\"b"], '"a\\"b"'), ("%d%%", [50], "50%"),
     ("%s", [], "%!s(MISSING)"), ("%x", [255], "ff"),
     ("%.3g", [math.inf], "+Inf"), ("%s", [1.5], "%!s(float64=1.5)")],
)
def test_go_sprintf(fmt: str, args: list, want: str) -> None:
    from metricsflow.alerting.gofmt import sprintf

    assert sprintf(fmt, args) == want
