"""The native ``metricsflow.v1.WriteRequest`` (proto/metricsflow.proto).

Each series carries either packed ``timestamps_ms``/``values`` or the faster
little-endian byte columns ``timestamps_ms_le``/``values_le`` (the columns win
when both are set). Byte columns are wrapped with ``numpy.frombuffer``: no
copy, so those arrays are **read-only** views of the request bytes; copy
before mutating in place.

The ``tenant`` field is ignored by ``parse_native``: collectors take the tenant
from the X-Scope-OrgID header. The mf.ingest consumer, which has no header,
calls ``parse_native_with_tenant`` and gets it from the same parse.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from metricsflow.codecs._wire import byte_runs
from metricsflow.errors import InvalidInput
from metricsflow.ingest import request_templates
from metricsflow.ingest._rejections import merged
from metricsflow.ingest.label_sets import LABELS
from metricsflow.ingest.request_templates import Templates, first_field
from metricsflow.model import MetricKind, ParseResult, Rejection, SampleColumns, SeriesSamples, UniformRuns
from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.proto_views import views
from metricsflow.series_id import uvarint

_I64_LE = np.dtype("<i8")
_F64_LE = np.dtype("<f8")


def parse_native(body: bytes) -> ParseResult:
    """Decode a serialized ``metricsflow.v1.WriteRequest`` into series columns."""
    return parse_native_with_tenant(body)[0]


def parse_native_with_tenant(body: bytes) -> tuple[ParseResult, str | None]:
    """``parse_native`` and the request's ``tenant`` field, from one parse.

    The tenant is "" when absent and None when it is not valid UTF-8 (the
    caller refuses the message); invalid UTF-8 elsewhere does not hide it.
    """
    fast = _parse_uniform(body) or _parse_le_columns(body)
    if fast is not None:
        return fast
    return _parse_general(body)


def _parse_uniform(body: bytes) -> tuple[ParseResult, str | None] | None:
    """The steady request of a client, without a protobuf object per series.

    Every series ends in canonically encoded columns of one length and one kind (as the
    first series does) and begins with a label prefix already known (``label_sets``): each
    series is then exactly those labels and those columns, so the columns are gathered for
    the whole request with numpy and each series costs one slice and one dict probe. None
    for anything else: a new label set, a series of other columns, a check that fails
    (``_parse_le_columns`` then reads it series by series). A request seen before with
    other samples is found whole by its template (``request_templates``).
    """
    first_at = first_field(body, 1)
    if first_at is None:
        return None
    start, size = first_at
    try:
        first = _SeriesLe.FromString(body[start:start + size])
    except DecodeError:
        return None
    n, kind = len(first.timestamps_ms_le), first.kind
    if not n or n & 7 or len(first.values_le) != n or kind < 0:
        return None
    tail = _UNIFORM_TAILS[(n, kind)]
    if size < tail.size:
        return None
    key = (len(body), body[:start + size - tail.size])  # all before the first column
    found = _TEMPLATES.find(key, body)
    if found is not None:
        template, columns = found
        return _uniform(template.labels, columns, template.points, template.kind), template.tenant
    try:
        request = _RawRequest.FromString(body)
        tenant = request.tenant.decode("utf-8")
    except (DecodeError, UnicodeDecodeError):
        return None
    raws = request.series
    lengths = np.fromiter(map(len, raws), dtype=np.int64, count=len(raws))
    if int(lengths.min()) < tail.size:
        return None
    get = LABELS.by_prefix.get
    if get(raws[0][:len(raws[0]) - tail.size]) is None:
        return None  # a request of new series, most likely: no need to look at the others
    labels = [get(raw[:end]) for raw, end in zip(raws, (lengths - tail.size).tolist(), strict=True)]
    if None in labels:
        return None
    joined = np.frombuffer(b"".join(raws), dtype=np.uint8)
    # (series, tail bytes): each tail gathered whole (8 against 20 µs per 500 series)
    tails = byte_runs(joined, tail.size)[np.cumsum(lengths) - tail.size].view(np.uint8).reshape(-1, tail.size)
    if not (tails[:, tail.fixed] == tail.fixed_bytes).all():
        return None
    points = n >> 3
    columns = SampleColumns(np.full(len(raws), points, dtype=np.int64),
                            np.ascontiguousarray(tails[:, tail.timestamps]).view(_I64_LE).reshape(-1),
                            np.ascontiguousarray(tails[:, tail.values]).view(_F64_LE).reshape(-1))
    metric_kind = _KIND.get(kind, _UNSPECIFIED)
    if len(raws) >= request_templates.MIN_SERIES and _TEMPLATES.wants(key):
        _keep_template(key, body, lengths, tail, labels, metric_kind, tenant)
    return _uniform(labels, columns, points, metric_kind), tenant


def _uniform(labels: list[dict[str, str]], columns: SampleColumns, points: int, kind: MetricKind) -> ParseResult:
    # every labels dict came from LABELS
    return ParseResult(series=UniformRuns(labels, columns, points, kind), columns=columns, shared_labels=True)


def _keep_template(key: tuple[int, bytes], body: bytes, lengths: np.ndarray, tail: _UniformTail,
                   labels: list[dict[str, str]], kind: MetricKind, tenant: str) -> None:
    series = request_templates.series_starts(body, lengths)
    if series is None:
        return
    tail_at = series + lengths - tail.size
    starts = np.stack((tail_at + tail.timestamps.start, tail_at + tail.values.start), axis=1)
    _TEMPLATES.keep(key, request_templates.Template(body, starts, tail.timestamps.stop - tail.timestamps.start,
                                                    labels, kind, tenant))


class _UniformTail:
    """The bytes a series ends with when its columns are n bytes each and its kind is ``kind``:
    timestamps_ms_le (tag, length, bytes), values_le (the same), kind (tag, varint; absent when 0)."""

    def __init__(self, n: int, kind: int) -> None:
        length = uvarint(n)
        head = [0x22, *length]
        middle = [0x2A, *length]
        end = [0x30, *uvarint(kind)] if kind else []
        self.size = len(head) + n + len(middle) + n + len(end)
        at_values = len(head) + n + len(middle)
        self.timestamps = slice(len(head), len(head) + n)
        self.values = slice(at_values, at_values + n)
        fixed = [*range(len(head)), *range(len(head) + n, at_values), *range(at_values + n, self.size)]
        self.fixed = np.array(fixed, dtype=np.intp)
        self.fixed_bytes = np.array([*head, *middle, *end], dtype=np.uint8)


class _UniformTails(dict[tuple[int, int], _UniformTail]):
    def __missing__(self, key: tuple[int, int]) -> _UniformTail:
        if len(self) > 256:
            self.clear()
        tail = self[key] = _UniformTail(*key)
        return tail


_UNIFORM_TAILS = _UniformTails()
_TEMPLATES = Templates()


def _parse_le_columns(body: bytes) -> tuple[ParseResult, str | None] | None:
    """The common request in one pass per series: byte columns, valid UTF-8, no packed samples.

    A series' labels are found by the bytes before its columns (``label_sets``): the
    least its columns and kind can take is subtracted, so a known prefix leaves no room
    for another label. Every series' byte columns are joined and wrapped once (one
    ``frombuffer`` per request) and handed out as ``SampleColumns``. Anything else
    (packed samples, invalid UTF-8, an unparsable body) returns None and
    ``_parse_general`` decides, so the answers stay exactly its answers.
    """
    try:
        req = _SeriesRequest.FromString(body)
        tenant = req.tenant.decode("utf-8")
        raws = _RawRequest.FromString(body).series
    except (DecodeError, UnicodeDecodeError):
        return None
    result = ParseResult()
    rejections = result.rejections
    known = LABELS.sets
    by_prefix = LABELS.by_prefix
    columns_size = _COLUMNS_SIZE
    kind_size = _KIND_SIZE
    kept_labels: list[dict[str, str]] = []
    kinds: list[int] = []
    ts_parts: list[bytes] = []
    vs_parts: list[bytes] = []
    for series, raw in zip(req.series, raws, strict=True):
        ts_le = series.timestamps_ms_le
        vs_le = series.values_le
        kind = series.kind
        n = len(ts_le)
        prefix = None
        if n == len(vs_le) and n and not n & 7:
            prefix = raw[:len(raw) - columns_size[n] - kind_size[kind]]
            labels = by_prefix.get(prefix)
            if labels is not None:
                kept_labels.append(labels)
                kinds.append(kind)
                ts_parts.append(ts_le)
                vs_parts.append(vs_le)
                continue
        label_fields = tuple(series.labels)
        labels = known.get(label_fields)
        known_by_fields = labels is not None
        if labels is None:
            labels = LABELS.decode(label_fields, prefix)  # kept by its prefix when it can be
            if labels is None:
                return None  # not valid UTF-8: the general parse refuses just that series
        if not (ts_le or vs_le):
            if len(series.timestamps_ms) or len(series.values):
                return None  # packed samples
            continue  # no samples at all
        if n % 8 or n != len(vs_le):
            rejections.append(_bad_le_columns(ts_le, vs_le))
            continue
        if len(labels) != len(label_fields):
            rejections.append(Rejection("duplicate_label_name", "a series repeats a label name", n >> 3))
            continue
        if known_by_fields and prefix is not None:  # its prefix may read as its labels now
            LABELS.remember_prefix(prefix, labels)
        kept_labels.append(labels)
        kinds.append(kind)
        ts_parts.append(ts_le)
        vs_parts.append(vs_le)
    ends = np.cumsum(np.fromiter(map(len, ts_parts), dtype=np.int64, count=len(ts_parts))) >> 3
    columns = SampleColumns(np.diff(ends, prepend=0), np.frombuffer(b"".join(ts_parts), dtype=_I64_LE),
                            np.frombuffer(b"".join(vs_parts), dtype=_F64_LE))
    kind_of = _KIND.get
    result.series = columns.runs(kept_labels, [kind_of(kind, _UNSPECIFIED) for kind in kinds])
    result.columns = columns
    result.rejections = merged(rejections)
    result.shared_labels = True  # every labels dict came from LABELS
    return result, tenant


def _least_varint_size(value: int) -> int:
    """The fewest bytes a varint read as ``value`` can take (never more: see ``label_sets``)."""
    if value < 0:
        return 5  # negative int32s are written in 10 bytes, but 5 (the low 32 bits) read the same
    return max(1, (value.bit_length() + 6) // 7)


class _FieldSizes(dict[int, int]):
    """The fewest bytes on the wire of the fields a series ends with, by column length or kind (memoised)."""

    def __init__(self, size: Callable[[int], int]) -> None:
        super().__init__()
        self._size = size

    def __missing__(self, key: int) -> int:
        size = self[key] = self._size(key)
        return size


# timestamps_ms_le and values_le of n bytes each: tag, length, bytes, twice.
_COLUMNS_SIZE = _FieldSizes(lambda n: 2 * (1 + _least_varint_size(n) + n))
# kind: absent when 0, else tag and varint.
_KIND_SIZE = _FieldSizes(lambda kind: 1 + _least_varint_size(kind) if kind else 0)


def _bad_le_columns(ts_le: bytes, vs_le: bytes) -> Rejection:
    return Rejection(
        "bad_columns",
        f"timestamps_ms_le has {len(ts_le)} bytes and values_le {len(vs_le)}; want equal multiples of 8",
        max(len(ts_le), len(vs_le)) // 8 or 1,
    )


def _parse_general(body: bytes) -> tuple[ParseResult, str | None]:
    """Any valid WriteRequest: packed samples, omitted empty labels, invalid UTF-8 in some series."""
    try:
        req = pb.WriteRequest.FromString(body)
        strict = True
    except DecodeError:
        # proto3 strings fail the whole parse on invalid UTF-8; re-read with
        # labels as bytes to refuse only the series that carry it.
        try:
            req = _LenientWriteRequest.FromString(body)
        except DecodeError as exc:
            raise InvalidInput(
                "bad_protobuf", f"cannot parse metricsflow.v1.WriteRequest ({len(body)} bytes): {exc}"
            ) from None
        strict = False
    result = ParseResult()
    label_columns, packed = _merged_columns(body, req) if strict else (None, None)
    at_ts = at_vs = 0
    for series in req.series:
        n_labels = len(series.labels)
        if label_columns is not None:
            labels = dict(itertools.islice(label_columns, n_labels))
        elif strict:
            labels = {label.name: label.value for label in series.labels}
        else:
            try:
                labels = {label.name.decode(): label.value.decode() for label in series.labels}
            except UnicodeDecodeError:
                labels = None
        n_ts, n_vs = len(series.timestamps_ms), len(series.values)
        packed_slices = None
        if packed is not None:
            packed_slices = (packed[0][at_ts : at_ts + n_ts], packed[1][at_vs : at_vs + n_vs])
            at_ts += n_ts
            at_vs += n_vs
        columns = _columns(series, result, packed_slices)
        if columns is None:
            continue
        timestamps_ms, values = columns
        if labels is None:
            result.rejections.append(
                Rejection("invalid_utf8", "a label name or value is not valid UTF-8", len(values))
            )
            continue
        if len(labels) != n_labels:
            result.rejections.append(
                Rejection("duplicate_label_name", "a series repeats a label name", len(values))
            )
            continue
        kind = series.kind
        result.series.append(
            SeriesSamples(
                labels,
                timestamps_ms,
                values,
                _KIND.get(kind, _UNSPECIFIED),
            )
        )
    result.rejections = merged(result.rejections)
    if strict:
        return result, req.tenant
    try:
        return result, req.tenant.decode("utf-8")
    except UnicodeDecodeError:
        return result, None


_KIND = {int(k): k for k in MetricKind}
_UNSPECIFIED = MetricKind.UNSPECIFIED


def _merged_columns(
    body: bytes, req: Any
) -> tuple[Iterator[tuple[str, str]] | None, tuple[np.ndarray, np.ndarray] | None]:
    """All label pairs and all packed samples of the request, gathered by upb in C.

    Same trick as remote_write: every Series merged into one message turns the
    labels and the packed fields into request-wide repeated columns (one numpy
    conversion instead of one per series, no Python object per label). Packed
    repeated fields never omit elements, so those columns always line up with
    the per-series lengths; empty label strings are omitted on the wire, so the
    label columns are used only when their lengths match (else None).
    """
    try:
        view = _MergedColumnsRequest.FromString(body).series
    except DecodeError:  # defensive: same declarations as the strict parse, should not happen
        return None, None
    packed = (np.array(view.timestamps_ms, dtype=np.int64), np.array(view.values, dtype=np.float64))
    labels = view.labels
    total = sum(len(series.labels) for series in req.series)
    if not len(labels.name) == len(labels.value) == total:
        return None, packed
    return zip(list(labels.name), list(labels.value), strict=True), packed


def _columns(
    series: Any, result: ParseResult, packed: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray] | None:
    ts_le = series.timestamps_ms_le
    vs_le = series.values_le
    if ts_le or vs_le:
        if len(ts_le) % 8 or len(vs_le) % 8 or len(ts_le) != len(vs_le):
            result.rejections.append(_bad_le_columns(ts_le, vs_le))
            return None
        return np.frombuffer(ts_le, dtype=_I64_LE), np.frombuffer(vs_le, dtype=_F64_LE)
    n_ts = len(series.timestamps_ms)
    n_vs = len(series.values)
    if n_ts != n_vs:
        result.rejections.append(
            Rejection("bad_columns", f"{n_ts} timestamps_ms but {n_vs} values", max(n_ts, n_vs))
        )
        return None
    if n_ts == 0:
        return None
    if packed is not None:
        return packed
    return np.array(series.timestamps_ms, dtype=np.int64), np.array(series.values, dtype=np.float64)


# Alternative declarations of the native wire format (same bytes, no .proto needed).
# ``WriteRequest`` with label strings as bytes (salvages series around invalid UTF-8);
# ``WriteRequestColumns``, Series merged (a singular field) so its labels concatenate (see
# :func:`_merged_columns`); ``WriteRequestLe`` and ``SeriesLe`` for the byte-column fast path, labels
# left as raw bytes (the key of ``label_sets.LABELS``), the packed samples declared only so that their
# presence shows (see :func:`_parse_le_columns`, :func:`_parse_uniform`); ``WriteRequestRaw``, each
# Series as its raw bytes and the tenant (both).
_SERIES_SAMPLES = ("repeated int64 timestamps_ms = 2; repeated double values = 3; bytes timestamps_ms_le = 4;"
                   " bytes values_le = 5; int32 kind = 6")
_LenientWriteRequest, _MergedColumnsRequest, _SeriesRequest, _SeriesLe, _RawRequest = views(
    "metricsflow.ingest.lenient", {
        "Label": "bytes name = 1; bytes value = 2",
        "Series": "repeated Label labels = 1; " + _SERIES_SAMPLES,
        "WriteRequest": "repeated Series series = 1; bytes tenant = 2",
        "LabelColumns": "repeated string name = 1; repeated string value = 2",
        "SeriesColumns": "LabelColumns labels = 1; repeated int64 timestamps_ms = 2; repeated double values = 3",
        "WriteRequestColumns": "SeriesColumns series = 1",
        "SeriesLe": "repeated bytes labels = 1; " + _SERIES_SAMPLES,
        "WriteRequestLe": "repeated SeriesLe series = 1; bytes tenant = 2",
        "WriteRequestRaw": "repeated bytes series = 1; bytes tenant = 2",
    }, "WriteRequest", "WriteRequestColumns", "WriteRequestLe", "SeriesLe", "WriteRequestRaw")


def encode_native(series: list[SeriesSamples], *, columns: bool = True) -> bytes:
    """Encode series as a native WriteRequest (byte columns by default, else packed fields)."""
    req = pb.WriteRequest()
    for s in series:
        out = req.series.add(kind=int(s.kind))
        out.labels.extend(pb.Label(name=k, value=v) for k, v in sorted(s.labels.items()))
        if columns:
            out.timestamps_ms_le = s.timestamps_ms.astype(_I64_LE).tobytes()
            out.values_le = s.values.astype(_F64_LE).tobytes()
        else:
            out.timestamps_ms.extend(s.timestamps_ms.tolist())
            out.values.extend(s.values.tolist())
    return req.SerializeToString()


def tenant_field(body: bytes) -> str | None:
    """The WriteRequest ``tenant`` field (for mf.ingest producers), read leniently.

    Invalid UTF-8 elsewhere in the message must not hide the tenant; an unreadable
    or non-UTF-8 tenant gives None and the caller refuses the message.
    """
    try:
        raw = _LenientWriteRequest.FromString(body).tenant
        return raw.decode("utf-8")
    except Exception:  # DecodeError or UnicodeDecodeError: the message has no usable tenant
        return None
