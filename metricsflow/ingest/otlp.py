"""OTLP/HTTP metrics (``ExportMetricsServiceRequest``, application/x-protobuf).

Translation follows Prometheus' OTLP receiver (``UnderscoreEscapingWithSuffixes``):

* Gauge -> gauge series; Sum monotonic+cumulative -> counter ``<name>[_<unit>]_total``;
  Sum non-monotonic+cumulative -> gauge; Sum with delta temporality -> refused
  (``delta_temporality_unsupported``: turning deltas into cumulative values needs
  per-series state across requests, which a stateless parser does not have).
* Histogram (explicit buckets, cumulative) -> ``<name>_bucket{le=...}`` with
  cumulative counts and an ``le="+Inf"`` bucket equal to ``count``,
  ``<name>_sum`` (when present), ``<name>_count``; delta -> refused.
* Summary -> ``<name>{quantile=...}``, ``<name>_sum``, ``<name>_count``.
* ExponentialHistogram -> refused (``exponential_histogram_unsupported``).
* A point flagged ``NO_RECORDED_VALUE`` becomes a Prometheus stale marker.
* Unit suffixes: ``s`` -> ``_seconds``, ``By`` -> ``_bytes``, ``1`` on a gauge ->
  ``_ratio``, ``x/y`` -> ``_x_per_y``, ``{annotations}`` dropped; never
  added twice. Disable with ``OtlpOptions(add_suffixes=False)``.

Resource attributes: ``service.name`` -> ``job`` (``<service.namespace>/<service.name>``
when a namespace is set), ``service.instance.id`` -> ``instance``. The others
are not put on every series (they would multiply label cardinality) but go to
one ``target_info`` gauge per resource (value 1, ``job``/``instance`` + the
attributes), unless listed in ``promote_resource_attributes``. Labels derived
from the resource (and scope) override a data-point attribute of the same name. Scope name/version are dropped
unless ``promote_scope_metadata`` (-> ``otel_scope_name``, ``otel_scope_version``).
Attribute keys are sanitised (:mod:`metricsflow.ingest.names`); keys that
collide after sanitising have their values joined with ``;`` in key order.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from metricsflow.errors import InvalidInput
from metricsflow.ingest._rejections import RejectionLog
from metricsflow.ingest.names import sanitize_label_name, sanitize_metric_name
from metricsflow.model import METRIC_NAME_LABEL, STALE_NAN, MetricKind, ParseResult, SeriesSamples

_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
_NO_RECORDED_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_IDENTIFYING = frozenset(("service.name", "service.namespace", "service.instance.id"))

# UCUM units OTel SDKs emit -> Prometheus suffix words (Prometheus' otlptranslator table).
_UNIT_WORDS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds",
    "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes", "TiBy": "tibibytes",
    "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams",
    "Cel": "celsius", "Hz": "hertz", "%": "percent",
}  # fmt: skip
_PER_UNIT_WORDS = {
    "s": "second",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}


@dataclass(frozen=True, slots=True)
class OtlpOptions:
    """How OTLP names and resources become Prometheus series."""

    add_suffixes: bool = True
    promote_resource_attributes: frozenset[str] = frozenset()
    target_info: bool = True
    promote_scope_metadata: bool = False


DEFAULT_OPTIONS = OtlpOptions()

# Labels every series of a scope gets (resource identity, promoted attributes,
# scope metadata) and the scope's number within the request (a cache-key part).
_Base = tuple[dict[str, str], int]


class _Collector:
    """Accumulates points per label set, and rejections per reason."""

    def __init__(self) -> None:
        self.series: dict[
            tuple[tuple[str, str], ...], tuple[dict[str, str], MetricKind, list[int], list[float]]
        ] = {}
        self.rejections = RejectionLog()
        # Raw attribute bytes -> labels (None: undecodable). Points of one series
        # repeat the same attributes, so each set is decoded once per request.
        self.attr_cache: dict[tuple[bytes, ...], dict[str, str] | None] = {}
        # (metric name, scope number, raw attributes) -> series entry: skips the
        # label sort for every point after a series' first.
        self.by_key: dict[tuple[Any, ...], tuple[dict[str, str], MetricKind, list[int], list[float]]] = {}

    def entry(
        self, labels: dict[str, str], kind: MetricKind
    ) -> tuple[dict[str, str], MetricKind, list[int], list[float]]:
        key = tuple(sorted(labels.items()))
        entry = self.series.get(key)
        if entry is None:
            entry = self.series[key] = (labels, kind, [], [])
        return entry

    def add(self, labels: dict[str, str], kind: MetricKind, timestamp_ms: int, value: float) -> None:
        entry = self.entry(labels, kind)
        entry[2].append(timestamp_ms)
        entry[3].append(value)

    def reject(self, reason: str, detail: str, points: int) -> None:
        self.rejections.add(reason, detail, points)

    def result(self) -> ParseResult:
        out = ParseResult()
        for labels, kind, timestamps_ms, values in self.series.values():
            out.series.append(
                SeriesSamples(labels, np.array(timestamps_ms, np.int64), np.array(values), kind)
            )
        out.rejections = self.rejections.to_list()
        return out


def parse_otlp(body: bytes, *, now_ms: int, options: OtlpOptions = DEFAULT_OPTIONS) -> ParseResult:
    """Decode an OTLP/HTTP protobuf metrics body; unsupported points are counted, not fatal."""
    try:
        req = _AttributeBytesRequest.FromString(body)
    except DecodeError as exc:
        # Names, units and resource/scope strings are proto3 `string`: invalid
        # UTF-8 there fails the parse (data-point attributes are checked per point).
        raise InvalidInput(
            "bad_protobuf", f"cannot parse ExportMetricsServiceRequest ({len(body)} bytes): {exc}"
        ) from None
    out = _Collector()
    scope_number = 0
    for rm in req.resource_metrics:
        resource_labels, info_labels = _resource_labels(rm.resource.attributes, options)
        latest_ms = None
        for sm in rm.scope_metrics:
            scope_number += 1
            base = dict(resource_labels)
            if options.promote_scope_metadata:
                if sm.scope.name:
                    base["otel_scope_name"] = sm.scope.name
                if sm.scope.version:
                    base["otel_scope_version"] = sm.scope.version
            for metric in sm.metrics:
                ts = _metric(metric, (base, scope_number), now_ms, options, out)
                if ts is not None and (latest_ms is None or ts > latest_ms):
                    latest_ms = ts
        if options.target_info and info_labels and latest_ms is not None:
            out.add({**info_labels, METRIC_NAME_LABEL: "target_info"}, MetricKind.GAUGE, latest_ms, 1.0)
    return out.result()


def _resource_labels(attributes: Any, options: OtlpOptions) -> tuple[dict[str, str], dict[str, str]]:
    """Labels for every series of the resource, and the target_info labels (empty: none)."""
    attrs = {kv.key: _any_value_str(kv.value) for kv in attributes}
    identity: dict[str, str] = {}
    name = attrs.get("service.name")
    if name is not None:
        namespace = attrs.get("service.namespace")
        identity["job"] = f"{namespace}/{name}" if namespace else name
    instance = attrs.get("service.instance.id")
    if instance is not None:
        identity["instance"] = instance
    promoted = _labels_from({k: v for k, v in attrs.items() if k in options.promote_resource_attributes})
    series_labels = {**promoted, **identity}
    rest = {k: v for k, v in attrs.items() if k not in _IDENTIFYING}
    info = {**_labels_from(rest), **identity} if rest else {}
    return series_labels, info


def _labels_from(attrs: Mapping[str, str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for key in sorted(attrs):
        name = sanitize_label_name(key)
        if not name:
            continue
        labels[name] = f"{labels[name]};{attrs[key]}" if name in labels else attrs[key]
    return labels


def _point_labels(
    attributes: tuple[bytes, ...], base: dict[str, str], out: _Collector
) -> dict[str, str] | None:
    """Labels of a data point (a fresh dict), or None when an attribute is not valid UTF-8."""
    if not attributes:
        return dict(base)
    labels = out.attr_cache.get(attributes, _MISSING)
    if labels is _MISSING:
        try:
            decoded = [common_pb2.KeyValue.FromString(raw) for raw in attributes]
            labels = _labels_from({kv.key: _any_value_str(kv.value) for kv in decoded})
        except DecodeError:
            labels = None
        out.attr_cache[attributes] = labels
    if labels is None:
        return None
    return {**labels, **base}  # job/instance from the resource win (Prometheus does the same)


_MISSING: Any = object()


def _any_value_str(value: Any) -> str:
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "int_value":
        return str(value.int_value)
    if which == "double_value":
        return _format_float(value.double_value)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if which in ("array_value", "kvlist_value"):
        return json.dumps(_any_value_json(value), separators=(",", ":"))
    return ""


def _any_value_json(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_any_value_json(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _any_value_json(kv.value) for kv in value.kvlist_value.values}
    if which in ("int_value", "bool_value", "string_value"):
        return getattr(value, which)
    if which == "double_value":
        v = value.double_value
        return v if math.isfinite(v) else _format_float(v)
    return _any_value_str(value) if which else None


def _format_float(v: float) -> str:
    """Shortest form, Prometheus-like: 1 not 1.0, +Inf/-Inf/NaN."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _ms(time_unix_nano: int, now_ms: int) -> int:
    return time_unix_nano // 1_000_000 if time_unix_nano else now_ms


