"""Prometheus remote_write 1.0 parser: wire compatibility, stale markers, partial refusals."""

from __future__ import annotations

import struct
from pathlib import Path

import cramjam
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricsflow.errors import InvalidInput
from metricsflow.ingest.remote_write import (
    _decode_whole,
    build_write_request,
    decode_write_request,
    decompress_remote_write,
    encode_remote_write,
    parse_remote_write,
)
from metricsflow.model import STALE_NAN_BITS, MetricKind, SeriesSamples, UniformRuns, is_stale_marker
from metricsflow.pb import prometheus_remote_pb2 as pb


def _snappy(raw: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(raw))


def _request(*series: tuple[dict[str, str], list[tuple[int, float]]]) -> pb.WriteRequest:
    """Built with the message classes directly, independent of encode_remote_write."""
    req = pb.WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name, value in sorted(labels.items()):
            ts.labels.add(name=name, value=value)
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
    return req


def _by_name(result):
    return {s.labels["__name__"]: s for s in result.series}


# --- hand-assembled wire bytes: proves the field numbers are the spec's ------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire_type)
    if wire_type == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def _golden_body() -> bytes:
    # WriteRequest{timeseries=1, metadata=3}; TimeSeries{labels=1, samples=2};
    # Label{name=1, value=2}; Sample{value=1 (double), timestamp=2 (int64)};
    # MetricMetadata{type=1, metric_family_name=2, help=4, unit=5}.
    label = lambda n, v: _field(1, 2, _field(1, 2, n.encode()) + _field(2, 2, v.encode()))  # noqa: E731
    sample = lambda v, t: _field(2, 2, _field(1, 1, struct.pack("<d", v)) + _field(2, 0, _varint(t)))  # noqa: E731
    series = label("__name__", "http_requests_total") + label("job", "api")
    series += sample(1.5, 1764150000000) + sample(2.5, 1764150010000)
    metadata = (
        _field(1, 0, _varint(1))
        + _field(2, 2, b"http_requests_total")
        + _field(4, 2, b"help")
        + _field(5, 2, b"")
    )
    return _field(1, 2, series) + _field(3, 2, metadata)


def test_hand_encoded_wire_bytes_decode():
    raw = _golden_body()
    assert pb.WriteRequest.FromString(raw).timeseries[0].labels[0].name == "__name__"
    result = parse_remote_write(_snappy(raw))
    assert result.rejections == []
    [s] = result.series
    assert s.labels == {"__name__": "http_requests_total", "job": "api"}
    assert s.timestamps_ms.tolist() == [1764150000000, 1764150010000]
    assert s.values.tolist() == [1.5, 2.5]
    assert s.kind == MetricKind.COUNTER  # from the metadata in the same request


def test_golden_fixture_matches():
    # The fixture file pins the bytes; regenerate with _golden_body() if the test data changes.
    fixture = Path(__file__).parent / "fixtures" / "ingest" / "remote_write_golden.snappy"
    assert fixture.read_bytes() == _snappy(_golden_body())
    assert len(parse_remote_write(fixture.read_bytes()).series) == 1


# --- normal requests ---------------------------------------------------------------------------------


def test_independently_built_request():
    req = _request(
        ({"__name__": "up", "job": "node", "instance": "a:9100"}, [(1000, 1.0), (2000, 1.0)]),
        ({"__name__": "node_load1", "instance": "a:9100"}, [(1000, 0.25)]),
    )
    result = parse_remote_write(_snappy(req.SerializeToString()), "snappy")
    got = _by_name(result)
    assert got["up"].labels == {"__name__": "up", "instance": "a:9100", "job": "node"}
    assert got["up"].timestamps_ms.dtype == np.int64 and got["up"].values.dtype == np.float64
    assert got["node_load1"].values.tolist() == [0.25]
    assert result.rejections == []


