"""Rule files: the documented examples load; bad rules are refused with file:line:column and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from metricsflow.alerting.rules import (
    AlertingRule,
    RecordingRule,
    format_duration_ms,
    load_rule_file,
    load_rule_files,
    load_rule_text,
    parse_duration_ms,
)

RULES = Path(__file__).parent / "fixtures" / "rules"


def test_recording_example() -> None:
    res = load_rule_file(RULES / "recording.yml")
    assert res.errors == ()
    g1, g2 = res.groups
    assert (g1.name, g1.interval_ms, g1.limit, g1.query_offset_ms) == ("example", 60_000, 0, 0)
    assert g1.rules == (
        RecordingRule("code:prometheus_http_requests_total:sum", "sum by (code) (prometheus_http_requests_total)",
                      {}, line=5),
    )
    assert (g2.name, g2.interval_ms, g2.limit, g2.query_offset_ms) == ("with-options", 60_000, 10, 60_000)
    r1, r2 = g2.rules
    assert isinstance(r1, RecordingRule) and r1.labels == {"team": "myteam"}
    assert isinstance(r2, RecordingRule) and r2.labels == {"team": "myteam", "tier": "api"}
    assert "rate(request_latency_seconds_count[5m])" in r2.expr


def test_alerting_example() -> None:
    res = load_rule_file(RULES / "alerting.yml")
    assert res.errors == ()
    (g,) = res.groups
    (rule,) = g.rules
    assert rule == AlertingRule(
        name="HighRequestLatency",
        expr='job:request_latency_seconds:mean5m{job="myjob"} > 0.5',
        for_ms=600_000,
        keep_firing_for_ms=300_000,
        labels={"team": "myteam", "severity": "page"},
        annotations={"summary": "High request latency"},
        line=7,
    )


def test_templating_example() -> None:
    res = load_rule_file(RULES / "templating.yml")
    assert res.errors == ()
    (g,) = res.groups
    assert [r.name for r in g.rules] == ["InstanceDown", "APIHighRequestLatency"]
    assert g.rules[1].annotations["description"].endswith("(current value: {{ $value }}s)")


INVALID = [
    (4, 17, 1, "not-a-metric-name", "invalid recording rule name: not-a-metric-name"),
    (7, 17, 2, "BothSet", "only one of 'record' and 'alert' must be set"),
    (9, 9, 3, "NoExpr", "field 'expr' must be set in rule"),
    (13, 14, 4, "BadDuration", 'for: not a valid duration string: "5 minutes"'),
    (17, 11, 5, "BadLabel", "invalid label name: 0bad"),
    (21, 11, 6, "BadTemplate",
     'annotation "summary": template: __alert_BadTemplate:1: function "nosuchfunc" not defined'),
    (24, 9, 7, "recording_with_for", "invalid field 'for' in recording rule"),
    (27, 9, 8, "UnknownField", "field severity not found in type rulefmt.Rule"),
    (28, 9, 9, "", "one of 'record' or 'alert' must be set"),
    (31, 26, 10, "BadKeepFiring", 'keep_firing_for: not a valid duration string: "1h30"'),
]


def test_invalid_rules_exact_positions_and_reasons() -> None:
    path = RULES / "invalid.yml"
    res = load_rule_file(path)
    rule_errors = [e for e in res.errors if e.rule_index is not None]
    got = [(e.line, e.column, e.rule_index, e.rule_name, e.reason) for e in rule_errors]
    assert got == INVALID
    group_errors = [str(e) for e in res.errors if e.rule_index is None]
    assert group_errors == [
        f'{path}:32:11: group "": Groupname must not be empty',
        f'{path}:35:15: group "badinterval": interval: not a valid duration string: "fast"',
    ]
    assert str(rule_errors[0]) == (
        f'{path}:4:17: group "invalid", rule 1, "not-a-metric-name": '
        "invalid recording rule name: not-a-metric-name"
    )
    # The group itself loaded, with none of its (all invalid) rules.
    assert [(g.name, g.rules) for g in res.groups] == [("invalid", ())]


def test_one_bad_rule_among_good_ones() -> None:
    path = RULES / "mixed.yml"
    res = load_rule_file(path)
    assert [str(e) for e in res.errors] == [
        f'{path}:9:15: group "mixed", rule 2, "Broken": could not parse expression: unclosed left parenthesis'
    ]
    assert [(g.name, [r.name for r in g.rules]) for g in res.groups] == [
        ("mixed", ["instance:up:count", "TooManyErrors"]),
        ("second", ["job:up:sum"]),
    ]
    assert res.groups[0].interval_ms == 30_000


def test_broken_yaml_reports_line() -> None:
    path = RULES / "broken_yaml.yml"
    res = load_rule_file(path)
    assert res.groups == ()
    (err,) = res.errors
    assert (err.file, err.line) == (str(path), 6)
    assert err.reason.startswith("yaml: expected <block end>")


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("groups: {}", 1, "groups must be a list, got a mapping"),
        ("other: 1", 1, "field other not found in type rulefmt.RuleGroups"),
        ("- 1", 1, "rule file must be a mapping, got a list"),
        ("groups:\n- name: a\n  rules: []\n- name: a\n  rules: []\n", 4,
         'groupname: "a" is repeated in the same file'),
        ("groups:\n- name: a\n  limit: -1\n  rules: []\n", 3, "limit must not be negative, got -1"),
        ("groups:\n- name: a\n  limit: many\n  rules: []\n", 3, "limit must be an integer, got scalar 'many'"),
        ("groups:\n- name: a\n  rules:\n  - alert: A\n    expr: up\n    expr: down\n", 6,
         'mapping key "expr" already defined at line 5'),
        ("groups:\n- name: a\n  rules:\n  - alert: A\n    expr: up\n    labels:\n      __name__: x\n", 7,
         "invalid label name: __name__"),
        ("groups:\n- name: a\n  rules:\n  - record: r\n    expr: up\n    annotations:\n      a: b\n", 6,
         "invalid field 'annotations' in recording rule"),
        ("groups:\n- name: a\n  rules:\n  - alert: A\n    expr: up\n    labels:\n      x: [1]\n", 7,
         "labels value of 'x' must be a string, got a list"),
    ],
)
def test_refusals(text: str, line: int, reason: str) -> None:
    res = load_rule_text(text, "f.yml")
    assert [(e.line, e.reason) for e in res.errors] == [(line, reason)]


def test_empty_file_and_empty_groups() -> None:
    assert load_rule_text("", "f.yml").groups == ()
    assert load_rule_text("groups:\n", "f.yml").errors == ()


def test_missing_file_is_an_error_not_an_exception(tmp_path: Path) -> None:
    res = load_rule_file(tmp_path / "nope.yml")
    assert res.groups == () and res.errors[0].reason.startswith("cannot read rule file")


def test_load_rule_files_concatenates() -> None:
    res = load_rule_files([RULES / "recording.yml", RULES / "alerting.yml"])
    assert [g.name for g in res.groups] == ["example", "with-options", "example"]
    assert res.ok


@pytest.mark.parametrize(
    ("text", "ms"),
    [("0", 0), ("1ms", 1), ("30s", 30_000), ("5m", 300_000), ("1h30m", 5_400_000), ("2d", 172_800_000),
     ("1w", 604_800_000), ("1y", 31_536_000_000), ("1h0m5s10ms", 3_605_010)],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "5", "1.5h", "5m1h", "1h1h", "-5m", "5 m", "1H", "5mss"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(text)


def test_format_duration_round_trip() -> None:
    for ms in (0, 1, 90_000, 5_400_000, 31_536_000_000 + 1):
        assert parse_duration_ms(format_duration_ms(ms).replace("0s", "0") if ms == 0 else format_duration_ms(ms)) \
            == ms


def test_rule_keys_are_stable_and_distinct() -> None:
    text = (
        "groups:\n- name: g\n  rules:\n"
        "  - alert: A\n    expr: x > 1\n    labels: {severity: warn}\n"
        "  - alert: A\n    expr: x > 2\n    labels: {severity: page}\n"
    )
    (g,) = load_rule_text(text, "f.yml").groups
    k0, k1 = g.rule_key(0), g.rule_key(1)
    assert k0 != k1 and k0.startswith("f.yml;g/A/")
    (g2,) = load_rule_text(text, "f.yml").groups
    assert g2.rule_key(0) == k0
