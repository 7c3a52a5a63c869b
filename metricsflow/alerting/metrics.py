"""The alerting subsystem's own meta-metrics (prometheus-client, default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RULE_GROUP_EVALUATIONS = Counter(
    "mf_alerting_rule_group_evaluations", "Rule group evaluations", ["rule_group"]
)
RULE_EVALUATIONS = Counter("mf_alerting_rule_evaluations", "Rule evaluations", ["rule_group"])
RULE_EVALUATION_FAILURES = Counter(
    "mf_alerting_rule_evaluation_failures", "Rule evaluations that failed (query error, duplicate labels, limit)",
    ["rule_group"],
)
RULE_GROUP_DURATION_SECONDS = Histogram(
    "mf_alerting_rule_group_duration_seconds", "Wall time of one rule group evaluation", ["rule_group"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60),
)
NOTIFICATIONS_SENT = Counter(
    "mf_alerting_notifications_sent", "Alerts delivered to a receiver", ["receiver"]
)
NOTIFICATIONS_FAILED = Counter(
    "mf_alerting_notifications_failed", "Alerts a receiver did not accept after all retries", ["receiver"]
)
NOTIFICATIONS_DROPPED = Counter(
    "mf_alerting_notifications_dropped", "Alerts dropped because the receiver's queue was full (oldest first)",
    ["receiver"],
)
NOTIFICATION_QUEUE_LENGTH = Gauge(
    "mf_alerting_notification_queue_length", "Alerts waiting in a receiver's queue", ["receiver"]
)
NOTIFICATION_LATENCY_SECONDS = Histogram(
    "mf_alerting_notification_latency_seconds", "Time of one successful send (incl. retries)", ["receiver"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30),
)
RULE_PARTIALS_SENT = Counter(
    "mf_worker_rule_partials_sent",
    "Partial rule results this worker computed, one per group evaluation and partition it covered",
    ["partition"],
)
RULE_PARTIALS_RECEIVED = Counter(
    "mf_alerting_rule_partials_received", "Partial rule results stored by a group owner", ["rule_group"]
)
RULE_PARTIALS_REFUSED = Counter(
    "mf_alerting_rule_partials_refused", "Partial rule results not used, by reason (unreadable, late)", ["reason"]
)
RULE_EVALUATIONS_SKIPPED = Counter(
    "mf_alerting_rule_group_evaluations_skipped",
    "Evaluation times dropped by a group owner: partials never covered every partition (incomplete) or a later "
    "time was complete first (superseded)",
    ["rule_group", "reason"],
)
RULE_PARTIALS_BEHIND = Counter(
    "mf_worker_rule_partials_behind_watermark",
    "Partials sent before the partition consumed every mf.points record that existed at their evaluation time "
    "(MF_RULE_WATERMARK_WAIT_S ran out)",
    ["partition"],
)
RULE_WATERMARK_WAIT_SECONDS = Histogram(
    "mf_worker_rule_watermark_wait_seconds",
    "From reading the end offsets at an evaluation time to every partition having consumed up to them",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
