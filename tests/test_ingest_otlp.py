"""OTLP/HTTP metrics parser, fed requests built with the opentelemetry-proto classes."""

from __future__ import annotations

import numpy as np
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m

from metricsflow.errors import InvalidInput
from metricsflow.ingest.otlp import OtlpOptions, encode_otlp, parse_otlp
from metricsflow.model import STALE_NAN_BITS, MetricKind, SeriesSamples, is_stale_marker

NOW_MS = 1_700_000_000_000
T0_NS = 1_764_150_000_000_000_000
T0_MS = T0_NS // 1_000_000
CUMULATIVE = m.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = m.AGGREGATION_TEMPORALITY_DELTA


def _kv(key: str, value) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _request(
    *metrics: m.Metric, resource: dict | None = None, scope: str = ""
) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(
        _kv(k, v) for k, v in (resource or {"service.name": "api", "service.instance.id": "i-1"}).items()
    )
    sm = rm.scope_metrics.add()
    sm.scope.name = scope
    sm.scope.version = "1.2" if scope else ""
    sm.metrics.extend(metrics)
    return req


def _parse(req: ExportMetricsServiceRequest, **options) -> dict:
    result = parse_otlp(req.SerializeToString(), now_ms=NOW_MS, options=OtlpOptions(**options))
    return {
        (s.labels["__name__"], s.labels.get("le", s.labels.get("quantile", ""))): s for s in result.series
    }


def test_gauge_with_resource_identity():
    gauge = m.Metric(name="system.cpu.utilization", unit="1")
    dp = gauge.gauge.data_points.add(time_unix_nano=T0_NS, as_double=0.25)
    dp.attributes.extend([_kv("cpu", "0"), _kv("state", "user")])
    got = _parse(_request(gauge))
    s = got[("system_cpu_utilization_ratio", "")]
    assert s.labels == {
        "__name__": "system_cpu_utilization_ratio",
        "cpu": "0",
        "state": "user",
        "job": "api",
        "instance": "i-1",
    }
    assert s.timestamps_ms.tolist() == [T0_MS] and s.values.tolist() == [0.25]
    assert s.kind == MetricKind.GAUGE


def test_monotonic_cumulative_sum_is_counter_with_suffixes():
    metric = m.Metric(name="http.server.request.duration", unit="ms")
    metric.sum.aggregation_temporality = CUMULATIVE
    metric.sum.is_monotonic = True
    metric.sum.data_points.add(time_unix_nano=T0_NS, as_int=7)
    metric.sum.data_points.add(time_unix_nano=T0_NS + 10**10, as_int=9)
    s = _parse(_request(metric))[("http_server_request_duration_milliseconds_total", "")]
    assert s.kind == MetricKind.COUNTER
    assert s.values.tolist() == [7.0, 9.0]
    assert s.timestamps_ms.tolist() == [T0_MS, T0_MS + 10_000]


def test_suffixes_can_be_disabled_and_are_not_doubled():
    metric = m.Metric(name="requests_total", unit="{request}")
    metric.sum.aggregation_temporality = CUMULATIVE
    metric.sum.is_monotonic = True
    metric.sum.data_points.add(time_unix_nano=T0_NS, as_double=1)
    assert ("requests_total", "") in _parse(_request(metric))
    bytes_metric = m.Metric(name="net.io.bytes", unit="By/s")
    bytes_metric.gauge.data_points.add(time_unix_nano=T0_NS, as_double=1)
    assert ("net_io_bytes_per_second", "") in _parse(_request(bytes_metric))
    assert ("net_io_bytes", "") in _parse(_request(bytes_metric), add_suffixes=False)


def test_non_monotonic_sum_is_gauge():
    metric = m.Metric(name="queue.size")
    metric.sum.aggregation_temporality = CUMULATIVE
    metric.sum.is_monotonic = False
    metric.sum.data_points.add(time_unix_nano=T0_NS, as_int=-3)
    s = _parse(_request(metric))[("queue_size", "")]
    assert s.kind == MetricKind.GAUGE and s.values.tolist() == [-3.0]


def test_delta_sum_and_histogram_refused_rest_kept():
    delta = m.Metric(name="d")
    delta.sum.aggregation_temporality = DELTA
    delta.sum.is_monotonic = True
    delta.sum.data_points.add(time_unix_nano=T0_NS, as_int=1)
    delta.sum.data_points.add(time_unix_nano=T0_NS, as_int=2)
    dh = m.Metric(name="dh")
    dh.histogram.aggregation_temporality = DELTA
    dh.histogram.data_points.add(time_unix_nano=T0_NS, count=1)
    ok = m.Metric(name="ok")
    ok.gauge.data_points.add(time_unix_nano=T0_NS, as_double=1)
    result = parse_otlp(_request(delta, dh, ok).SerializeToString(), now_ms=NOW_MS)
    assert [s.labels["__name__"] for s in result.series] == ["ok"]
    assert [(r.reason, r.points) for r in result.rejections] == [("delta_temporality_unsupported", 3)]


