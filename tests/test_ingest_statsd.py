"""StatsD / DogStatsD datagram parser."""

from __future__ import annotations

import math

import pytest

from metricsflow.ingest.statsd import COUNTER, DISTRIBUTION, GAUGE, HISTOGRAM, SET, TIMER, parse_statsd


def test_types_rates_tags_and_multi_values():
    batch = parse_statsd(
        b"page.views:1|c|@0.5|#env:prod,role\n"
        b"temp:21.5|g\n"
        b"temp:-2|g\n"
        b"temp:+3|g\n"
        b"db.query:12:15:18|ms|#db:main\n"
        b"h:1|h\n"
        b"d:2.5|d|#a:b|T1764150000\n"
        b"users:bob:1|s\n"
    )
    assert batch.rejections == []
    assert batch.names == [
        "page.views",
        "temp",
        "temp",
        "temp",
        "db.query",
        "db.query",
        "db.query",
        "h",
        "d",
        "users",
    ]
    assert batch.types.tolist() == [
        COUNTER,
        GAUGE,
        GAUGE,
        GAUGE,
        TIMER,
        TIMER,
        TIMER,
        HISTOGRAM,
        DISTRIBUTION,
        SET,
    ]
    assert batch.values[:9].tolist() == [1, 21.5, -2, 3, 12, 15, 18, 1, 2.5]
    assert math.isnan(batch.values[9]) and batch.set_members == {9: "bob:1"}
    assert batch.gauge_deltas.tolist() == [False, False, True, True] + [False] * 6
    assert batch.sample_rates.tolist()[0] == 0.5
    assert batch.tags[0] == (("env", "prod"), ("role", ""))
    assert batch.tags[4] is batch.tags[6]  # one tuple per distinct tag string
    assert batch.timestamps_ms.tolist()[8] == 1764150000000
    assert len(batch) == 10


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"novalue", "bad_line"),
        (b"name|c", "bad_line"),
        (b":1|c", "bad_line"),
        (b"x:1|q", "unsupported_type"),
        (b"x:abc|c", "bad_value"),
        (b"x:nan|g", "bad_value"),
        (b"x:1:zz|ms", "bad_value"),
        (b"x:1|c|@2", "bad_sample_rate"),
        (b"x:1|c|@0", "bad_sample_rate"),
        (b"x:1|c|@x", "bad_sample_rate"),
        (b"x:1|c|Tsoon", "bad_timestamp"),
        (b"x:1|c|T99999999999999999", "bad_timestamp"),
        (b"_e{5,4}:title|text", "unsupported_type"),
        (b"_sc|svc|0", "unsupported_type"),
        (b"x:\xff|c", "invalid_utf8"),
    ],
)
def test_bad_lines_counted_rest_kept(line, reason):
    batch = parse_statsd(b"ok:1|c\n" + line + b"\nok:2|c")
    assert batch.values.tolist() == [1.0, 2.0]
    assert [(r.reason, r.points) for r in batch.rejections] == [(reason, 1)]


def test_empty_and_blank():
    assert len(parse_statsd(b"")) == 0
    assert len(parse_statsd(b"\n\n  \n")) == 0
    assert parse_statsd(b"").rejections == []