def _metric(metric: Any, base: _Base, now_ms: int, options: OtlpOptions, out: _Collector) -> int | None:
    """Add one metric's points; return the latest timestamp used (for target_info)."""
    which = metric.WhichOneof("data")
    latest: int | None = None
    if which == "gauge":
        name = _metric_name(metric.name, metric.unit, "gauge", options)
        for dp in metric.gauge.data_points:
            latest = _number_point(dp, name, MetricKind.GAUGE, base, now_ms, out, latest)
    elif which == "sum":
        s = metric.sum
        if s.aggregation_temporality != _CUMULATIVE:
            _refuse_temporality(metric.name, s.aggregation_temporality, len(s.data_points), out)
            return None
        kind = MetricKind.COUNTER if s.is_monotonic else MetricKind.GAUGE
        name = _metric_name(metric.name, metric.unit, "counter" if s.is_monotonic else "gauge", options)
        for dp in s.data_points:
            latest = _number_point(dp, name, kind, base, now_ms, out, latest)
    elif which == "histogram":
        h = metric.histogram
        if h.aggregation_temporality != _CUMULATIVE:
            _refuse_temporality(metric.name, h.aggregation_temporality, len(h.data_points), out)
            return None
        name = _metric_name(metric.name, metric.unit, "histogram", options)
        for dp in h.data_points:
            latest = _histogram_point(dp, name, base, now_ms, out, latest)
    elif which == "summary":
        name = _metric_name(metric.name, metric.unit, "summary", options)
        for dp in metric.summary.data_points:
            latest = _summary_point(dp, name, base, now_ms, out, latest)
    elif which == "exponential_histogram":
        n = len(metric.exponential_histogram.data_points)
        out.reject("exponential_histogram_unsupported", f"{metric.name!r}: exponential histograms", n)
    else:
        out.reject("missing_field", f"{metric.name!r}: metric has no data", 1)
    return latest


