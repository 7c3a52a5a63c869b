"""The alert state machine of one alerting rule: pure functions over immutable values.

Semantics follow Prometheus ``rules/alerting.go`` (``AlertingRule.Eval`` and
``sendAlerts``), per alert identified by its final label set:

* a label set returned by the query for the first time becomes **pending** with
  ``active_at`` = that evaluation time (and is **firing** at once when ``for`` is 0);
* it becomes **firing** at the first evaluation where ``now - active_at >= for``;
* a pending alert that is not returned any more is forgotten (it never fired);
* a firing alert that is not returned any more keeps firing while
  ``now - keep_firing_since < keep_firing_for`` (``keep_firing_since`` = first
  evaluation it was missing), then becomes **inactive** with ``resolved_at`` = now;
* an inactive (resolved) alert is kept for 15 minutes so it can be re-sent as
  resolved; if the label set comes back it starts over as a new pending alert.

Every evaluation emits, for each pending or firing alert, ``ALERTS{alertstate}`` = 1
and ``ALERTS_FOR_STATE`` = ``active_at`` in whole seconds, both at the evaluation
time. Nothing here reads a clock: the caller passes ``time_ms``, so replays and a
successor worker computing from the serialised state reach the same result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from metricsflow.errors import MetricsflowError

__all__ = [
    "ALERTS_FOR_STATE_METRIC",
    "ALERTS_METRIC",
    "FORMAT_VERSION",
    "RESOLVED_RETENTION_MS",
    "Alert",
    "AlertState",
    "AlertStateFormatError",
    "Candidate",
    "DuplicateLabelsetError",
    "Health",
    "Sample",
    "StateName",
    "alert_samples",
    "alert_transitions",
    "fingerprint",
    "select_for_sending",
    "step_alerts",
]

StateName = Literal["inactive", "pending", "firing"]
Health = Literal["ok", "err", "unknown"]

ALERTS_METRIC = "ALERTS"
ALERTS_FOR_STATE_METRIC = "ALERTS_FOR_STATE"
RESOLVED_RETENTION_MS = 15 * 60_000  # rules/alerting.go resolvedRetention
FORMAT_VERSION = 1

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK64 = (1 << 64) - 1


def fingerprint(labels: Mapping[str, str]) -> int:
    """Alertmanager's (Prometheus common/model) label-set fingerprint: FNV-1a 64 over sorted pairs.

    The same number Alertmanager shows as an alert's ``fingerprint``, so logs line up.
    """
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name.encode(), b"\xff", labels[name].encode(), b"\xff"):
            for byte in part:
                h = ((h ^ byte) * _FNV_PRIME) & _MASK64
    return h


def _fp_key(labels: Mapping[str, str]) -> str:
    return f"{fingerprint(labels):016x}"


class DuplicateLabelsetError(MetricsflowError, ValueError):
    """Two query results map to the same alert after the rule's labels were applied."""

    def __init__(self) -> None:
        super().__init__("vector contains metrics with the same labelset after applying alert labels")