@pytest.mark.parametrize(
    "values",
    [
        [1.0, 2.0, 3.0],  # fast merged-column path
        [0.0, 2.0, 0.0],  # zero values omitted on the wire -> fallback path
        [-0.0, float("inf"), float("-inf")],
    ],
)
def test_stale_marker_bits_survive(values):
    stale = np.array([STALE_NAN_BITS], dtype=np.uint64).view(np.float64)[0]
    series = SeriesSamples({"__name__": "x"}, [1, 2, 3, 4], [*values, stale])
    [s] = parse_remote_write(encode_remote_write([series])).series
    assert s.values.view(np.uint64)[-1] == np.uint64(STALE_NAN_BITS)
    assert is_stale_marker(s.values).tolist() == [False, False, False, True]
    np.testing.assert_array_equal(s.values[:3], np.array(values))


def test_zero_timestamp_and_empty_label_value_fall_back_correctly():
    req = _request(
        ({"__name__": "a", "empty": ""}, [(0, 5.0), (10, 0.0)]),
        ({"__name__": "b"}, [(20, 7.0)]),
    )
    got = _by_name(decode_write_request(req.SerializeToString()))
    assert got["a"].labels == {"__name__": "a", "empty": ""}
    assert got["a"].timestamps_ms.tolist() == [0, 10]
    assert got["a"].values.tolist() == [5.0, 0.0]
    assert got["b"].values.tolist() == [7.0]


def test_native_histograms_and_exemplars_are_counted():
    req = _request(({"__name__": "lat"}, [(1, 1.0)]))
    ts = req.timeseries[0]
    ts.histograms.add(count_int=3, sum=1.5, schema=0, timestamp=1)
    ts.histograms.add(count_int=4, sum=2.5, schema=0, timestamp=2)
    ts.exemplars.add(value=0.5, timestamp=1).labels.add(name="trace_id", value="abc")
    hist_only = req.timeseries.add()
    hist_only.labels.add(name="__name__", value="h")
    hist_only.histograms.add(count_int=1, timestamp=1)
    result = decode_write_request(req.SerializeToString())
    assert [s.labels["__name__"] for s in result.series] == ["lat"]
    reasons = {r.reason: r.points for r in result.rejections}
    assert reasons == {"native_histograms_unsupported": 3, "exemplars_unsupported": 1}


def test_invalid_utf8_refuses_only_that_series():
    good = _request(({"__name__": "good"}, [(1, 1.0)])).SerializeToString()
    bad = _request(({"__name__": "bad", "k": "VALUE"}, [(1, 1.0), (2, 2.0)])).SerializeToString()
    bad = bad.replace(b"VALUE", b"V\xffLUE")
    result = decode_write_request(good + bad)  # concatenated messages merge their repeated fields
    assert [s.labels["__name__"] for s in result.series] == ["good"]
    assert [(r.reason, r.points) for r in result.rejections] == [("invalid_utf8", 2)]


def test_duplicate_label_names_refused():
    req = pb.WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="x")
    ts.labels.add(name="a", value="1")
    ts.labels.add(name="a", value="2")
    ts.samples.add(timestamp=1, value=1.0)
    result = decode_write_request(req.SerializeToString())
    assert result.series == []
    assert result.rejections[0].reason == "duplicate_label_name"


def test_metadata_kinds():
    req = _request(
        ({"__name__": "c_total"}, [(1, 1.0)]),
        ({"__name__": "g"}, [(1, 1.0)]),
        ({"__name__": "h_bucket", "le": "+Inf"}, [(1, 1.0)]),
        ({"__name__": "other"}, [(1, 1.0)]),
    )
    req.metadata.add(type=pb.MetricMetadata.COUNTER, metric_family_name="c")
    req.metadata.add(type=pb.MetricMetadata.GAUGE, metric_family_name="g")
    req.metadata.add(type=pb.MetricMetadata.HISTOGRAM, metric_family_name="h")
    kinds = {name: s.kind for name, s in _by_name(decode_write_request(req.SerializeToString())).items()}
    assert kinds == {
        "c_total": MetricKind.COUNTER,
        "g": MetricKind.GAUGE,
        "h_bucket": MetricKind.COUNTER,
        "other": MetricKind.UNSPECIFIED,
    }


# --- transport errors ---------------------------------------------------------------------------------


def test_framed_snappy_is_bad_snappy():
    raw = _request(({"__name__": "x"}, [(1, 1.0)])).SerializeToString()
    with pytest.raises(InvalidInput) as err:
        parse_remote_write(bytes(cramjam.snappy.compress(raw)))  # framing format, not block
    assert err.value.reason == "bad_snappy"