def _refuse_temporality(name: str, temporality: int, points: int, out: _Collector) -> None:
    if temporality == _DELTA:
        out.reject("delta_temporality_unsupported", f"{name!r}: delta temporality (send cumulative)", points)
    else:
        out.reject("invalid_temporality", f"{name!r}: aggregation temporality {temporality}", points)


def _later(latest: int | None, ts: int) -> int:
    return ts if latest is None or ts > latest else latest


def _number_point(
    dp: Any,
    name: str,
    kind: MetricKind,
    base: _Base,
    now_ms: int,
    out: _Collector,
    latest: int | None,
) -> int | None:
    if dp.flags & _NO_RECORDED_VALUE:
        value = STALE_NAN
    else:
        which = dp.WhichOneof("value")
        if which == "as_double":
            value = dp.as_double
        elif which == "as_int":
            value = float(dp.as_int)
        else:
            out.reject("missing_field", f"{name!r}: data point without a value", 1)
            return latest
    attributes = tuple(dp.attributes)
    key = (name, base[1], attributes)
    entry = out.by_key.get(key)
    if entry is None:
        labels = _point_labels(attributes, base[0], out)
        if labels is None:
            out.reject("invalid_utf8", f"{name!r}: an attribute is not valid UTF-8 (or not a KeyValue)", 1)
            return latest
        labels[METRIC_NAME_LABEL] = name
        entry = out.by_key[key] = out.entry(labels, kind)
    ts = _ms(dp.time_unix_nano, now_ms)
    entry[2].append(ts)
    entry[3].append(value)
    return _later(latest, ts)