def test_explicit_bucket_histogram():
    metric = m.Metric(name="http.server.duration", unit="s")
    metric.histogram.aggregation_temporality = CUMULATIVE
    dp = metric.histogram.data_points.add(
        time_unix_nano=T0_NS, count=10, sum=4.5, explicit_bounds=[0.1, 0.5, 1.0], bucket_counts=[2, 3, 4, 1]
    )
    dp.attributes.append(_kv("route", "/x"))
    got = _parse(_request(metric))
    base = "http_server_duration_seconds"
    buckets = {le: got[(base + "_bucket", le)].values[0] for le in ("0.1", "0.5", "1", "+Inf")}
    assert buckets == {"0.1": 2.0, "0.5": 5.0, "1": 9.0, "+Inf": 10.0}
    assert got[(base + "_count", "")].values.tolist() == [10.0]
    assert got[(base + "_sum", "")].values.tolist() == [4.5]
    assert got[(base + "_bucket", "0.5")].labels["route"] == "/x"
    assert got[(base + "_bucket", "0.5")].kind == MetricKind.COUNTER


def test_histogram_without_sum_and_bad_bucket_counts():
    metric = m.Metric(name="h")
    metric.histogram.aggregation_temporality = CUMULATIVE
    metric.histogram.data_points.add(time_unix_nano=T0_NS, count=3)  # no buckets, no sum
    metric.histogram.data_points.add(time_unix_nano=T0_NS, count=3, explicit_bounds=[1.0], bucket_counts=[1])
    result = parse_otlp(_request(metric).SerializeToString(), now_ms=NOW_MS)
    names = sorted((s.labels["__name__"], s.labels.get("le")) for s in result.series)
    assert names == [("h_bucket", "+Inf"), ("h_count", None)]
    assert [(r.reason, r.points) for r in result.rejections] == [("bad_histogram", 1)]


def test_summary():
    metric = m.Metric(name="rpc.latency", unit="s")
    dp = metric.summary.data_points.add(time_unix_nano=T0_NS, count=4, sum=2.0)
    dp.quantile_values.add(quantile=0.5, value=0.4)
    dp.quantile_values.add(quantile=0.99, value=0.9)
    got = _parse(_request(metric))
    assert got[("rpc_latency_seconds", "0.99")].values.tolist() == [0.9]
    assert got[("rpc_latency_seconds", "0.5")].kind == MetricKind.GAUGE
    assert got[("rpc_latency_seconds_count", "")].values.tolist() == [4.0]
    assert got[("rpc_latency_seconds_sum", "")].values.tolist() == [2.0]


def test_exponential_histogram_refused():
    metric = m.Metric(name="eh")
    metric.exponential_histogram.aggregation_temporality = CUMULATIVE
    metric.exponential_histogram.data_points.add(time_unix_nano=T0_NS, count=1, scale=2)
    result = parse_otlp(_request(metric).SerializeToString(), now_ms=NOW_MS)
    assert [(r.reason, r.points) for r in result.rejections] == [("exponential_histogram_unsupported", 1)]
    assert [
        s.labels["__name__"] for s in result.series
    ] == []  # no target_info: no attributes beyond identity


def test_no_recorded_value_becomes_stale_marker():
    metric = m.Metric(name="g")
    metric.gauge.data_points.add(time_unix_nano=T0_NS, as_double=1.0)
    metric.gauge.data_points.add(
        time_unix_nano=T0_NS + 10**9, flags=m.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
    )
    s = _parse(_request(metric))[("g", "")]
    assert is_stale_marker(s.values).tolist() == [False, True]
    assert s.values.view(np.uint64)[1] == np.uint64(STALE_NAN_BITS)


def test_resource_attributes_target_info_and_promotion():
    resource = {
        "service.name": "checkout",
        "service.namespace": "shop",
        "service.instance.id": "pod-7",
        "host.name": "node-1",
        "k8s.pod.uid": "u-1",
    }
    metric = m.Metric(name="g")
    metric.gauge.data_points.add(time_unix_nano=T0_NS, as_double=1.0)
    got = _parse(_request(metric, resource=resource))
    assert got[("g", "")].labels == {"__name__": "g", "job": "shop/checkout", "instance": "pod-7"}
    assert got[("target_info", "")].labels == {
        "__name__": "target_info",
        "job": "shop/checkout",
        "instance": "pod-7",
        "host_name": "node-1",
        "k8s_pod_uid": "u-1",
    }
    assert got[("target_info", "")].timestamps_ms.tolist() == [T0_MS]
    promoted = _parse(
        _request(metric, resource=resource),
        promote_resource_attributes=frozenset({"host.name"}),
        target_info=False,
    )
    assert promoted[("g", "")].labels["host_name"] == "node-1"
    assert ("target_info", "") not in promoted