def test_uncompressed_protobuf_is_bad_snappy():
    with pytest.raises(InvalidInput) as err:
        parse_remote_write(b"\x0a\x05hello world this is not snappy")
    assert err.value.reason == "bad_snappy"


def test_bad_protobuf():
    with pytest.raises(InvalidInput) as err:
        parse_remote_write(_snappy(b"\x0a\xff\xff\xff\xff\x0f garbage"))
    assert err.value.reason == "bad_protobuf"


def test_encodings():
    raw = _request(({"__name__": "x"}, [(1, 1.0)])).SerializeToString()
    assert decompress_remote_write(raw, "identity") == raw
    assert decompress_remote_write(_snappy(raw), None) == raw
    assert decompress_remote_write(_snappy(raw), " Snappy ") == raw
    with pytest.raises(InvalidInput) as err:
        decompress_remote_write(raw, "gzip")
    assert err.value.reason == "unsupported_encoding"
    with pytest.raises(InvalidInput) as err:
        decompress_remote_write(_snappy(b"\0" * 10_000), max_decompressed_bytes=1000)
    assert err.value.reason == "body_too_large"


def test_empty_body_is_empty_result():
    assert parse_remote_write(_snappy(b"")).series == []


# --- round trip ------------------------------------------------------------------------------------------

_finite_or_special = st.floats(allow_nan=False) | st.sampled_from([0.0, -0.0, float("inf")])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=3),
            st.lists(st.tuples(st.integers(-(2**62), 2**62), _finite_or_special), min_size=1, max_size=5),
        ),
        max_size=5,
    )
)
def test_round_trip(series_spec):
    series = [
        SeriesSamples({"__name__": f"m{i}", **labels}, [t for t, _ in samples], [v for _, v in samples])
        for i, (labels, samples) in enumerate(series_spec)
    ]
    result = parse_remote_write(encode_remote_write(series))
    assert result.rejections == []
    assert len(result.series) == len(series)
    for want, got in zip(series, result.series, strict=True):
        assert got.labels == want.labels
        np.testing.assert_array_equal(got.timestamps_ms, want.timestamps_ms)
        np.testing.assert_array_equal(got.values, want.values)


def test_build_write_request_sorts_labels():
    req = build_write_request([SeriesSamples({"z": "1", "__name__": "m", "a": "2"}, [1], [1.0])])
    assert [label.name for label in req.timeseries[0].labels] == ["__name__", "a", "z"]


def test_unexpected_wire_type_is_unknown_field_not_a_crash():
    # Sample.value sent length-delimited: the strict parse keeps it as an unknown
    # field (value 0.0); the column view would call it corrupt -> per-series path.
    sample = b"\x0a\x03abc" + b"\x10\x05"
    label = b"\x0a\x08__name__" + b"\x12\x01x"
    ts = b"\x0a" + bytes([len(label)]) + label + b"\x12" + bytes([len(sample)]) + sample
    [s] = decode_write_request(b"\x0a" + bytes([len(ts)]) + ts).series
    assert s.labels == {"__name__": "x"}
    assert s.timestamps_ms.tolist() == [5] and s.values.tolist() == [0.0]


# --- labels known by the bytes before a series' samples --------------------------------------------


def _label_field(name: str, value: str) -> bytes:
    return _field(1, 2, _field(1, 2, name.encode()) + (_field(2, 2, value.encode()) if value else b""))


def _sample_field(value: float, t: int) -> bytes:
    body = (_field(1, 1, struct.pack("<d", value)) if value else b"") + (_field(2, 0, _varint(t)) if t else b"")
    return _field(2, 2, body)


def _reference(raw: bytes) -> list[tuple[dict[str, str], list[int], list[float]]]:
    """Series with samples and no repeated label name, read message by message."""
    out = []
    for ts in pb.WriteRequest.FromString(raw).timeseries:
        labels = {label.name: label.value for label in ts.labels}
        if len(ts.samples) and len(labels) == len(ts.labels):
            out.append((labels, [s.timestamp for s in ts.samples], [s.value for s in ts.samples]))
    return out