def _histogram_point(
    dp: Any, name: str, base: _Base, now_ms: int, out: _Collector, latest: int | None
) -> int | None:
    bounds = list(dp.explicit_bounds)
    counts = list(dp.bucket_counts)
    if counts and len(counts) != len(bounds) + 1:
        out.reject("bad_histogram", f"{name!r}: {len(counts)} bucket counts for {len(bounds)} bounds", 1)
        return latest
    ts = _ms(dp.time_unix_nano, now_ms)
    stale = bool(dp.flags & _NO_RECORDED_VALUE)
    labels = _point_labels(tuple(dp.attributes), base[0], out)
    if labels is None:
        out.reject("invalid_utf8", f"{name!r}: an attribute is not valid UTF-8 (or not a KeyValue)", 1)
        return latest
    cumulative = 0
    for bound, count in zip(bounds, counts, strict=False):  # counts may be empty
        cumulative += count
        out.add(
            {**labels, "le": _format_float(bound), METRIC_NAME_LABEL: name + "_bucket"},
            MetricKind.COUNTER, ts, STALE_NAN if stale else float(cumulative),
        )  # fmt: skip
    count_value = STALE_NAN if stale else float(dp.count)
    out.add(
        {**labels, "le": "+Inf", METRIC_NAME_LABEL: name + "_bucket"}, MetricKind.COUNTER, ts, count_value
    )
    out.add({**labels, METRIC_NAME_LABEL: name + "_count"}, MetricKind.COUNTER, ts, count_value)
    if dp.HasField("sum") or stale:
        out.add(
            {**labels, METRIC_NAME_LABEL: name + "_sum"},
            MetricKind.COUNTER,
            ts,
            STALE_NAN if stale else dp.sum,
        )
    return _later(latest, ts)


def _summary_point(
    dp: Any, name: str, base: _Base, now_ms: int, out: _Collector, latest: int | None
) -> int | None:
    ts = _ms(dp.time_unix_nano, now_ms)
    stale = bool(dp.flags & _NO_RECORDED_VALUE)
    labels = _point_labels(tuple(dp.attributes), base[0], out)
    if labels is None:
        out.reject("invalid_utf8", f"{name!r}: an attribute is not valid UTF-8 (or not a KeyValue)", 1)
        return latest
    for q in dp.quantile_values:
        out.add(
            {**labels, "quantile": _format_float(q.quantile), METRIC_NAME_LABEL: name},
            MetricKind.GAUGE, ts, STALE_NAN if stale else q.value,
        )  # fmt: skip
    out.add(
        {**labels, METRIC_NAME_LABEL: name + "_sum"}, MetricKind.COUNTER, ts, STALE_NAN if stale else dp.sum
    )
    out.add(
        {**labels, METRIC_NAME_LABEL: name + "_count"},
        MetricKind.COUNTER,
        ts,
        STALE_NAN if stale else float(dp.count),
    )
    return _later(latest, ts)


