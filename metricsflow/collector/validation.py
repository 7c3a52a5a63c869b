"""Validation of parsed series before they are hashed and shipped.

A bad label set rejects its whole series; a bad timestamp rejects just that
point (the rest of the series goes on). Reasons are short snake_case words that
the client sees and the rejection counter is labelled with.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from metricsflow.config import Settings
from metricsflow.model import METRIC_NAME_LABEL, Rejection, SeriesSamples

METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TENANT_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_DETAIL_CHARS = 120  # a 10 MB label value must not come back in the error


def _clip(text: str) -> str:
    return text if len(text) <= _DETAIL_CHARS else text[:_DETAIL_CHARS] + f"…({len(text)} chars)"


@dataclass(frozen=True, slots=True)
class Limits:
    max_labels: int
    max_label_name_bytes: int
    max_label_value_bytes: int
    max_past_ms: int
    max_future_ms: int

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(s.max_labels, s.max_label_name_bytes, s.max_label_value_bytes, s.max_past_ms, s.max_future_ms)


def check_tenant(tenant: str, allowed: tuple[str, ...]) -> Rejection | None:
    if not TENANT_RE.fullmatch(tenant):
        return Rejection("invalid_tenant", f"tenant {_clip(tenant)!r} must match [A-Za-z0-9_.-]{{1,64}}")
    if allowed and tenant not in allowed:
        return Rejection("unknown_tenant", f"tenant {tenant!r} is not configured on this collector")
    return None


# Label names found valid, by the name length limit they were checked against: a new series'
# label set is mostly names seen before, and the checks were half of check_labels' time.
_VALID_NAMES: dict[int, set[str]] = {}
_VALID_NAMES_KEPT = 4096


def check_labels(labels: dict[str, str], limits: Limits) -> Rejection | None:
    """Why this label set cannot be stored, or None."""
    n = len(labels)
    name = labels.get(METRIC_NAME_LABEL)
    if not name:
        return Rejection("missing_metric_name", "series has no __name__ label", 0)
    if not METRIC_NAME_RE.fullmatch(name):
        return Rejection("invalid_metric_name", f"metric name {_clip(name)!r} must match [a-zA-Z_:][a-zA-Z0-9_:]*", 0)
    if n > limits.max_labels:
        return Rejection("too_many_labels", f"{name}: {n} labels, at most {limits.max_labels}", 0)
    valid = _VALID_NAMES.get(limits.max_label_name_bytes)
    if valid is None:
        valid = _VALID_NAMES[limits.max_label_name_bytes] = set()
    for key, value in labels.items():
        if key not in valid:
            if len(key) > limits.max_label_name_bytes or len(key.encode()) > limits.max_label_name_bytes:
                size = len(key.encode())
                return Rejection("label_name_too_long",
                                 f"{name}: label name of {size} bytes, at most {limits.max_label_name_bytes}", 0)
            if key != METRIC_NAME_LABEL and (not LABEL_NAME_RE.fullmatch(key) or key.startswith("__")):
                return Rejection("invalid_label_name", f"{name}: label name {_clip(key)!r} is invalid or reserved", 0)
            if len(valid) < _VALID_NAMES_KEPT:
                valid.add(key)
        if len(value) * 4 > limits.max_label_value_bytes and len(value.encode()) > limits.max_label_value_bytes:
            return Rejection("label_value_too_long",
                             f"{name}: label {key} value of {len(value.encode())} bytes, "
                             f"at most {limits.max_label_value_bytes}", 0)
    return None


def validate(series: list[SeriesSamples], limits: Limits, now_ms: int,
             check: Callable[[dict[str, str]], Rejection | None] | None = None,
             ) -> tuple[list[SeriesSamples], list[Rejection]]:
    """Split parsed series into what may be stored and what was refused (with point counts).

    ``check`` replaces ``check_labels`` (the pipeline passes a cached one).
    """
    ok: list[SeriesSamples] = []
    rejections: list[Rejection] = []
    lo, hi = now_ms - limits.max_past_ms, now_ms + limits.max_future_ms
    for s in series:
        bad = check(s.labels) if check is not None else check_labels(s.labels, limits)
        if bad is not None:
            rejections.append(Rejection(bad.reason, bad.detail, len(s)))
            continue
        ts = s.timestamps_ms
        in_window = (ts >= lo) & (ts <= hi)
        if not in_window.all():
            n_old = int((ts < lo).sum())
            n_future = int((ts > hi).sum())
            name = s.labels[METRIC_NAME_LABEL]
            if n_old:
                rejections.append(Rejection("too_old", f"{name}: {n_old} points older than the accept window "
                                            f"({limits.max_past_ms // 1000} s)", n_old))
            if n_future:
                rejections.append(Rejection("too_far_in_future", f"{name}: {n_future} points more than "
                                            f"{limits.max_future_ms // 1000} s ahead of the collector clock", n_future))
            if not in_window.any():
                continue
            s = SeriesSamples(s.labels, ts[in_window], s.values[in_window], s.kind)
        ok.append(s)
    return ok, rejections