def test_attribute_types_collisions_and_override():
    metric = m.Metric(name="g")
    dp = metric.gauge.data_points.add(time_unix_nano=T0_NS, as_double=1.0)
    dp.attributes.extend(
        [
            _kv("flag", True),
            _kv("n", 42),
            _kv("x", 1.5),
            _kv("a.b", "dot"),
            _kv("a_b", "under"),
            _kv("job", "from-point"),
            KeyValue(key="list", value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)]))),
        ]
    )
    s = _parse(_request(metric))[("g", "")]
    assert s.labels["flag"] == "true" and s.labels["n"] == "42" and s.labels["x"] == "1.5"
    assert s.labels["a_b"] == "dot;under"  # keys sorted: "a.b" < "a_b"
    assert s.labels["job"] == "api"  # the resource's service.name wins
    assert s.labels["list"] == "[1]"


def test_scope_metadata_promotion():
    metric = m.Metric(name="g")
    metric.gauge.data_points.add(time_unix_nano=T0_NS, as_double=1.0)
    labels = _parse(_request(metric, scope="my.lib"), promote_scope_metadata=True)[("g", "")].labels
    assert labels["otel_scope_name"] == "my.lib" and labels["otel_scope_version"] == "1.2"
    assert "otel_scope_name" not in _parse(_request(metric, scope="my.lib"))[("g", "")].labels


def test_missing_value_and_timestamp():
    metric = m.Metric(name="g")
    metric.gauge.data_points.add(time_unix_nano=T0_NS)  # no value
    metric.gauge.data_points.add(as_double=3.0)  # no timestamp -> now
    result = parse_otlp(_request(metric).SerializeToString(), now_ms=NOW_MS)
    [s] = result.series
    assert s.timestamps_ms.tolist() == [NOW_MS]
    assert [(r.reason, r.points) for r in result.rejections] == [("missing_field", 1)]


def test_bad_protobuf_and_invalid_utf8():
    with pytest.raises(InvalidInput) as err:
        parse_otlp(b"\x0a\xff\xff\xff\xff\x0f", now_ms=NOW_MS)
    assert err.value.reason == "bad_protobuf"
    metric = m.Metric(name="NAMEX")
    metric.gauge.data_points.add(time_unix_nano=T0_NS, as_double=1.0)
    body = _request(metric).SerializeToString().replace(b"NAMEX", b"NAM\xffX")
    with pytest.raises(InvalidInput) as err:
        parse_otlp(body, now_ms=NOW_MS)
    assert err.value.reason == "bad_protobuf"


def test_empty_request():
    assert parse_otlp(b"", now_ms=NOW_MS).series == []


def test_encoder_round_trip():
    series = [
        SeriesSamples({"__name__": "c", "k": "v"}, [T0_MS, T0_MS + 1000], [1.0, 2.0], MetricKind.COUNTER),
        SeriesSamples({"__name__": "g"}, [T0_MS], [0.5], MetricKind.GAUGE),
    ]
    result = parse_otlp(encode_otlp(series, {"service.name": "svc"}), now_ms=NOW_MS)
    got = {s.labels["__name__"]: s for s in result.series}
    assert got["c_total"].labels == {"__name__": "c_total", "k": "v", "job": "svc"}
    assert got["c_total"].values.tolist() == [1.0, 2.0]
    assert got["g"].timestamps_ms.tolist() == [T0_MS]


def test_invalid_utf8_attribute_refuses_only_that_point():
    metric = m.Metric(name="g")
    good = metric.gauge.data_points.add(time_unix_nano=T0_NS, as_double=1.0)
    good.attributes.append(_kv("host", "a"))
    bad = metric.gauge.data_points.add(time_unix_nano=T0_NS, as_double=2.0)
    bad.attributes.append(_kv("host", "BADX"))
    body = _request(metric).SerializeToString().replace(b"BADX", b"BA\xffX")
    result = parse_otlp(body, now_ms=NOW_MS)
    assert [s.labels["host"] for s in result.series] == ["a"]
    assert [(r.reason, r.points) for r in result.rejections] == [("invalid_utf8", 1)]


def test_same_attributes_different_order_is_one_series():
    metric = m.Metric(name="g")
    first = metric.gauge.data_points.add(time_unix_nano=T0_NS, as_double=1.0)
    first.attributes.extend([_kv("a", "1"), _kv("b", "2")])
    second = metric.gauge.data_points.add(time_unix_nano=T0_NS + 10**9, as_double=2.0)
    second.attributes.extend([_kv("b", "2"), _kv("a", "1")])
    result = parse_otlp(_request(metric).SerializeToString(), now_ms=NOW_MS)
    [s] = result.series
    assert s.values.tolist() == [1.0, 2.0]