def _unit_suffix(unit: str, metric_type: str) -> list[str]:
    """Prometheus suffix words for a UCUM unit: "ms" -> milliseconds, "By/s" -> bytes per second."""
    # Drop {annotations}: "{requests}" -> "", "1{packets}" -> "1".
    while "{" in unit and "}" in unit[unit.index("{") :]:
        start = unit.index("{")
        unit = unit[:start] + unit[unit.index("}", start) + 1 :]
    unit = unit.strip()
    if not unit:
        return []
    if unit == "1":
        return ["ratio"] if metric_type == "gauge" else []
    main, _, per = unit.partition("/")
    words = [_UNIT_WORDS.get(main, main)] if main else []
    if per:
        words += ["per", _PER_UNIT_WORDS.get(per, per)]
    return [w for w in sanitize_metric_name(" ".join(words)).split("_") if w]


def _metric_name(name: str, unit: str, metric_type: str, options: OtlpOptions) -> str:
    base = sanitize_metric_name(name)
    if not options.add_suffixes:
        return base
    tokens = [t for t in base.split("_") if t]
    for word in _unit_suffix(unit, metric_type):
        if word not in tokens:
            tokens.append(word)
    if metric_type == "counter":
        if "total" in tokens:
            tokens.remove("total")  # moved to the end, as Prometheus does
        tokens.append("total")
    out = "_".join(tokens) or "_"
    if base.startswith("_") and not out.startswith("_"):
        out = "_" + out  # keep the prefix sanitising added for a leading digit
    return out


def _attribute_bytes_request_class() -> Any:
    """ExportMetricsServiceRequest with data-point ``attributes`` declared as raw bytes.

    Same wire format (a KeyValue message is length-delimited like bytes). Lets
    the parser (1) key a cache on the raw attribute bytes instead of building
    one Python object per attribute per point (~3x faster on the TSBS request)
    and (2) refuse only the points whose attributes are not valid UTF-8.
    Built in a private descriptor pool from the installed opentelemetry-proto
    descriptors, so it tracks whatever OTLP version is installed.
    """
    point_types = {
        "NumberDataPoint",
        "HistogramDataPoint",
        "ExponentialHistogramDataPoint",
        "SummaryDataPoint",
    }
    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2, metrics_pb2, metrics_service_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(fdp)
        if module is metrics_pb2:
            for message in fdp.message_type:
                if message.name in point_types:
                    for f in message.field:
                        if f.name == "attributes":
                            f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                            f.ClearField("type_name")
        pool.Add(fdp)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest")
    )


_AttributeBytesRequest = _attribute_bytes_request_class()


# --- encoding helper (tests, load generation) ---------------------------------------------------


def encode_otlp(
    series: Iterable[SeriesSamples],
    resource_attributes: Mapping[str, str] | None = None,
    *,
    scope_name: str = "metricsflow.test",
) -> bytes:
    """Encode series as an OTLP ExportMetricsServiceRequest body.

    COUNTER series become monotonic cumulative sums, everything else gauges;
    ``__name__`` is the OTLP metric name, other labels are point attributes.
    """
    req = metrics_service_pb2.ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.CopyFrom(
        resource_pb2.Resource(
            attributes=[
                common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
                for k, v in (resource_attributes or {}).items()
            ]
        )
    )
    sm = rm.scope_metrics.add()
    sm.scope.name = scope_name
    for s in series:
        metric = sm.metrics.add(name=s.labels.get(METRIC_NAME_LABEL, ""))
        if s.kind == MetricKind.COUNTER:
            metric.sum.aggregation_temporality = _CUMULATIVE
            metric.sum.is_monotonic = True
            points = metric.sum.data_points
        else:
            points = metric.gauge.data_points
        attributes = [
            common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
            for k, v in s.labels.items()
            if k != METRIC_NAME_LABEL
        ]
        for t, v in zip(s.timestamps_ms.tolist(), s.values.tolist(), strict=True):
            points.add(time_unix_nano=t * 1_000_000, as_double=v, attributes=attributes)
    return req.SerializeToString()
