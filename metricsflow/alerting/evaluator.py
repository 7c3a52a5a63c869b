"""Evaluate one rule group at one instant: query, state machine, samples, notifications.

``evaluate_group`` is deterministic given its inputs (except the measured durations):
the worker calls it with the group, a query function bound to the PromQL engine, the
evaluation time and the rules' previous :class:`~.state.AlertState` (read from the
changelog table); it gets back the new states to store, the samples to write (recording
rule outputs, ``ALERTS``, ``ALERTS_FOR_STATE``, staleness markers) and the alerts to hand
to the :class:`~.notify.NotificationDispatcher`.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from metricsflow.errors import MetricsflowError
from metricsflow.model import STALE_NAN

from . import metrics
from .gofmt import format_float_e_shortest, format_rfc3339_ms
from .rules import AlertingRule, Group, RecordingRule
from .state import (
    Alert,
    AlertState,
    Candidate,
    Sample,
    alert_samples,
    select_for_sending,
    step_alerts,
)
from .templates import TemplateData, expand_or_error

__all__ = [
    "DEFAULT_RESEND_DELAY_MS",
    "EvalOptions",
    "EvalResult",
    "Notification",
    "QueryFunc",
    "RuleEvalError",
    "RuleQueryFunc",
    "alerts_api_data",
    "evaluate_group",
    "generator_url",
    "rules_api_data",
]

QueryFunc = Callable[[str, int], list[tuple[dict[str, str], float]]]
"""``query(expr, time_ms)`` → instant vector as (labels, value); a scalar is ``[({}, v)]``."""

RuleQueryFunc = Callable[[int, str, int], list[tuple[dict[str, str], float]]]
"""``rule_query(rule_index, expr, time_ms)``: a rule's own result, when it is computed per rule
(the stream merges each rule's partials); template ``query`` calls still use ``QueryFunc``."""

DEFAULT_RESEND_DELAY_MS = 60_000  # Prometheus --rules.alert.resend-delay


@dataclass(frozen=True, slots=True)
class EvalOptions:
    external_labels: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    resend_delay_ms: int = DEFAULT_RESEND_DELAY_MS
    stale_markers: bool = True  # write StaleNaN for series a rule stopped returning
    template_query: bool = True  # allow the ``query`` template function


@dataclass(frozen=True, slots=True)
class Notification:
    """An alert as sent to Alertmanager (external labels added, times in ms)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at_ms: int
    ends_at_ms: int
    generator_url: str
    resolved: bool

    @property
    def status(self) -> Literal["firing", "resolved"]:
        return "resolved" if self.resolved else "firing"


@dataclass(frozen=True, slots=True)
class RuleEvalError:
    rule_key: str
    rule_name: str
    message: str


@dataclass(frozen=True, slots=True)
class EvalResult:
    group: Group
    time_ms: int
    states: dict[str, AlertState]  # by Group.rule_key(i); store every one
    notifications: tuple[Notification, ...]
    samples: tuple[Sample, ...]
    errors: tuple[RuleEvalError, ...]
    duration_s: float


def generator_url(external_url: str, expr: str) -> str:
    """Prometheus' ``externalURL + strutil.TableLinkForExpression(expr)``."""
    return external_url.rstrip("/") + "/graph?g0.expr=" + urllib.parse.quote_plus(expr, safe="") + "&g0.tab=1"


def _set_labels(base: dict[str, str], extra: Mapping[str, str]) -> None:
    # labels.Builder.Set with an empty value deletes the label.
    for k, v in extra.items():
        if v == "":
            base.pop(k, None)
        else:
            base[k] = v


def _eval_recording(rule: RecordingRule, vector: list[tuple[dict[str, str], float]], ts: int,
                    limit: int) -> list[Sample]:
    out: list[Sample] = []
    seen: set[tuple[tuple[str, str], ...]] = set()
    for labels, value in vector:
        lb = dict(labels)
        lb["__name__"] = rule.name
        _set_labels(lb, rule.labels)
        key = tuple(sorted(lb.items()))
        if key in seen:
            raise _RuleFailure("vector contains metrics with the same labelset after applying rule labels")
        seen.add(key)
        out.append(Sample(lb, ts, float(value)))
    if limit > 0 and len(out) > limit:
        raise _RuleFailure(f"exceeded limit of {limit} with {len(out)} series")
    return out


class _RuleFailure(MetricsflowError):
    """A rule's result cannot be written (duplicate label sets, limit exceeded)."""


def _candidates(rule: AlertingRule, vector: list[tuple[dict[str, str], float]], ts: int, options: EvalOptions,
                query: QueryFunc | None) -> list[Candidate]:
    out: list[Candidate] = []
    for labels, value in vector:
        data = TemplateData(dict(labels), float(value), options.external_labels, options.external_url)

        def expand(text: str, data: TemplateData = data) -> str:
            return expand_or_error(text, rule.name, data, query=query, time_ms=ts)

        lb = {k: v for k, v in labels.items() if k != "__name__"}
        _set_labels(lb, {k: expand(v) for k, v in rule.labels.items()})
        lb["alertname"] = rule.name
        annotations = {k: expand(v) for k, v in rule.annotations.items()}
        out.append(Candidate(lb, annotations, float(value)))
    return out


def _notification(a: Alert, options: EvalOptions, url: str) -> Notification:
    labels = dict(a.labels)
    for k, v in options.external_labels.items():
        labels.setdefault(k, v)  # the notifier adds external labels the alert does not set
    return Notification(
        labels=labels,
        annotations=dict(a.annotations),
        starts_at_ms=a.fired_at_ms,
        ends_at_ms=a.resolved_at_ms if a.resolved_at_ms else a.valid_until_ms,
        generator_url=url,
        resolved=bool(a.resolved_at_ms),
    )


def evaluate_group(
    group: Group,
    query: QueryFunc,
    time_ms: int,
    states: Mapping[str, AlertState],
    options: EvalOptions | None = None,
    write: Callable[[list[Sample]], None] | None = None,
    rule_query: RuleQueryFunc | None = None,
) -> EvalResult:
    """Evaluate every rule of ``group`` at ``time_ms`` (rules in order; one failing rule
    never stops the others). ``states`` maps ``group.rule_key(i)`` to the previous state;
    missing keys start empty.

    ``write``, if given, receives each rule's samples right after that rule, before the
    next rule runs: Prometheus appends every rule's output to storage at once, so a later
    rule of the same group that queries an earlier rule's ``record`` sees this
    evaluation's value. All samples are also in ``EvalResult.samples``.

    ``rule_query``, if given, answers each rule's own expression (by rule index) instead
    of ``query``; an exception from it is the rule's error, as from ``query``.
    """
    opts = options or EvalOptions()
    started = time.perf_counter()
    ts = time_ms - group.query_offset_ms  # both the query time and the samples' time
    new_states: dict[str, AlertState] = {}
    samples: list[Sample] = []
    notifications: list[Notification] = []
    errors: list[RuleEvalError] = []
    template_query = query if opts.template_query else None

    for i, rule in enumerate(group.rules):
        key = group.rule_key(i)
        prev = states.get(key) or AlertState()
        rule_started = time.perf_counter()
        metrics.RULE_EVALUATIONS.labels(group.key).inc()
        try:
            vector = rule_query(i, rule.expr, ts) if rule_query is not None else query(rule.expr, ts)
            if isinstance(rule, RecordingRule):
                out = _eval_recording(rule, vector, ts, group.limit)
                alerts = prev.alerts
                to_send: list[Alert] = []
            else:
                cands = _candidates(rule, vector, time_ms, opts, template_query)  # template queries: eval time
                alerts, active = step_alerts(prev.alerts, cands, time_ms, rule.for_ms, rule.keep_firing_for_ms)
                if group.limit > 0 and len(active) > group.limit:
                    # Prometheus drops all the rule's alerts when the limit is exceeded.
                    new_states[key] = replace(prev, alerts={}, health="err",
                                              last_error=f"exceeded limit of {group.limit} with {len(active)} alerts",
                                              last_evaluation_ms=time_ms,
                                              evaluation_duration_s=time.perf_counter() - rule_started)
                    errors.append(RuleEvalError(key, rule.name, new_states[key].last_error))
                    metrics.RULE_EVALUATION_FAILURES.labels(group.key).inc()
                    continue
                out = alert_samples(rule.name, active, ts)
                alerts, to_send = select_for_sending(alerts, time_ms, opts.resend_delay_ms, group.interval_ms)
        except Exception as exc:  # query errors, _RuleFailure, DuplicateLabelsetError: recorded on the rule
            message = str(exc) or type(exc).__name__
            new_states[key] = replace(prev, health="err", last_error=message, last_evaluation_ms=time_ms,
                                      evaluation_duration_s=time.perf_counter() - rule_started)
            errors.append(RuleEvalError(key, rule.name, message))
            metrics.RULE_EVALUATION_FAILURES.labels(group.key).inc()
            continue

        series = tuple(sorted({tuple(sorted(s.labels.items())) for s in out}))
        if opts.stale_markers:
            now_set = set(series)
            out = out + [Sample(dict(s), ts, STALE_NAN) for s in prev.last_series if s not in now_set]
        samples.extend(out)
        if write is not None and out:
            write(out)
        if to_send:
            url = generator_url(opts.external_url, rule.expr)
            notifications.extend(_notification(a, opts, url) for a in to_send)
        new_states[key] = AlertState(
            alerts=dict(alerts),
            health="ok",
            last_error="",
            last_evaluation_ms=time_ms,
            evaluation_duration_s=time.perf_counter() - rule_started,
            last_series=series if opts.stale_markers else (),
        )

    duration_s = time.perf_counter() - started
    metrics.RULE_GROUP_EVALUATIONS.labels(group.key).inc()
    metrics.RULE_GROUP_DURATION_SECONDS.labels(group.key).observe(duration_s)
    return EvalResult(group, time_ms, new_states, tuple(notifications), tuple(samples), tuple(errors), duration_s)


# ---------------------------------------------------------------- HTTP API shapes


def _seconds(ms: int) -> float | int:
    # Go encodes float64(60) as 60; keep integral seconds integral.
    s = ms / 1000
    return int(s) if s.is_integer() else s


def _api_alert(a: Alert) -> dict[str, Any]:
    out: dict[str, Any] = {
        "labels": dict(a.labels),
        "annotations": dict(a.annotations),
        "state": a.state,
        "activeAt": format_rfc3339_ms(a.active_at_ms),
        "value": format_float_e_shortest(a.value),
    }
    if a.keep_firing_since_ms:
        out["keepFiringSince"] = format_rfc3339_ms(a.keep_firing_since_ms)
    return out


def _api_rule(rule: AlertingRule | RecordingRule, st: AlertState, exclude_alerts: bool) -> dict[str, Any]:
    common_tail: dict[str, Any] = {"health": st.health}
    if st.last_error:
        common_tail["lastError"] = st.last_error
    common_tail["evaluationTime"] = st.evaluation_duration_s
    common_tail["lastEvaluation"] = format_rfc3339_ms(st.last_evaluation_ms)
    if isinstance(rule, RecordingRule):
        out: dict[str, Any] = {"name": rule.name, "query": rule.expr}
        if rule.labels:
            out["labels"] = dict(rule.labels)
        out.update(common_tail)
        out["type"] = "recording"
        return out
    out = {
        "state": st.rule_state,
        "name": rule.name,
        "query": rule.expr,
        "duration": _seconds(rule.for_ms),
        "keepFiringFor": _seconds(rule.keep_firing_for_ms),
        "labels": dict(rule.labels),
        "annotations": dict(rule.annotations),
    }
    if not exclude_alerts:
        out["alerts"] = [_api_alert(a) for a in st.active_alerts]
    out.update(common_tail)
    out["type"] = "alerting"
    return out


def rules_api_data(
    groups: Sequence[Group],
    states: Mapping[str, AlertState],
    *,
    rule_type: Literal["alert", "record"] | None = None,
    rule_names: Sequence[str] = (),
    group_names: Sequence[str] = (),
    files: Sequence[str] = (),
    exclude_alerts: bool = False,
) -> dict[str, Any]:
    """The ``data`` of ``GET /api/v1/rules`` (wrap as ``{"status": "success", "data": ...}``).

    Filters mirror the endpoint's ``type``, ``rule_name[]``, ``rule_group[]``, ``file[]``
    and ``exclude_alerts`` parameters. A group's ``evaluationTime`` is the sum of its
    rules' evaluation times and ``lastEvaluation`` the latest of theirs.
    """
    out_groups: list[dict[str, Any]] = []
    for g in groups:
        if (group_names and g.name not in group_names) or (files and g.file not in files):
            continue
        rules_json: list[dict[str, Any]] = []
        eval_s = 0.0
        last_ms = 0
        for i, rule in enumerate(g.rules):
            st = states.get(g.rule_key(i)) or AlertState()
            eval_s += st.evaluation_duration_s
            last_ms = max(last_ms, st.last_evaluation_ms)
            if rule_type == "alert" and not isinstance(rule, AlertingRule):
                continue
            if rule_type == "record" and not isinstance(rule, RecordingRule):
                continue
            if rule_names and rule.name not in rule_names:
                continue
            rules_json.append(_api_rule(rule, st, exclude_alerts))
        if (rule_type or rule_names) and not rules_json:
            continue  # Prometheus omits groups left empty by a rule filter
        out_groups.append({
            "name": g.name,
            "file": g.file,
            "rules": rules_json,
            "interval": _seconds(g.interval_ms),
            "limit": g.limit,
            "evaluationTime": eval_s,
            "lastEvaluation": format_rfc3339_ms(last_ms),
        })
    return {"groups": out_groups}


def alerts_api_data(groups: Sequence[Group], states: Mapping[str, AlertState]) -> dict[str, Any]:
    """The ``data`` of ``GET /api/v1/alerts``: every pending or firing alert."""
    alerts: list[dict[str, Any]] = []
    for g in groups:
        for i, rule in enumerate(g.rules):
            if isinstance(rule, AlertingRule):
                st = states.get(g.rule_key(i))
                if st is not None:
                    alerts.extend(_api_alert(a) for a in st.active_alerts)
    return {"alerts": alerts}
