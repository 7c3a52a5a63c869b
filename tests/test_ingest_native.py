"""Native metricsflow.v1.WriteRequest parser: packed fields, LE byte columns, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from metricsflow.errors import InvalidInput
from metricsflow.ingest.native import encode_native, parse_native
from metricsflow.model import STALE_NAN, STALE_NAN_BITS, MetricKind, SeriesSamples
from metricsflow.pb import metricsflow_pb2 as pb


def _series(**kw):
    req = pb.WriteRequest()
    s = req.series.add(**kw)
    s.labels.add(name="__name__", value="cpu")
    s.labels.add(name="host", value="a")
    return req, s


def test_packed_fields():
    req, s = _series(kind=pb.METRIC_KIND_GAUGE)
    s.timestamps_ms.extend([1000, 2000])
    s.values.extend([1.5, 2.5])
    [got] = parse_native(req.SerializeToString()).series
    assert got.labels == {"__name__": "cpu", "host": "a"}
    assert got.timestamps_ms.tolist() == [1000, 2000] and got.values.tolist() == [1.5, 2.5]
    assert got.kind == MetricKind.GAUGE


def test_le_columns_win_and_keep_stale_bits():
    req, s = _series(kind=pb.METRIC_KIND_COUNTER)
    s.timestamps_ms.extend([1])  # ignored: columns win
    s.values.extend([9.0])
    s.timestamps_ms_le = np.array([10, 20, 30], "<i8").tobytes()
    s.values_le = np.array([1.0, STALE_NAN, 3.0], "<f8").tobytes()
    [got] = parse_native(req.SerializeToString()).series
    assert got.timestamps_ms.tolist() == [10, 20, 30]
    assert got.values.view(np.uint64)[1] == np.uint64(STALE_NAN_BITS)
    assert got.kind == MetricKind.COUNTER


@pytest.mark.parametrize(
    ("ts_bytes", "vs_bytes"),
    [(16, 8), (12, 12), (8, 0), (0, 8), (7, 7)],
)
def test_bad_columns(ts_bytes, vs_bytes):
    req, s = _series()
    s.timestamps_ms_le = b"\x01" * ts_bytes
    s.values_le = b"\x01" * vs_bytes
    ok = req.series.add()
    ok.labels.add(name="__name__", value="ok")
    ok.timestamps_ms.append(1)
    ok.values.append(1.0)
    result = parse_native(req.SerializeToString())
    assert [x.labels["__name__"] for x in result.series] == ["ok"]
    assert [r.reason for r in result.rejections] == ["bad_columns"]


def test_mismatched_packed_lengths():
    req, s = _series()
    s.timestamps_ms.extend([1, 2])
    s.values.extend([1.0])
    result = parse_native(req.SerializeToString())
    assert result.series == [] and result.rejections[0].reason == "bad_columns"


def test_invalid_utf8_refuses_only_that_series():
    good, s = _series()
    s.timestamps_ms.append(1)
    s.values.append(1.0)
    bad = pb.WriteRequest()
    b = bad.series.add()
    b.labels.add(name="__name__", value="BADX")
    b.timestamps_ms.extend([1, 2])
    b.values.extend([1.0, 2.0])
    body = good.SerializeToString() + bad.SerializeToString().replace(b"BADX", b"BA\xffX")
    result = parse_native(body)
    assert [x.labels["__name__"] for x in result.series] == ["cpu"]
    assert [(r.reason, r.points) for r in result.rejections] == [("invalid_utf8", 2)]


def test_duplicate_labels_and_unknown_kind():
    req, s = _series()
    s.labels.add(name="host", value="b")
    s.timestamps_ms.append(1)
    s.values.append(1.0)
    assert parse_native(req.SerializeToString()).rejections[0].reason == "duplicate_label_name"
    req2 = pb.WriteRequest()
    s2 = req2.series.add(kind=77)
    s2.labels.add(name="__name__", value="x")
    s2.timestamps_ms.append(1)
    s2.values.append(1.0)
    assert parse_native(req2.SerializeToString()).series[0].kind == MetricKind.UNSPECIFIED


def test_bad_protobuf():
    with pytest.raises(InvalidInput) as err:
        parse_native(b"\x0a\xff\xff\xff\xff\x0f")
    assert err.value.reason == "bad_protobuf"


@pytest.mark.parametrize("columns", [True, False])
def test_encode_round_trip(columns):
    series = [
        SeriesSamples({"__name__": "a", "x": "1"}, [1, 2, 3], [0.0, -1.5, 1e300], MetricKind.DISTRIBUTION),
        SeriesSamples({"__name__": "b"}, [5], [7.0], MetricKind.GAUGE),
    ]
    result = parse_native(encode_native(series, columns=columns))
    assert result.rejections == []
    for want, got in zip(series, result.series, strict=True):
        assert got.labels == want.labels and got.kind == want.kind
        np.testing.assert_array_equal(got.timestamps_ms, want.timestamps_ms)
        np.testing.assert_array_equal(got.values, want.values)


def test_empty_label_value_falls_back_to_per_label_decoding():
    series = [
        SeriesSamples({"__name__": "a", "empty": ""}, [1], [1.0]),
        SeriesSamples({"__name__": "b", "x": "y"}, [2], [2.0]),
    ]
    got = parse_native(encode_native(series)).series
    assert [s.labels for s in got] == [{"__name__": "a", "empty": ""}, {"__name__": "b", "x": "y"}]


def test_mixed_packed_and_column_series_slice_correctly():
    req = pb.WriteRequest()
    first = req.series.add()
    first.labels.add(name="__name__", value="first")
    first.timestamps_ms.extend([1, 2, 3])  # ignored: this series also has columns
    first.values.extend([0.0, 0.0, 0.0])
    first.timestamps_ms_le = np.array([10], "<i8").tobytes()
    first.values_le = np.array([1.0], "<f8").tobytes()
    second = req.series.add()
    second.labels.add(name="__name__", value="second")
    second.timestamps_ms.extend([20, 30])
    second.values.extend([0.0, 5.0])
    got = {s.labels["__name__"]: s for s in parse_native(req.SerializeToString()).series}
    assert got["first"].timestamps_ms.tolist() == [10] and got["first"].values.tolist() == [1.0]
    assert got["second"].timestamps_ms.tolist() == [20, 30] and got["second"].values.tolist() == [0.0, 5.0]