_RW_SERIES = st.tuples(
    st.lists(st.tuples(st.sampled_from(["__name__", "job", "le"]), st.sampled_from(["", "a", "api"])), max_size=3),
    st.integers(0, 3),  # how many labels come before the samples (the rest after them)
    st.lists(st.tuples(st.sampled_from([0.0, 1.5, -2.0]), st.sampled_from([0, 5, 1764150000000, -3])), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_RW_SERIES, min_size=1, max_size=5))
def test_series_read_as_message_by_message_whatever_their_field_order(spec: list) -> None:
    """Labels before and after the samples, zeros omitted, repeated names: the parse reads each series as
    the messages say, also once every label set's canonical prefix is known."""
    canonical = b"".join(_field(1, 2, b"".join(_label_field(*lb) for lb in labels[:cut]) + _sample_field(1.0, 7))
                         for labels, split, _ in spec for cut in (split, len(labels)))
    decode_write_request(canonical)
    body = b"".join(_field(1, 2, b"".join(_label_field(*lb) for lb in labels[:split])
                           + b"".join(_sample_field(v, t) for v, t in samples)
                           + b"".join(_label_field(*lb) for lb in labels[split:]))
                    for labels, split, samples in spec)
    want = _reference(body)
    for _ in range(2):
        got = decode_write_request(body)
        assert [(s.labels, list(s.labels), s.timestamps_ms.tolist(), s.values.tolist()) for s in got.series] == \
            [(labels, list(labels), ts, vs) for labels, ts, vs in want]


def test_a_known_prefix_with_a_label_behind_the_samples_is_not_taken_for_the_labels() -> None:
    """The sample sizes come from the merged columns, which a sender can skew: here the first series'
    sample has two values and the second's none, so the second's samples are counted 9 bytes too many,
    exactly its label behind them. Its prefix is then the known {__name__: up}: one label, where the
    series has two."""
    name = _label_field("__name__", "up")
    t = 1764150000000
    decode_write_request(_field(1, 2, name + _sample_field(1.0, t)))  # {__name__: up} known by its bytes
    two_values = _field(2, 2, _field(1, 1, struct.pack("<d", 1.0)) * 2 + _field(2, 0, _varint(t)))
    no_value = _field(2, 2, _field(2, 0, _varint(t)))
    behind = _label_field("jo", "x")
    assert len(behind) == 9
    body = _field(1, 2, name + two_values) + _field(1, 2, name + no_value + behind)
    for _ in range(2):
        assert [s.labels for s in decode_write_request(body).series] == [
            {"__name__": "up"}, {"__name__": "up", "jo": "x"}]


def test_request_columns_skip_refused_series() -> None:
    req = _request(({"__name__": "a"}, [(1, 1.0), (2, 2.0)]), ({"__name__": "b"}, [(3, 3.0)]))
    dup = req.timeseries.add()
    dup.labels.add(name="x", value="1")
    dup.labels.add(name="x", value="2")
    dup.samples.add(timestamp=4, value=4.0)
    req.timeseries.add().samples.add(timestamp=5, value=5.0)  # no labels: read, refused later by the collector
    for _ in range(2):
        got = decode_write_request(req.SerializeToString())
        assert got.columns is not None
        assert got.columns.lengths.tolist() == [2, 1, 1]
        assert got.columns.timestamps_ms.tolist() == [1, 2, 3, 5]
        assert [s.values.tolist() for s in got.series] == [[1.0, 2.0], [3.0], [5.0]]
        assert [r.reason for r in got.rejections] == ["duplicate_label_name"]


# --- a steady request read whole (remote_write._decode_whole) ----------------------------------------

_PIECE = st.one_of(
    st.tuples(st.just("value"), st.sampled_from([0.0, 1.5, -2.0, float("inf")])),
    st.tuples(st.just("ts"), st.sampled_from([0, 7, 1764150000000, -3, 2**62])),
    st.tuples(st.just("junk"), st.sampled_from([b"\x18\x01", b"\x09\x00", b"\x10\x80"])),
)