class AlertStateFormatError(MetricsflowError, ValueError):
    """Stored alert state could not be decoded (unknown version or corrupt bytes)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One output sample: labels include ``__name__``."""

    labels: dict[str, str]
    time_ms: int
    value: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """One element of the rule's result: final labels (with ``alertname``), expanded annotations."""

    labels: dict[str, str]
    annotations: dict[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert of one rule. Times are ms since the epoch; 0 means "never"."""

    labels: dict[str, str]
    annotations: dict[str, str]
    state: StateName
    active_at_ms: int
    value: float
    fired_at_ms: int = 0
    resolved_at_ms: int = 0
    last_sent_at_ms: int = 0
    valid_until_ms: int = 0
    keep_firing_since_ms: int = 0

    @property
    def fingerprint(self) -> str:
        return _fp_key(self.labels)

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "annotations": self.annotations,
            "state": self.state,
            "active_at_ms": self.active_at_ms,
            # repr keeps NaN/Inf and every bit of the float (JSON has no NaN).
            "value": repr(self.value),
            "fired_at_ms": self.fired_at_ms,
            "resolved_at_ms": self.resolved_at_ms,
            "last_sent_at_ms": self.last_sent_at_ms,
            "valid_until_ms": self.valid_until_ms,
            "keep_firing_since_ms": self.keep_firing_since_ms,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Alert:
        state = d["state"]
        if state not in ("inactive", "pending", "firing"):
            raise AlertStateFormatError(f"unknown alert state {state!r}")
        return cls(
            labels={str(k): str(v) for k, v in d["labels"].items()},
            annotations={str(k): str(v) for k, v in d["annotations"].items()},
            state=state,
            active_at_ms=int(d["active_at_ms"]),
            value=float(d["value"]),
            fired_at_ms=int(d.get("fired_at_ms", 0)),
            resolved_at_ms=int(d.get("resolved_at_ms", 0)),
            last_sent_at_ms=int(d.get("last_sent_at_ms", 0)),
            valid_until_ms=int(d.get("valid_until_ms", 0)),
            keep_firing_since_ms=int(d.get("keep_firing_since_ms", 0)),
        )


@dataclass(frozen=True, slots=True)
class AlertState:
    """Everything one rule (alerting or recording) carries from one evaluation to the next.

    ``alerts`` is keyed by the alert's fingerprint (16 hex digits); ``last_series`` are
    the label sets the rule wrote at its last successful evaluation, so series that
    disappear get a staleness marker. Serialised with :meth:`to_bytes`.
    """

    alerts: dict[str, Alert] = field(default_factory=dict)
    health: Health = "unknown"
    last_error: str = ""
    last_evaluation_ms: int = 0
    evaluation_duration_s: float = 0.0
    last_series: tuple[tuple[tuple[str, str], ...], ...] = ()

    @property
    def active_alerts(self) -> list[Alert]:
        """Pending and firing alerts (not the resolved ones kept for re-sending), in label order."""
        return [a for a in self.sorted_alerts() if a.state != "inactive"]

    def sorted_alerts(self) -> list[Alert]:
        return [self.alerts[k] for k in sorted(self.alerts, key=lambda k: sorted(self.alerts[k].labels.items()))]

    @property
    def rule_state(self) -> StateName:
        """The most severe state of the rule's alerts (the rule's ``state`` in /api/v1/rules)."""
        states = {a.state for a in self.alerts.values()}
        return "firing" if "firing" in states else "pending" if "pending" in states else "inactive"

    def to_bytes(self) -> bytes:
        """Format v1: one UTF-8 JSON object ``{"v": 1, ...}``; see docs/alerting.md."""
        return orjson.dumps(
            {
                "v": FORMAT_VERSION,
                "health": self.health,
                "last_error": self.last_error,
                "last_evaluation_ms": self.last_evaluation_ms,
                "evaluation_duration_s": self.evaluation_duration_s,
                "alerts": [a.to_json() for a in self.sorted_alerts()],
                "last_series": [list(map(list, s)) for s in self.last_series],
            },
            option=orjson.OPT_SORT_KEYS,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> AlertState:
        try:
            d = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise AlertStateFormatError(f"cannot decode alert state: {exc}") from None
        if not isinstance(d, dict) or d.get("v") != FORMAT_VERSION:
            version = d.get("v") if isinstance(d, dict) else None
            raise AlertStateFormatError(f"unsupported alert state format version {version!r}")
        try:
            alerts = [Alert.from_json(a) for a in d["alerts"]]
            health = d["health"]
            if health not in ("ok", "err", "unknown"):
                raise AlertStateFormatError(f"unknown health {health!r}")
            return cls(
                alerts={a.fingerprint: a for a in alerts},
                health=health,
                last_error=str(d["last_error"]),
                last_evaluation_ms=int(d["last_evaluation_ms"]),
                evaluation_duration_s=float(d["evaluation_duration_s"]),
                last_series=tuple(tuple((str(k), str(v)) for k, v in s) for s in d["last_series"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, AlertStateFormatError):
                raise
            raise AlertStateFormatError(f"corrupt alert state: {exc!r}") from None


def step_alerts(
    alerts: Mapping[str, Alert],
    candidates: Sequence[Candidate],
    time_ms: int,
    for_ms: int,
    keep_firing_for_ms: int,
) -> tuple[dict[str, Alert], list[Alert]]:
    """One evaluation of an alerting rule's state.

    Returns the new alert map and the alerts that count as active this evaluation
    (pending, firing, or kept firing), in label order; these produce the ALERTS
    samples and count against the group ``limit``. Raises
    :class:`DuplicateLabelsetError` (state unchanged) when two candidates collide.
    """
    seen: dict[str, Candidate] = {}
    for c in candidates:
        key = _fp_key(c.labels)
        if key in seen:
            raise DuplicateLabelsetError()
        seen[key] = c

    new: dict[str, Alert] = {}
    for key, c in seen.items():
        old = alerts.get(key)
        if old is not None and old.state != "inactive":
            # Still active: refresh value and annotations, clear keep_firing_since.
            new[key] = replace(old, value=c.value, annotations=c.annotations, keep_firing_since_ms=0)
        else:
            new[key] = Alert(c.labels, c.annotations, "pending", active_at_ms=time_ms, value=c.value)

    for key, old in alerts.items():
        if key in seen:
            continue
        if old.state == "pending":
            continue  # never fired: forgotten at once
        if old.state == "inactive":
            if time_ms - old.resolved_at_ms <= RESOLVED_RETENTION_MS:
                new[key] = old
            continue
        # firing, no longer returned
        since = old.keep_firing_since_ms or time_ms
        if keep_firing_for_ms > 0 and time_ms - since < keep_firing_for_ms:
            new[key] = replace(old, keep_firing_since_ms=since)
        else:
            new[key] = replace(old, state="inactive", resolved_at_ms=time_ms,
                               keep_firing_since_ms=since if keep_firing_for_ms > 0 else 0)

    active: list[Alert] = []
    for key in sorted(new, key=lambda k: sorted(new[k].labels.items())):
        a = new[key]
        if a.state == "inactive":
            continue
        if a.state == "pending" and time_ms - a.active_at_ms >= for_ms:
            a = replace(a, state="firing", fired_at_ms=time_ms)
            new[key] = a
        active.append(a)
    return new, active


def alert_samples(alert_name: str, active: Iterable[Alert], time_ms: int) -> list[Sample]:
    """``ALERTS`` and ``ALERTS_FOR_STATE`` for each active alert, as Prometheus writes them."""
    out: list[Sample] = []
    for a in active:
        base = dict(a.labels)
        base["alertname"] = alert_name
        out.append(Sample({**base, "__name__": ALERTS_METRIC, "alertstate": a.state}, time_ms, 1.0))
        # float64(ActiveAt.Unix()): whole seconds, floored.
        out.append(Sample({**base, "__name__": ALERTS_FOR_STATE_METRIC}, time_ms, float(a.active_at_ms // 1000)))
    return out


def _needs_sending(a: Alert, time_ms: int, resend_delay_ms: int) -> bool:
    if a.state == "pending":
        return False
    if a.resolved_at_ms > a.last_sent_at_ms:
        return True  # resolved since the last send
    return a.last_sent_at_ms + resend_delay_ms < time_ms


def select_for_sending(
    alerts: Mapping[str, Alert], time_ms: int, resend_delay_ms: int, interval_ms: int
) -> tuple[dict[str, Alert], list[Alert]]:
    """Which alerts to (re)send now, and the state with their send time recorded.

    Firing alerts are re-sent every ``resend_delay`` with ``valid_until`` =
    now + 4 × max(interval, resend_delay) ("allow for two Eval or Alertmanager send
    failures"); resolved alerts are re-sent while retained (15 min).
    """
    new = dict(alerts)
    out: list[Alert] = []
    delta = max(interval_ms, resend_delay_ms)
    for key in sorted(alerts, key=lambda k: sorted(alerts[k].labels.items())):
        a = alerts[key]
        if _needs_sending(a, time_ms, resend_delay_ms):
            a = replace(a, last_sent_at_ms=time_ms, valid_until_ms=time_ms + 4 * delta)
            new[key] = a
            out.append(a)
    return new, out



def alert_transitions(rule_key: str, before: AlertState | None, after: AlertState) -> list[tuple[bytes, bytes | None]]:
    """Records for the compacted ``mf.alerts`` topic: one per alert whose state changed.

    Key ``<rule_key>/<fingerprint>``; value the alert as JSON (``Alert.to_json`` plus
    ``"v": 1``), or None (a tombstone) when the rule forgot the alert. Only state,
    activeAt, firedAt, resolvedAt or keepFiringSince changes count: value updates and
    send bookkeeping do not, so the topic carries transitions, not every evaluation.
    """
    old = before.alerts if before is not None else {}
    out: list[tuple[bytes, bytes | None]] = []

    def ident(a: Alert) -> tuple[str, int, int, int, int]:
        return a.state, a.active_at_ms, a.fired_at_ms, a.resolved_at_ms, a.keep_firing_since_ms

    for fp in sorted(set(old) | set(after.alerts)):
        key = f"{rule_key}/{fp}".encode()
        a, b = old.get(fp), after.alerts.get(fp)
        if b is None:
            out.append((key, None))
        elif a is None or ident(a) != ident(b):
            out.append((key, orjson.dumps({"v": FORMAT_VERSION, **b.to_json()}, option=orjson.OPT_SORT_KEYS)))
    return out
