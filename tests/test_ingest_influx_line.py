"""InfluxDB line protocol parser: the docs' examples as golden cases, then the edges."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from metricsflow.errors import InvalidInput
from metricsflow.ingest.influx_line import parse_influx_line

NOW_MS = 1_700_000_000_000
FIXTURE = Path(__file__).parent / "fixtures" / "ingest" / "influx_docs.txt"


def _cases() -> list[tuple[str, list[str]]]:
    text = FIXTURE.read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#|"))
    cases = []
    for block in body.split("\n----\n"):
        given, _, expected = block.strip("\n").partition("\n=>\n")
        cases.append((given, [e for e in expected.split("\n") if e]))
    return cases


def _points(result) -> list[tuple[str, tuple, int, float]]:
    out = []
    for s in result.series:
        labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "__name__"))
        for t, v in zip(s.timestamps_ms.tolist(), s.values.tolist(), strict=True):
            out.append((s.labels["__name__"], labels, t, v))
    return out


def _expected_point(entry: str) -> tuple[str, tuple, int, float]:
    name, rest = entry.split(" ", 1)
    labels_text, ts, value = rest.rsplit(" ", 2)
    labels = (
        () if labels_text == "{}" else tuple(sorted(tuple(kv.split("=", 1)) for kv in labels_text.split("|")))
    )
    return name, labels, int(ts), float(value)


@pytest.mark.parametrize(("given", "expected"), _cases(), ids=lambda x: x if isinstance(x, str) else "")
def test_influx_docs_examples(given, expected):
    # A comment line inside a case (the docs' comment example) must be skipped by the parser.
    result = parse_influx_line(given.encode(), now_ms=NOW_MS)
    want_points = [_expected_point(e) for e in expected if not e.startswith("!")]
    want_rejections = Counter(e[1:] for e in expected if e.startswith("!"))
    assert sorted(_points(result)) == sorted(want_points)
    assert Counter({r.reason: r.points for r in result.rejections}) == want_rejections


def test_fixture_has_cases():
    assert len(_cases()) >= 15


@pytest.mark.parametrize(
    ("precision", "stamp", "want_ms"),
    [
        ("ns", "1465839830100400200", 1465839830100),
        ("n", "1465839830100400200", 1465839830100),
        ("us", "1465839830100400", 1465839830100),
        ("u", "1465839830100400", 1465839830100),
        ("ms", "1465839830100", 1465839830100),
        ("s", "1465839830", 1465839830000),
        ("m", "24430663", 24430663 * 60_000),
        ("h", "407177", 407177 * 3_600_000),
        ("ns", "-1000000", -1),
    ],
)
def test_precision(precision, stamp, want_ms):
    [s] = parse_influx_line(f"m v=1 {stamp}".encode(), now_ms=NOW_MS, precision=precision).series
    assert s.timestamps_ms.tolist() == [want_ms]


def test_bad_precision():
    with pytest.raises(InvalidInput) as err:
        parse_influx_line(b"m v=1", now_ms=NOW_MS, precision="d")
    assert err.value.reason == "bad_precision"


@pytest.mark.parametrize("word", ["t", "T", "true", "True", "TRUE"])
def test_true_spellings(word):
    [s] = parse_influx_line(f"m ok={word} 1".encode(), now_ms=NOW_MS).series
    assert s.values.tolist() == [1.0]


@pytest.mark.parametrize("word", ["f", "F", "false", "False", "FALSE"])
def test_false_spellings(word):
    [s] = parse_influx_line(f"m ok={word} 1".encode(), now_ms=NOW_MS).series
    assert s.values.tolist() == [0.0]


@pytest.mark.parametrize(
    "line",
    [
        "m v=tRUE",
        "m v=nan",
        "m v=inf",
        "m v=1e999",
        "m v=1_000",
        "m v=-1u",
        "m v=1.5i",
        "m v=abc",
        "m v=",
        "m =1",
        "m",
        "m v=1 notanumber",
        "m v=1 1 2",
        "m v=1 99999999999999999999",
        "m v=1 -9223372036854775809",
        "m,tag v=1",
        ",t=1 v=1",
        'm s="unterminated',
    ],
)
def test_bad_lines_are_refused_alone(line):
    body = f"ok v=1 1\n{line}\nok v=2 2\n".encode()
    result = parse_influx_line(body, now_ms=NOW_MS)
    [s] = result.series
    assert s.values.tolist() == [1.0, 2.0]
    assert result.rejected_points == 1
    assert result.rejections[0].reason == "bad_line"
    assert "line 2" in result.rejections[0].detail


def test_string_field_refused_other_fields_kept():
    result = parse_influx_line(b'm,h=a s="x y, z=1",v=2i,w=3 10000000', now_ms=NOW_MS)
    names = sorted(s.labels["__name__"] for s in result.series)
    assert names == ["m_v", "m_w"]
    assert [(r.reason, r.points) for r in result.rejections] == [("unsupported_field_type", 1)]


def test_multiple_fields_series_and_grouping():
    body = b"cpu,host=a usage_user=1,usage_system=2 1000000\ncpu,host=a usage_user=3,usage_system=4 2000000\n"
    by_name = {s.labels["__name__"]: s for s in parse_influx_line(body, now_ms=NOW_MS).series}
    assert by_name["cpu_usage_user"].values.tolist() == [1.0, 3.0]
    assert by_name["cpu_usage_system"].timestamps_ms.tolist() == [1, 2]
    assert by_name["cpu_usage_user"].labels == {"host": "a", "__name__": "cpu_usage_user"}


def test_tag_order_does_not_split_series():
    body = b"m,a=1,b=2 v=1 1000000\nm,b=2,a=1 v=2 2000000\n"
    [s] = parse_influx_line(body, now_ms=NOW_MS).series
    assert s.values.tolist() == [1.0, 2.0]


def test_value_field_alias():
    [s] = parse_influx_line(b"temp,room=k value=21.5", now_ms=NOW_MS).series
    assert s.labels["__name__"] == "temp_value"  # VictoriaMetrics-compatible default
    [s] = parse_influx_line(b"temp,room=k value=21.5", now_ms=NOW_MS, value_field_is_name=True).series
    assert s.labels["__name__"] == "temp"


def test_name_sanitising():
    [s] = parse_influx_line(b"disk.io,dev-name=sda,1x=y read-bytes=1", now_ms=NOW_MS).series
    assert s.labels == {"__name__": "disk_io_read_bytes", "dev_name": "sda", "key_1x": "y"}


def test_empty_tag_value_dropped_and_duplicate_tag_refused():
    [s] = parse_influx_line(b"m,a=,b=1 v=1", now_ms=NOW_MS).series
    assert s.labels == {"__name__": "m_v", "b": "1"}
    result = parse_influx_line(b"m,a.b=1,a_b=2 v=1", now_ms=NOW_MS)
    assert result.series == []
    assert result.rejections[0].reason == "duplicate_label_name"


def test_comments_blank_lines_crlf_and_whitespace():
    body = b"# header\n\n   \r\n  # indented comment\nm v=1 1000000\r\nm v=2 2000000   \n"
    result = parse_influx_line(body, now_ms=NOW_MS)
    [s] = result.series
    assert s.values.tolist() == [1.0, 2.0]
    assert result.rejections == []


def test_invalid_utf8_line_refused_rest_kept():
    body = b"m v=1 1000000\nm,h=\xff\xfe v=2 2000000\nm v=3 3000000\n"
    result = parse_influx_line(body, now_ms=NOW_MS)
    [s] = result.series
    assert s.values.tolist() == [1.0, 3.0]
    assert [(r.reason, r.points) for r in result.rejections] == [("invalid_utf8", 1)]


def test_missing_timestamp_uses_now():
    [s] = parse_influx_line(b"m v=1", now_ms=NOW_MS).series
    assert s.timestamps_ms.tolist() == [NOW_MS]


def test_columns_are_numpy():
    [s] = parse_influx_line(b"m v=1 1000000", now_ms=NOW_MS).series
    assert s.timestamps_ms.dtype == np.int64 and s.values.dtype == np.float64


def test_many_bad_lines_are_summarised():
    body = b"\n".join(b"bad line %d x" % i for i in range(1000))
    [r] = parse_influx_line(body, now_ms=NOW_MS).rejections
    assert r.points == 1000 and r.detail.count("line ") <= 5


def test_bad_line_with_string_field_counts_once():
    result = parse_influx_line(b'm s="x",v=abc 1', now_ms=NOW_MS)
    assert [(r.reason, r.points) for r in result.rejections] == [("bad_line", 1)]
