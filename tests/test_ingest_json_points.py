"""Seed JSON shape parser: grouping, special values, per-point refusals."""

from __future__ import annotations

import json
import math

import orjson
import pytest

from metricsflow.errors import InvalidInput
from metricsflow.ingest.json_points import parse_json_points
from metricsflow.model import MetricKind

NOW_MS = 1_700_000_000_000


def _parse(points):
    return parse_json_points(orjson.dumps({"metrics": points}), now_ms=NOW_MS)


def test_seed_example_and_grouping():
    result = _parse(
        [
            {"metric_name": "cpu", "timestamp": 1764150000000, "value": 1.5, "tags": {"host": "a"}},
            {"metric_name": "cpu", "timestamp": 1764150010000, "value": 2, "tags": {"host": "a"}},
            {"metric_name": "cpu", "timestamp": 1764150000000, "value": 9, "tags": {"host": "b"}},
            {"metric_name": "reqs", "value": 3, "kind": "counter"},
        ]
    )
    assert result.rejections == []
    got = {(s.labels["__name__"], s.labels.get("host")): s for s in result.series}
    assert got[("cpu", "a")].timestamps_ms.tolist() == [1764150000000, 1764150010000]
    assert got[("cpu", "a")].values.tolist() == [1.5, 2.0]
    assert got[("cpu", "b")].values.tolist() == [9.0]
    assert got[("reqs", None)].timestamps_ms.tolist() == [NOW_MS]
    assert got[("reqs", None)].kind == MetricKind.COUNTER
    assert got[("cpu", "a")].kind == MetricKind.UNSPECIFIED


def test_tag_order_does_not_matter():
    result = _parse(
        [
            {"metric_name": "m", "value": 1, "tags": {"a": "1", "b": "2"}},
            {"metric_name": "m", "value": 2, "tags": {"b": "2", "a": "1"}},
        ]
    )
    assert len(result.series) == 1


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("NaN", math.isnan),
        ("+Inf", lambda v: v == math.inf),
        ("Inf", lambda v: v == math.inf),
        ("-Inf", lambda v: v == -math.inf),
    ],
)
def test_special_values(text, check):
    [s] = _parse([{"metric_name": "m", "value": text}]).series
    assert check(s.values[0])


@pytest.mark.parametrize(
    ("point", "reason"),
    [
        ({"value": 1}, "missing_field"),
        ({"metric_name": "", "value": 1}, "missing_field"),
        ({"metric_name": 5, "value": 1}, "missing_field"),
        ({"metric_name": "m"}, "missing_field"),
        ({"metric_name": "m", "value": "1.5"}, "bad_value"),
        ({"metric_name": "m", "value": True}, "bad_value"),
        ({"metric_name": "m", "value": [1]}, "bad_value"),
        ({"metric_name": "m", "value": {"a": 1}}, "bad_value"),
        ({"metric_name": "m", "value": 1, "tags": {"h": 1}}, "bad_tags"),
        ({"metric_name": "m", "value": 1, "tags": ["h"]}, "bad_tags"),
        ({"metric_name": "m", "value": 1, "timestamp": "now"}, "bad_timestamp"),
        ({"metric_name": "m", "value": 1, "timestamp": 2**70}, "bad_timestamp"),
        ({"metric_name": "m", "value": 1, "kind": "histogram"}, "bad_kind"),
        ("not an object", "bad_point"),
        (None, "bad_point"),
    ],
)
def test_point_rejections(point, reason):
    body = b'{"metrics": [{"metric_name": "ok", "value": 1}, ' + json.dumps(point).encode() + b"]}"
    result = parse_json_points(body, now_ms=NOW_MS)
    assert [s.labels["__name__"] for s in result.series] == ["ok"]
    assert [(r.reason, r.points) for r in result.rejections] == [(reason, 1)]
    assert "metrics[1]" in result.rejections[0].detail


def test_float_timestamp_truncated():
    [s] = _parse([{"metric_name": "m", "value": 1, "timestamp": 1764150000000.7}]).series
    assert s.timestamps_ms.tolist() == [1764150000000]


def test_metric_name_wins_over_name_tag():
    [s] = _parse([{"metric_name": "m", "value": 1, "tags": {"__name__": "other"}}]).series
    assert s.labels == {"__name__": "m"}


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"metrics": {}}', b'{"other": []}', b"null", b'{"metrics": [1,'],
)
def test_bad_json(body):
    with pytest.raises(InvalidInput) as err:
        parse_json_points(body, now_ms=NOW_MS)
    assert err.value.reason == "bad_json"


def test_invalid_utf8_body():
    with pytest.raises(InvalidInput) as err:
        parse_json_points(b'{"metrics": [{"metric_name": "\xff", "value": 1}]}', now_ms=NOW_MS)
    assert err.value.reason == "invalid_utf8"


def test_huge_numbers():
    # orjson reads integers beyond 64 bits as floats and refuses infinities (whole body).
    [s] = parse_json_points(
        b'{"metrics": [{"metric_name": "m", "value": 1' + b"0" * 25 + b"}]}", now_ms=NOW_MS
    ).series
    assert s.values.tolist() == [1e25]
    with pytest.raises(InvalidInput):
        parse_json_points(b'{"metrics": [{"metric_name": "m", "value": 1e999}]}', now_ms=NOW_MS)


def test_empty_list():
    assert _parse([]).series == []
