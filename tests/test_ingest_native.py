"""Native metricsflow.v1.WriteRequest parser: packed fields, LE byte columns, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricsflow.errors import InvalidInput
from metricsflow.ingest import label_sets
from metricsflow.ingest.label_sets import LABELS
from metricsflow.ingest.native import (
    _parse_general,
    _parse_uniform,
    encode_native,
    parse_native,
    parse_native_with_tenant,
)
from metricsflow.model import STALE_NAN, STALE_NAN_BITS, MetricKind, SeriesSamples
from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.series_id import uvarint


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


def test_tenant_comes_from_the_same_parse():
    req, s = _series()
    s.timestamps_ms_le = np.array([10], "<i8").tobytes()
    s.values_le = np.array([1.0], "<f8").tobytes()
    req.tenant = "acme"
    parsed, tenant = parse_native_with_tenant(req.SerializeToString())
    assert tenant == "acme" and len(parsed.series) == 1
    req.tenant = ""
    assert parse_native_with_tenant(req.SerializeToString())[1] == ""


def test_tenant_with_invalid_utf8_is_none_and_the_points_are_still_read():
    req, s = _series()
    s.timestamps_ms_le = np.array([10], "<i8").tobytes()
    s.values_le = np.array([1.0], "<f8").tobytes()
    body = req.SerializeToString() + b"\x12\x02\xff\xfe"  # tenant = invalid UTF-8
    parsed, tenant = parse_native_with_tenant(body)
    assert tenant is None and [x.labels["__name__"] for x in parsed.series] == ["cpu"]


_LABEL = st.tuples(st.sampled_from(["__name__", "host", "dc", "x"]), st.sampled_from(["", "a", "cpu", "é"]))
_SERIES = st.tuples(
    st.lists(_LABEL, max_size=4),
    st.sampled_from(["le", "le_bad", "packed", "packed_bad", "none"]),
    st.integers(0, 4),
    st.sampled_from([0, 1, 2, 3, 9]),
)


def _request(spec: list, tenant: str) -> bytes:
    req = pb.WriteRequest(tenant=tenant)
    for labels, mode, n, kind in spec:
        s = req.series.add(kind=kind)
        for name, value in labels:
            s.labels.add(name=name, value=value)
        ts, vs = np.arange(n, dtype=np.int64) * 1000 + 1, np.arange(n, dtype=np.float64) + 0.5
        if mode == "le":
            s.timestamps_ms_le, s.values_le = ts.astype("<i8").tobytes(), vs.astype("<f8").tobytes()
        elif mode == "le_bad":
            s.timestamps_ms_le, s.values_le = ts.astype("<i8").tobytes(), vs.astype("<f8").tobytes()[:-3]
        elif mode == "packed":
            s.timestamps_ms.extend(ts.tolist())
            s.values.extend(vs.tolist())
        elif mode == "packed_bad":
            s.timestamps_ms.extend(ts.tolist() + [5])
            s.values.extend(vs.tolist())
    return req.SerializeToString()


@settings(max_examples=300, deadline=None)
@given(st.lists(_SERIES, max_size=6), st.sampled_from(["", "acme"]))
def test_byte_column_fast_path_answers_as_the_general_parse(spec: list, tenant: str):
    body = _request(spec, tenant)
    got, got_tenant = parse_native_with_tenant(body)
    want, want_tenant = _parse_general(body)
    assert got_tenant == want_tenant == tenant
    assert got.rejections == want.rejections
    assert len(got.series) == len(want.series)
    for g, w in zip(got.series, want.series, strict=True):
        assert (g.labels, list(g.labels), g.kind) == (w.labels, list(w.labels), w.kind)
        assert g.timestamps_ms.dtype == np.int64 and g.values.dtype == np.float64
        assert g.timestamps_ms.tolist() == w.timestamps_ms.tolist() and g.values.tolist() == w.values.tolist()


def test_label_sets_are_told_apart_by_their_label_boundaries():
    """[{name a}, {value x}] and [{name a, value x}] have the same bytes end to end, not the same labels."""
    req = pb.WriteRequest()
    for labels in ([pb.Label(name="a"), pb.Label(value="x")], [pb.Label(name="a", value="x")]) * 2:
        s = req.series.add()
        s.labels.extend(labels)
        s.timestamps_ms_le, s.values_le = np.array([1], "<i8").tobytes(), np.array([1.0], "<f8").tobytes()
    body = req.SerializeToString()
    for _ in range(2):  # the second parse answers from the known label sets
        got, want = parse_native(body), _parse_general(body)[0]
        assert [s.labels for s in got.series] == [s.labels for s in want.series]
        assert [s.labels for s in got.series] == [{"a": "", "": "x"}, {"a": "x"}] * 2


def test_a_known_label_set_is_the_same_dict_next_time():
    body = encode_native([SeriesSamples({"__name__": "cpu", "host": "h1"}, [1], [1.0])])
    first, second = parse_native(body).series[0].labels, parse_native(body).series[0].labels
    assert first == {"__name__": "cpu", "host": "h1"} and first is second


def test_a_new_label_set_is_kept_once_by_its_prefix_and_its_strings_are_shared():
    """A series' first sighting keeps its labels by the bytes before its samples alone (not also
    by its label fields: twice the memory), and names and values are the strings of other label
    sets: a collector keeps hundreds of thousands of them."""
    series = [SeriesSamples({"__name__": "mem_used", "host": "shared-host-9", "core": str(i)}, [1], [1.0])
              for i in range(2)]
    body = encode_native(series)
    before_sets, before_prefixes = len(LABELS.sets), len(LABELS.by_prefix)
    first = [s.labels for s in parse_native(body).series]
    assert first == [s.labels for s in series]
    assert len(LABELS.sets) == before_sets and len(LABELS.by_prefix) == before_prefixes + 2
    a, b = first
    assert next(iter(a)) is next(iter(b)) and a["host"] is b["host"]
    second = [s.labels for s in parse_native(body).series]
    assert all(x is y for x, y in zip(first, second, strict=True))  # found by the prefix


def test_labels_read_once_serve_every_series_and_stay_bounded(monkeypatch):
    """A label read for one series is the same strings in the next new series that has it; the
    labels kept are emptied when full (a miss only reads again), and a label that is not valid
    UTF-8 refuses its series even when its neighbours are known."""
    monkeypatch.setattr(label_sets, "LABELS_KEPT", 8)
    label_sets._labels.clear()
    series = [SeriesSamples({"__name__": "disk_io", "host": "cache-host", "dev": f"sd{i}"}, [1], [1.0])
              for i in range(6)]
    got = [s.labels for s in parse_native(encode_native(series)).series]
    assert got == [s.labels for s in series]
    assert all(g["host"] is got[0]["host"] and next(iter(g)) is next(iter(got[0])) for g in got)
    assert len(label_sets._labels) <= 8
    bad = pb.WriteRequest()
    s = bad.series.add(timestamps_ms_le=np.array([1], "<i8").tobytes(), values_le=np.array([1.0], "<f8").tobytes())
    s.labels.add(name="__name__", value="disk_io")
    s.labels.append(pb.Label(name="dev"))
    body = bad.SerializeToString().replace(b"\x0a\x03dev", b"\x0a\x03d\xffv")
    assert parse_native(body).series == [] and parse_native(body).rejections[0].reason == "invalid_utf8"
    _same_as_general(parse_native_with_tenant(body), body)


def test_a_label_set_not_canonically_encoded_is_kept_by_its_fields():
    """A length varint one byte longer than needed: the prefix does not stand for the labels."""
    labels = [("__name__", "odd_len"), ("host", "h1")]
    fields = [_field(0x0A, pb.Label(name=k, value=v).SerializeToString(), pad=(k == "host")) for k, v in labels]
    ts, vs = np.array([5], "<i8").tobytes(), np.array([2.5], "<f8").tobytes()
    body = _field(0x0A, b"".join(fields) + _field(0x22, ts) + _field(0x2A, vs))
    before = len(LABELS.by_prefix)
    for _ in range(2):
        got = parse_native(body)
        assert [s.labels for s in got.series] == [dict(labels)]
        _same_as_general(parse_native_with_tenant(body), body)
    assert len(LABELS.by_prefix) == before
    assert LABELS.sets[tuple(pb.Label(name=k, value=v).SerializeToString() for k, v in labels)] == dict(labels)


def _field(tag: int, payload: bytes, pad: bool = False) -> bytes:
    # pad: a length varint one byte longer than needed (valid protobuf, not canonical)
    length = uvarint(len(payload))
    if pad:
        length = bytes([length[0] | 0x80]) + length[1:] + b"\x00" if len(length) == 1 else length
    return bytes([tag]) + length + payload


_LAYOUTS = ["canonical", "labels_after_columns", "labels_split", "unknown_field", "packed_too",
            "columns_twice", "kind_first", "padded_label"]


def _series_bytes(labels: list[tuple[str, str]], split: int, n: int, kind: int, layout: str) -> bytes:
    fields = [_field(0x0A, pb.Label(name=k, value=v).SerializeToString()) for k, v in labels]
    ts = (np.arange(n, dtype="<i8") * 1000 + 7).tobytes()
    vs = (np.arange(n, dtype="<f8") + 0.25).tobytes()
    columns = _field(0x22, ts) + _field(0x2A, vs)
    kind_field = b"\x30" + uvarint(kind & 0xFFFF_FFFF_FFFF_FFFF) if kind else b""
    head, tail = b"".join(fields[:split]), b"".join(fields[split:])
    if layout == "labels_after_columns":
        return columns + kind_field + head + tail
    if layout == "labels_split":
        return head + columns + kind_field + tail
    if layout == "unknown_field":
        return head + tail + columns + kind_field + _field(0x4A, b"zz")
    if layout == "packed_too":
        return head + tail + _field(0x12, uvarint(5)) + columns + kind_field
    if layout == "columns_twice":
        return head + tail + _field(0x22, bytes(len(ts))) + columns + kind_field
    if layout == "kind_first":
        return kind_field + head + tail + columns
    if layout == "padded_label" and fields:
        k, v = labels[0]
        return _field(0x0A, pb.Label(name=k, value=v).SerializeToString(), pad=True) + b"".join(fields[1:]) \
            + columns + kind_field
    return head + tail + columns + kind_field


_ODD_SERIES = st.tuples(
    st.lists(st.tuples(st.sampled_from(["__name__", "host", "dc"]), st.sampled_from(["a", "cpu"])),
             max_size=3, unique_by=lambda p: p[0]),
    st.integers(0, 3), st.integers(1, 3), st.sampled_from([0, 2, 9, -1]), st.sampled_from(_LAYOUTS))


@settings(max_examples=300, deadline=None)
@given(st.lists(_ODD_SERIES, min_size=1, max_size=5))
def test_label_prefixes_never_stand_for_other_fields(spec: list):
    """Series in any field order, with extra or repeated fields, read as the general parse reads them,
    also when the same label sets were seen before in canonical form (the parser keys labels by the bytes
    before a series' columns)."""
    primer = b"".join(_field(0x0A, _series_bytes(labels[:cut], cut, 1, kind, "canonical"))
                      for labels, split, _, kind, _ in spec for cut in (split, len(labels)))
    parse_native(primer)
    body = b"".join(_field(0x0A, _series_bytes(*s)) for s in spec)
    want = _parse_general(body)[0]
    for _ in range(2):
        got = parse_native(body)
        assert got.rejections == want.rejections
        assert [(g.labels, g.kind, g.timestamps_ms.tolist(), g.values.tolist()) for g in got.series] == \
            [(w.labels, w.kind, w.timestamps_ms.tolist(), w.values.tolist()) for w in want.series]


def test_a_series_with_labels_after_its_columns_keeps_them_all():
    canonical = _field(0x0A, _series_bytes([("__name__", "cpu")], 1, 2, 0, "canonical"))
    assert parse_native(canonical).series[0].labels == {"__name__": "cpu"}
    # The same first label, then the columns, then one more label: the bytes before where canonical
    # columns would start are not the known prefix, so the series is read label by label.
    odd = _field(0x0A, _series_bytes([("__name__", "cpu"), ("host", "a")], 1, 2, 0, "labels_split"))
    for _ in range(2):
        assert parse_native(odd).series[0].labels == {"__name__": "cpu", "host": "a"}


def test_request_columns_are_the_series_laid_end_to_end():
    body = encode_native([SeriesSamples({"__name__": "a"}, [1, 2], [1.0, 2.0]),
                          SeriesSamples({"__name__": "b"}, [3], [3.0])])
    parsed = parse_native(body)
    assert parsed.columns is not None
    assert parsed.columns.lengths.tolist() == [2, 1]
    assert parsed.columns.timestamps_ms.tolist() == [1, 2, 3] and parsed.columns.values.tolist() == [1.0, 2.0, 3.0]
    assert [s.timestamps_ms.tolist() for s in parsed.series] == [[1, 2], [3]]


def test_a_known_prefix_with_other_fields_behind_it_is_not_taken_for_the_labels():
    """Two series alike up to their last label, which comes after the columns: each keeps its own.

    The last label field takes 18 bytes, as many as the timestamps field, so the bytes before where the
    columns would end are the first label and the whole timestamps field: readable, but not labels alone.
    """
    body = b"".join(_field(0x0A, _series_bytes([("__name__", "cpu"), ("host", host * 8)], 1, 2, 0, "labels_split"))
                    for host in ("a", "b"))
    for _ in range(2):
        assert [s.labels["host"] for s in parse_native(body).series] == ["aaaaaaaa", "bbbbbbbb"]


def test_a_short_negative_kind_leaves_no_label_behind():
    """-1 written in 5 bytes (the low 32 bits) reads as -1 too: the label before it is still read."""
    cpu = _field(0x0A, pb.Label(name="__name__", value="cpu").SerializeToString())
    columns = _field(0x22, np.array([1], "<i8").tobytes()) + _field(0x2A, np.array([1.0], "<f8").tobytes())
    parse_native(_field(0x0A, cpu + columns))  # {__name__: cpu} known by its bytes
    x = _field(0x0A, pb.Label(name="x").SerializeToString())  # 5 bytes, as many as the short kind saves
    body = _field(0x0A, cpu + x + columns + b"\x30" + uvarint(0xFFFF_FFFF))
    assert _parse_general(body)[0].series[0].labels == {"__name__": "cpu", "x": ""}
    for _ in range(2):
        assert parse_native(body).series[0].labels == {"__name__": "cpu", "x": ""}


def _same_as_general(got, body: bytes) -> None:
    want, want_tenant = _parse_general(body)
    result, tenant = got
    assert tenant == want_tenant and result.rejections == want.rejections
    assert [(s.labels, list(s.labels), s.kind, s.timestamps_ms.tolist(), s.values.tolist()) for s in result.series] \
        == [(s.labels, list(s.labels), s.kind, s.timestamps_ms.tolist(), s.values.tolist()) for s in want.series]


def test_a_steady_request_is_read_whole_once_its_label_sets_are_known():
    series = [SeriesSamples({"__name__": "cpu", "host": f"h{i}"}, [1000 * i + 1, 1000 * i + 2],
                            [float(i), float(i) + 0.5], MetricKind.COUNTER) for i in range(5)]
    req = pb.WriteRequest.FromString(encode_native(series))
    req.tenant = "acme"
    body = req.SerializeToString()
    assert _parse_uniform(body) is None  # label sets not known yet
    parse_native(body)
    got = _parse_uniform(body)
    assert got is not None and got[0].columns is not None
    assert got[0].columns.lengths.tolist() == [2] * 5
    _same_as_general(got, body)


@pytest.mark.parametrize("odd", ["points", "kind", "packed"])
def test_a_request_with_one_series_unlike_the_first_is_read_series_by_series(odd: str):
    series = [SeriesSamples({"__name__": "cpu", "host": f"u{i}"}, [1, 2], [1.0, 2.0], MetricKind.GAUGE)
              for i in range(3)]
    parse_native(encode_native(series))  # label sets known
    req = pb.WriteRequest.FromString(encode_native(series))
    s = req.series[1]
    if odd == "points":
        s.timestamps_ms_le, s.values_le = np.array([1, 2, 3], "<i8").tobytes(), np.array([1.0, 2, 3], "<f8").tobytes()
    elif odd == "kind":
        s.kind = int(MetricKind.COUNTER)
    else:
        s.timestamps_ms.append(5)
        s.values.append(5.0)
    body = req.SerializeToString()
    assert _parse_uniform(body) is None
    _same_as_general(parse_native_with_tenant(body), body)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ODD_SERIES, min_size=1, max_size=5))
def test_the_whole_request_read_is_the_general_parse_or_nothing(spec: list):
    body = b"".join(_field(0x0A, _series_bytes(*s)) for s in spec)
    for _ in range(2):
        got = _parse_uniform(body)
        if got is not None:
            _same_as_general(got, body)
        parse_native(body)  # the label sets it can, known for the next round
