"""Prometheus remote_write 1.0: snappy-block-compressed ``prometheus.WriteRequest``.

Decoding uses two upb parses of the same bytes instead of touching one Python
object per sample: the normal ``WriteRequest`` gives per-series label and sample
counts (and histograms/exemplars to refuse), and ``WriteRequestColumnsView``
(see proto/prometheus_remote.proto) merges every series into one message so
that all values, timestamps, label names and label values arrive as four
repeated columns. Measured on 10k series x 10 labels x 10 samples: sample
columns 75 ms with a per-series list comprehension, 55 ms with
``np.fromiter(map(attrgetter(...)))``, 4 ms with the merged view; labels 45 ms
with a dict comprehension over Label objects, 25 ms from the label columns.

proto3 encoders omit zero-valued fields (value 0.0, timestamp 0, empty label
value), which would shift the merged columns; when a column's length differs
from the counted total the request falls back to per-series decoding.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from operator import attrgetter
from typing import Any

import cramjam
import numpy as np
from google.protobuf.message import DecodeError

from metricsflow.errors import InvalidInput
from metricsflow.ingest._rejections import merged
from metricsflow.model import METRIC_NAME_LABEL, MetricKind, ParseResult, Rejection, SeriesSamples
from metricsflow.pb import prometheus_remote_pb2 as pb

# Decompressed-size bound: the snappy header announces the size, so a 1 KiB
# body cannot make us allocate gigabytes. Prometheus sends <= ~2 MB batches.
DEFAULT_MAX_DECOMPRESSED_BYTES = 64 << 20

_MT = pb.MetricMetadata.MetricType
_value_of = attrgetter("value")
_timestamp_of = attrgetter("timestamp")


def decompress_remote_write(
    body: bytes,
    content_encoding: str | None = "snappy",
    *,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
) -> bytes:
    """Undo the remote_write transport encoding (spec: snappy block format).

    ``content_encoding`` is the request's Content-Encoding header; missing means
    snappy (the spec requires it, some clients omit the header). ``identity``
    passes through. Raises ``InvalidInput("bad_snappy")`` on a corrupt or framed
    body, ``InvalidInput("unsupported_encoding")`` for anything else.
    """
    encoding = (content_encoding or "snappy").strip().lower()
    if encoding == "identity":
        return bytes(body)
    if encoding != "snappy":
        raise InvalidInput(
            "unsupported_encoding", f"Content-Encoding {encoding!r}; remote_write 1.0 is snappy"
        )
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except (cramjam.DecompressionError, ValueError, TypeError) as exc:
        raise InvalidInput("bad_snappy", f"cannot read snappy block header: {exc}") from None
    if size > max_decompressed_bytes:
        raise InvalidInput("body_too_large", f"decompressed size {size} > {max_decompressed_bytes} bytes")
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except (cramjam.DecompressionError, ValueError, TypeError) as exc:
        raise InvalidInput(
            "bad_snappy", f"cannot decompress snappy block of {len(body)} bytes: {exc}"
        ) from None


def parse_remote_write(
    body: bytes,
    content_encoding: str | None = "snappy",
    *,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
) -> ParseResult:
    """Decode a remote_write HTTP body into series columns.

    Stale markers (NaN 0x7ff0000000000002) keep their exact bits. Native
    histograms and exemplars are counted as rejections, not stored.
    """
    raw = decompress_remote_write(body, content_encoding, max_decompressed_bytes=max_decompressed_bytes)
    return decode_write_request(raw)


def decode_write_request(raw: bytes) -> ParseResult:
    """Decode an uncompressed ``prometheus.WriteRequest``."""
    try:
        req = pb.WriteRequest.FromString(raw)
    except DecodeError:
        # Most often a string field with invalid UTF-8; salvage the other series.
        return _decode_lenient(raw)
    result = ParseResult()
    kinds = _kinds_from_metadata((md.metric_family_name, md.type) for md in req.metadata)
    label_counts: list[int] = []
    sample_counts: list[int] = []
    for ts in req.timeseries:
        label_counts.append(len(ts.labels))
        sample_counts.append(len(ts.samples))
        _refuse_extras(ts, result)
    try:
        view = pb.WriteRequestColumnsView.FromString(raw).timeseries
    except DecodeError:
        # A field with an unexpected wire type is an unknown field to the strict
        # parse but corrupt to the view (e.g. a length-delimited Sample.value).
        for ts in req.timeseries:
            labels = {label.name: label.value for label in ts.labels}
            _append_series(result, labels, len(ts.labels), _sample_columns(ts.samples), kinds)
        result.rejections = merged(result.rejections)
        return result
    names = list(view.labels.name)
    values = list(view.labels.value)
    # np.array on a repeated double copies the doubles bit-exactly (stale NaN kept).
    timestamps_ms = np.array(view.samples.timestamp, dtype=np.int64)
    sample_values = np.array(view.samples.value, dtype=np.float64)
    n_labels = sum(label_counts)
    n_samples = sum(sample_counts)
    if len(names) == len(values) == n_labels and len(timestamps_ms) == len(sample_values) == n_samples:
        label_pairs = zip(names, values, strict=True)
        start = 0
        for n_l, n_s in zip(label_counts, sample_counts, strict=True):
            labels = dict(itertools.islice(label_pairs, n_l))
            end = start + n_s
            _append_series(result, labels, n_l, (timestamps_ms[start:end], sample_values[start:end]), kinds)
            start = end
    else:
        columns = (names, values, timestamps_ms, sample_values)
        _decode_misaligned(raw, req, (label_counts, sample_counts), columns, kinds, result)
    result.rejections = merged(result.rejections)
    return result


def _decode_misaligned(
    raw: bytes,
    req: Any,
    counts: tuple[list[int], list[int]],
    columns: tuple[list[str], list[str], np.ndarray, np.ndarray],
    kinds: dict[str, MetricKind],
    result: ParseResult,
) -> None:
    """Some series omitted a zero value, a zero timestamp or an empty label value.

    The per-series view tells how many column entries each series contributed,
    so the well-formed series are still sliced out of the merged columns and
    only the others are read sample by sample.
    """
    label_counts, sample_counts = counts
    names, values, timestamps_ms, sample_values = columns
    # Only the columns that are short overall need per-series lengths (usually just
    # the values: a zero is common, an empty label value or a zero timestamp is not).
    names_ok = len(names) == sum(label_counts)
    values_ok = len(values) == sum(label_counts)
    ts_ok = len(timestamps_ms) == sum(sample_counts)
    vs_ok = len(sample_values) == sum(sample_counts)
    per_series = pb.WriteRequestPerSeriesView.FromString(raw).timeseries
    at_name = at_value = at_ts = at_v = 0
    for ts, view, n_l, n_s in zip(req.timeseries, per_series, label_counts, sample_counts, strict=True):
        if names_ok and values_ok:
            c_name = c_value = n_l
        else:
            label_view = view.labels
            c_name = n_l if names_ok else len(label_view.name)
            c_value = n_l if values_ok else len(label_view.value)
        if ts_ok and vs_ok:
            c_ts = c_v = n_s
        else:
            sample_view = view.samples
            c_ts = n_s if ts_ok else len(sample_view.timestamp)
            c_v = n_s if vs_ok else len(sample_view.value)
        if c_name == c_value == n_l:
            labels = dict(zip(names[at_name : at_name + n_l], values[at_value : at_value + n_l], strict=True))
        else:
            labels = {label.name: label.value for label in ts.labels}
        if c_ts == c_v == n_s:
            sample_columns = (timestamps_ms[at_ts : at_ts + n_s], sample_values[at_v : at_v + n_s])
        else:
            sample_columns = _sample_columns(ts.samples)
        _append_series(result, labels, n_l, sample_columns, kinds)
        at_name += c_name
        at_value += c_value
        at_ts += c_ts
        at_v += c_v


def _sample_columns(samples: Any) -> tuple[np.ndarray, np.ndarray]:
    n = len(samples)
    ts = np.fromiter(map(_timestamp_of, samples), dtype=np.int64, count=n)
    vs = np.fromiter(map(_value_of, samples), dtype=np.float64, count=n)
    return ts, vs


def _refuse_extras(ts: Any, result: ParseResult) -> None:
    histograms = len(ts.histograms)
    if histograms:
        result.rejections.append(
            Rejection("native_histograms_unsupported", "native histogram samples are not stored", histograms)
        )
    exemplars = len(ts.exemplars)
    if exemplars:
        result.rejections.append(Rejection("exemplars_unsupported", "exemplars are not stored", exemplars))


def _append_series(
    result: ParseResult,
    labels: dict[str, str],
    n_labels: int,
    columns: tuple[np.ndarray, np.ndarray],
    kinds: dict[str, MetricKind],
) -> None:
    timestamps_ms, values = columns
    if len(values) == 0:
        return  # histogram-only series: already counted by _refuse_extras
    if len(labels) != n_labels:
        result.rejections.append(
            Rejection("duplicate_label_name", f"series {_describe(labels)} repeats a label name", len(values))
        )
        return
    kind = (
        kinds.get(labels.get(METRIC_NAME_LABEL, ""), MetricKind.UNSPECIFIED)
        if kinds
        else MetricKind.UNSPECIFIED
    )
    # Every caller passes int64/float64 columns of one length (the views checked the counts).
    result.series.append(SeriesSamples.of_columns(labels, timestamps_ms, values, kind))


def _kinds_from_metadata(entries: Iterable[tuple[str, int]]) -> dict[str, MetricKind]:
    """Map series names to kinds using the request's metadata (often absent:
    Prometheus sends metadata in separate requests, then kinds stay UNSPECIFIED)."""
    kinds: dict[str, MetricKind] = {}
    for family, mtype in entries:
        if mtype == _MT.COUNTER:
            kinds[family] = kinds[family + "_total"] = MetricKind.COUNTER
        elif mtype in (_MT.GAUGE, _MT.GAUGEHISTOGRAM, _MT.INFO, _MT.STATESET):
            kinds[family] = MetricKind.GAUGE
        if mtype in (_MT.HISTOGRAM, _MT.SUMMARY):
            # Classic histogram/summary parts are cumulative counters; summary quantiles are gauges.
            for suffix in ("_bucket", "_sum", "_count"):
                kinds[family + suffix] = MetricKind.COUNTER
            kinds[family] = MetricKind.GAUGE
    return kinds


def _decode_lenient(raw: bytes) -> ParseResult:
    try:
        req = pb.WriteRequestLenientView.FromString(raw)
    except DecodeError as exc:
        raise InvalidInput(
            "bad_protobuf", f"cannot parse prometheus.WriteRequest ({len(raw)} bytes): {exc}"
        ) from None
    result = ParseResult()
    families = []
    for md in req.metadata:
        try:
            families.append((md.metric_family_name.decode(), md.type))
        except UnicodeDecodeError:
            pass  # metadata only refines kinds; a bad name just leaves its series UNSPECIFIED
    kinds = _kinds_from_metadata(families)
    for ts in req.timeseries:
        _refuse_extras(ts, result)
        try:
            labels = {label.name.decode(): label.value.decode() for label in ts.labels}
        except UnicodeDecodeError:
            if len(ts.samples):
                result.rejections.append(
                    Rejection("invalid_utf8", "a label name or value is not valid UTF-8", len(ts.samples))
                )
            continue
        _append_series(result, labels, len(ts.labels), _sample_columns(ts.samples), kinds)
    result.rejections = merged(result.rejections)
    return result


def _describe(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v!r}" for k, v in list(labels.items())[:8]) + "}"


# --- encoding (tests, load generation) ------------------------------------------------------------


def build_write_request(series: Iterable[SeriesSamples]) -> pb.WriteRequest:
    """Build a ``prometheus.WriteRequest`` message (labels sorted, as the spec requires)."""
    req = pb.WriteRequest()
    for s in series:
        ts = req.timeseries.add()
        ts.labels.extend(pb.Label(name=k, value=v) for k, v in sorted(s.labels.items()))
        ts.samples.extend(
            pb.Sample(value=v, timestamp=t)
            for t, v in zip(s.timestamps_ms.tolist(), s.values.tolist(), strict=True)
        )
    return req


def encode_remote_write(series: Iterable[SeriesSamples]) -> bytes:
    """Encode series as a remote_write 1.0 HTTP body (snappy block of a WriteRequest)."""
    return bytes(cramjam.snappy.compress_raw(build_write_request(series).SerializeToString()))
