"""The seed JSON shape served on ``/v1/metrics`` (Content-Type application/json).

``{"metrics": [{"metric_name": "cpu", "timestamp": 1764150000000, "value": 1.5,
"tags": {"host": "a"}, "kind": "gauge"}]}``

* ``timestamp`` is ms since the epoch (an integer, or a float that is truncated);
  missing or null means ``now_ms``;
* ``value`` is a number or one of the strings ``"NaN"``, ``"+Inf"``, ``"Inf"``, ``"-Inf"``;
* ``tags`` (optional) maps strings to strings; ``metric_name`` wins over a tag
  called ``__name__``;
* ``kind`` (optional) is ``gauge``, ``counter`` or ``distribution``; the first
  point of a series decides its kind.

Points are grouped by label set. A body that is not JSON, or not an object with
a ``metrics`` list, is refused whole (``bad_json``, ``invalid_utf8``); every
other problem refuses only its point.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from metricsflow.errors import InvalidInput
from metricsflow.ingest._rejections import RejectionLog
from metricsflow.model import METRIC_NAME_LABEL, MetricKind, ParseResult, SeriesSamples

_SPECIAL_VALUES = {"NaN": math.nan, "+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf}
_KINDS = {"gauge": MetricKind.GAUGE, "counter": MetricKind.COUNTER, "distribution": MetricKind.DISTRIBUTION}


def parse_json_points(body: bytes, *, now_ms: int) -> ParseResult:
    """Parse the seed JSON body into series; per-point problems become rejections."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        reason = "invalid_utf8" if "UTF-8" in str(exc) else "bad_json"
        raise InvalidInput(reason, f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("metrics"), list):
        raise InvalidInput("bad_json", 'want an object {"metrics": [...]}')
    groups: dict[tuple[Any, ...], _Group] = {}  # (name, *tag items as sent) -> series
    by_labels: dict[tuple[Any, ...], _Group] = {}
    problems = RejectionLog()
    for index, point in enumerate(doc["metrics"]):
        try:
            key, tags, kind, timestamp_ms, value = _point(point, now_ms)
            try:
                group = groups.get(key)
            except TypeError:  # a list or object as tag value
                raise _PointError("bad_tags", "tag values must be strings") from None
            if group is None:
                group = groups[key] = _new_group(key[0], tags, kind, by_labels)
            if group[1] is _INVALID_KIND:
                raise _PointError("bad_tags", "tag values must be strings")
        except _PointError as exc:
            problems.add(exc.reason, f"metrics[{index}]: {exc}")
            continue
        group[2].append(timestamp_ms)
        group[3].append(value)
    result = ParseResult()
    for labels, kind, timestamps_ms, values in by_labels.values():
        if not values:
            continue
        result.series.append(
            SeriesSamples(
                labels, np.array(timestamps_ms, dtype=np.int64), np.array(values, dtype=np.float64), kind
            )
        )
    result.rejections = problems.to_list()
    return result


_Group = tuple[dict[str, str], Any, list[int], list[float]]
_INVALID_KIND = object()  # marks a key whose tags were found invalid (cached refusal)


def _new_group(name: str, tags: dict[str, Any], kind: MetricKind, by_labels: dict[Any, _Group]) -> _Group:
    """First point of a key: validate its tags once, then find or create its series."""
    for tag_value in tags.values():
        if not isinstance(tag_value, str):
            return ({}, _INVALID_KIND, [], [])
    labels = {**tags, METRIC_NAME_LABEL: name}
    # Tag order can vary between points of one series: merge on the sorted labels,
    # once per distinct key (sorting every point cost ~25% of the parse).
    canonical = tuple(sorted(labels.items()))
    group = by_labels.get(canonical)
    if group is None:
        group = by_labels[canonical] = (labels, kind, [], [])
    return group


class _PointError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _point(point: Any, now_ms: int) -> tuple[tuple[Any, ...], dict[str, Any], MetricKind, int, float]:
    if not isinstance(point, dict):
        raise _PointError("bad_point", f"want an object, got {type(point).__name__}")
    name = point.get("metric_name")
    if not isinstance(name, str) or not name:
        raise _PointError("missing_field", "metric_name missing or not a non-empty string")
    value = _value(point.get("value"))
    timestamp_ms = _timestamp(point.get("timestamp"), now_ms)
    tags = point.get("tags")
    if tags is None:
        tags = {}
    elif not isinstance(tags, dict):
        raise _PointError("bad_tags", "tags must be an object of strings")
    kind_name = point.get("kind")
    if kind_name is None:
        kind = MetricKind.UNSPECIFIED
    else:
        kind = _KINDS.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            raise _PointError(
                "bad_kind", f"kind {str(kind_name)[:40]!r}; want gauge, counter or distribution"
            )
    return (name, *tags.items()), tags, kind, timestamp_ms, value


def _value(value: Any) -> float:
    # bool is an int subclass; true/false are not numbers here.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise _PointError("bad_value", "integer value out of float64 range") from None
    if isinstance(value, str) and value in _SPECIAL_VALUES:
        return _SPECIAL_VALUES[value]
    if value is None:
        raise _PointError("missing_field", "value missing")
    raise _PointError("bad_value", f"value {str(value)[:40]!r} is not a number")


def _timestamp(timestamp: Any, now_ms: int) -> int:
    if timestamp is None:
        return now_ms
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        raise _PointError("bad_timestamp", f"timestamp {str(timestamp)[:40]!r} is not a number of ms")
    if isinstance(timestamp, float):
        if not math.isfinite(timestamp):
            raise _PointError("bad_timestamp", "timestamp is not finite")
        timestamp = int(timestamp)
    if not -(2**63) <= timestamp < 2**63:
        raise _PointError("bad_timestamp", "timestamp out of int64 range")
    return timestamp