def _sample_of(pieces: list) -> bytes:
    out = b""
    for kind, x in pieces:
        if kind == "value":
            out += _field(1, 1, struct.pack("<d", x))
        elif kind == "ts":
            out += _field(2, 0, _varint(x))
        else:
            out += x
    return _field(2, 2, out)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.lists(st.lists(_PIECE, max_size=3), max_size=3)),
                min_size=1, max_size=4))
def test_the_whole_request_read_is_the_strict_parse_or_nothing(spec: list) -> None:
    """Sample fields of any content (values and timestamps in any order, repeated, left out, other fields):
    read whole only when each series reads the same as message by message."""
    for name, _ in spec:  # the label sets known by their bytes
        decode_write_request(_field(1, 2, _label_field("__name__", name) + _sample_field(1.0, 1)))
    body = b"".join(_field(1, 2, _label_field("__name__", name) + b"".join(_sample_of(s) for s in samples))
                    for name, samples in spec)
    try:
        want = _reference(body)
    except Exception:  # not a valid WriteRequest: the strict parse refuses it, so must the whole read
        assert _decode_whole(body) is None
        return
    got = _decode_whole(body)
    if got is not None:
        assert [(s.labels, s.timestamps_ms.tolist(), s.values.view(np.uint64).tolist()) for s in got.series] == \
            [(labels, ts, np.array(vs, dtype=np.float64).view(np.uint64).tolist()) for labels, ts, vs in want]


def test_a_request_with_zeros_and_stale_markers_is_read_whole() -> None:
    stale = np.array([STALE_NAN_BITS], dtype=np.uint64).view(np.float64)[0]
    req = _request(({"__name__": "w", "job": "a"}, [(1764150000000, 0.0), (1764150010000, 2.5)]),
                   ({"__name__": "w", "job": "b"}, [(0, 3.0), (-5, stale)]))
    raw = req.SerializeToString()
    got = _decode_whole(raw)  # new label sets are read from their bytes and kept
    assert got is not None and got.columns is not None
    assert [s.labels["job"] for s in got.series] == ["a", "b"]
    assert got.columns.lengths.tolist() == [2, 2]
    assert got.columns.timestamps_ms.tolist() == [1764150000000, 1764150010000, 0, -5]
    assert got.columns.values.view(np.uint64).tolist()[:3] == np.array([0.0, 2.5, 3.0]).view(np.uint64).tolist()
    assert got.columns.values.view(np.uint64)[3] == np.uint64(STALE_NAN_BITS)


@pytest.mark.parametrize("odd", ["exemplar", "metadata", "label_after_samples"])
def test_a_request_the_whole_read_does_not_know_goes_message_by_message(odd: str) -> None:
    req = _request(({"__name__": "o", "job": "x"}, [(1764150000000, 1.0)]))
    decode_write_request(req.SerializeToString())  # label set known
    if odd == "exemplar":
        req.timeseries[0].exemplars.add(value=0.5, timestamp=1)
    elif odd == "metadata":
        req.metadata.add(type=pb.MetricMetadata.COUNTER, metric_family_name="o")
    raw = req.SerializeToString()
    if odd == "label_after_samples":
        name = _label_field("__name__", "o") + _label_field("job", "x")
        raw = _field(1, 2, name + _sample_field(1.0, 1764150000000) + _label_field("zone", "z"))
    assert _decode_whole(raw) is None
    got = decode_write_request(raw)
    assert [s.labels for s in got.series] == [labels for labels, _, _ in _reference(raw)]


def test_the_steady_request_hands_out_the_same_label_dicts_and_no_object_per_series() -> None:
    """What the collector's pipeline relies on when it knows a label set by its dict (``shared_labels``)."""
    body = _request(*(({"__name__": "up", "job": f"j{i}"}, [(1_764_150_000_000 + k, float(k)) for k in range(3)])
                      for i in range(4))).SerializeToString()
    first, again = decode_write_request(body), decode_write_request(body)
    assert again.shared_labels and isinstance(again.series, UniformRuns)
    assert all(a.labels is b.labels for a, b in zip(first.series, again.series, strict=True))
    assert [(s.labels["job"], s.timestamps_ms.tolist()) for s in again.series] == \
        [(f"j{i}", [1_764_150_000_000 + k for k in range(3)]) for i in range(4)]
