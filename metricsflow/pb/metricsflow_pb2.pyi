from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MetricKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_KIND_UNSPECIFIED: _ClassVar[MetricKind]
    METRIC_KIND_GAUGE: _ClassVar[MetricKind]
    METRIC_KIND_COUNTER: _ClassVar[MetricKind]
    METRIC_KIND_DISTRIBUTION: _ClassVar[MetricKind]
METRIC_KIND_UNSPECIFIED: MetricKind
METRIC_KIND_GAUGE: MetricKind
METRIC_KIND_COUNTER: MetricKind
METRIC_KIND_DISTRIBUTION: MetricKind

class Label(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Series(_message.Message):
    __slots__ = ("labels", "timestamps_ms", "values", "timestamps_ms_le", "values_le", "kind")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_MS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_MS_LE_FIELD_NUMBER: _ClassVar[int]
    VALUES_LE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    timestamps_ms: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    timestamps_ms_le: bytes
    values_le: bytes
    kind: MetricKind
    def __init__(self, labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ..., timestamps_ms: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ..., timestamps_ms_le: _Optional[bytes] = ..., values_le: _Optional[bytes] = ..., kind: _Optional[_Union[MetricKind, str]] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("series", "tenant")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    series: _containers.RepeatedCompositeFieldContainer[Series]
    tenant: str
    def __init__(self, series: _Optional[_Iterable[_Union[Series, _Mapping]]] = ..., tenant: _Optional[str] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("reason", "detail", "points")
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    reason: str
    detail: str
    points: int
    def __init__(self, reason: _Optional[str] = ..., detail: _Optional[str] = ..., points: _Optional[int] = ...) -> None: ...

class WriteResponse(_message.Message):
    __slots__ = ("accepted", "rejected", "rejections")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    rejected: int
    rejections: _containers.RepeatedCompositeFieldContainer[Rejection]
    def __init__(self, accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[Rejection, _Mapping]]] = ...) -> None: ...

class PointBatch(_message.Message):
    __slots__ = ("format_version", "series_ids", "run_lengths", "timestamps_ms", "values", "produced_at_ms", "value_mantissas", "value_width", "value_decimals", "exception_positions", "exception_values")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERIES_IDS_FIELD_NUMBER: _ClassVar[int]
    RUN_LENGTHS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_MS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    PRODUCED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    VALUE_MANTISSAS_FIELD_NUMBER: _ClassVar[int]
    VALUE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    VALUE_DECIMALS_FIELD_NUMBER: _ClassVar[int]
    EXCEPTION_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    EXCEPTION_VALUES_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    series_ids: bytes
    run_lengths: bytes
    timestamps_ms: bytes
    values: bytes
    produced_at_ms: int
    value_mantissas: bytes
    value_width: int
    value_decimals: int
    exception_positions: bytes
    exception_values: bytes
    def __init__(self, format_version: _Optional[int] = ..., series_ids: _Optional[bytes] = ..., run_lengths: _Optional[bytes] = ..., timestamps_ms: _Optional[bytes] = ..., values: _Optional[bytes] = ..., produced_at_ms: _Optional[int] = ..., value_mantissas: _Optional[bytes] = ..., value_width: _Optional[int] = ..., value_decimals: _Optional[int] = ..., exception_positions: _Optional[bytes] = ..., exception_values: _Optional[bytes] = ...) -> None: ...

class SeriesInfo(_message.Message):
    __slots__ = ("tenant", "labels", "kind", "first_seen_ms")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    kind: MetricKind
    first_seen_ms: int
    def __init__(self, tenant: _Optional[str] = ..., labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ..., kind: _Optional[_Union[MetricKind, str]] = ..., first_seen_ms: _Optional[int] = ...) -> None: ...

class SeriesBatch(_message.Message):
    __slots__ = ("format_version", "series_ids", "series")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERIES_IDS_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    series_ids: bytes
    series: _containers.RepeatedCompositeFieldContainer[SeriesInfo]
    def __init__(self, format_version: _Optional[int] = ..., series_ids: _Optional[bytes] = ..., series: _Optional[_Iterable[_Union[SeriesInfo, _Mapping]]] = ...) -> None: ...
