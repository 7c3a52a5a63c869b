"""Alerting: Prometheus rule files, the alert state machine, rule evaluation, notifications.

Modules, one job each:

* :mod:`.rules` — load and validate rule files (``load_rule_file`` → groups + errors);
* :mod:`.durations` — Prometheus duration strings;
* :mod:`.templates`, :mod:`.template_funcs` — Go-template expansion of labels and annotations;
* :mod:`.gofmt` — Go's formatting of numbers and times;
* :mod:`.state` — the per-rule alert state machine and its serialised form;
* :mod:`.evaluator` — ``evaluate_group`` and the ``/api/v1/rules`` / ``/api/v1/alerts`` shapes;
* :mod:`.query` — the PromQL engine's instant query as the evaluator's query function;
* :mod:`.partials` — the per-partition partial results of a group evaluation, and their exact cover;
* :mod:`.notify` — Alertmanager and webhook notifiers behind bounded queues;
* :mod:`.metrics` — the subsystem's meta-metrics.

See docs/alerting.md.
"""

from __future__ import annotations

from .evaluator import (
    EvalOptions,
    EvalResult,
    Notification,
    QueryFunc,
    alerts_api_data,
    evaluate_group,
    rules_api_data,
)
from .notify import NotificationDispatcher, Notifier, RetryPolicy
from .query import instant_query_func
from .rules import AlertingRule, Group, RecordingRule, RuleFileError, load_rule_file, load_rule_files, load_rule_text
from .state import Alert, AlertState, Sample

__all__ = [
    "Alert",
    "AlertState",
    "AlertingRule",
    "EvalOptions",
    "EvalResult",
    "Group",
    "Notification",
    "NotificationDispatcher",
    "Notifier",
    "QueryFunc",
    "RecordingRule",
    "RetryPolicy",
    "RuleFileError",
    "Sample",
    "alerts_api_data",
    "evaluate_group",
    "instant_query_func",
    "load_rule_file",
    "load_rule_files",
    "load_rule_text",
    "rules_api_data",
]
