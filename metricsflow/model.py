"""The data model every ingest path produces and every store consumes.

A sample is (series, timestamp ms, float64 value). A series is a tenant plus a
label set that includes ``__name__``. Ingest parsers turn their wire format into
``SeriesSamples`` (per-series numpy columns, never per-point objects); the
collector validates, hashes and ships them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

METRIC_NAME_LABEL = "__name__"
DEFAULT_TENANT = "default"

# Prometheus' staleness marker: a NaN with this exact bit pattern.
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN = np.array([STALE_NAN_BITS], dtype=np.uint64).view(np.float64)[0]


class MetricKind(enum.IntEnum):
    """What a series measures; decides which rollups and functions make sense."""

    UNSPECIFIED = 0
    GAUGE = 1
    COUNTER = 2
    DISTRIBUTION = 3


@dataclass(slots=True)
class SeriesSamples:
    """Samples of one series as columns.

    ``timestamps_ms`` is int64 ms since the epoch, ``values`` float64; both have
    the same length. ``labels`` includes ``__name__``.
    """

    labels: dict[str, str]
    timestamps_ms: np.ndarray
    values: np.ndarray
    kind: MetricKind = MetricKind.UNSPECIFIED

    def __post_init__(self) -> None:
        self.timestamps_ms = np.asarray(self.timestamps_ms, dtype=np.int64)
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.timestamps_ms.shape != self.values.shape or self.values.ndim != 1:
            raise ValueError("timestamps and values must be 1-d columns of equal length")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @classmethod
    def of_columns(cls, labels: dict[str, str], timestamps_ms: np.ndarray, values: np.ndarray,
                   kind: MetricKind) -> SeriesSamples:
        """For parsers that already hold int64 and float64 1-d columns of equal length: no checks.

        The checks of ``__init__`` were a fifth of parsing a native request (500 series
        of 10 points: ~1 µs per series).
        """
        s = object.__new__(cls)
        s.labels, s.timestamps_ms, s.values, s.kind = labels, timestamps_ms, values, kind
        return s


@dataclass(slots=True)
class SampleColumns:
    """The samples of a request's series laid end to end: run ``i`` is ``lengths[i]`` points long.

    A parser that reads every series' columns from one buffer keeps them so; the
    collector then validates and groups the request without one array per series.
    """

    lengths: np.ndarray  # int64, points per series
    timestamps_ms: np.ndarray  # int64
    values: np.ndarray  # float64

    def runs(self, labels: Iterable[dict[str, str]], kinds: Iterable[MetricKind]) -> list[ColumnRun]:
        """One ``ColumnRun`` per run, with its series' labels and kind (one of each per run, in order)."""
        ends = np.cumsum(self.lengths)
        run = ColumnRun.of_run
        return [run(ls, self, start, end, kind) for ls, kind, start, end
                in zip(labels, kinds, (ends - self.lengths).tolist(), ends.tolist(), strict=True)]


class UniformRuns(Sequence["ColumnRun"]):
    """The series of a request whose runs all hold ``points`` points of one kind, as ``ColumnRun``s
    made only when read: the collector's pipeline reads just their labels (``labels``) and takes
    the columns whole, so the steady request makes no object per series (500 of them were ~5 %
    of a collector's CPU)."""

    __slots__ = ("_columns", "kind", "labels", "points")

    def __init__(self, labels: list[dict[str, str]], columns: SampleColumns, points: int, kind: MetricKind) -> None:
        self.labels, self._columns, self.points, self.kind = labels, columns, points, kind

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self.labels)))]
        if i < 0:
            i += len(self.labels)
        if not 0 <= i < len(self.labels):
            raise IndexError(i)
        return ColumnRun.of_run(self.labels[i], self._columns, i * self.points, (i + 1) * self.points, self.kind)

    def __iter__(self) -> Iterator[ColumnRun]:
        return iter(self._columns.runs(self.labels, [self.kind] * len(self.labels)))


class ColumnRun(SeriesSamples):
    """A ``SeriesSamples`` whose columns are a run of a request's ``SampleColumns``, sliced when read.

    Read-only columns: a parser hands out hundreds per request, and most are never
    read one by one (the collector takes the request's columns whole).
    """

    __slots__ = ("_columns", "_end", "_start")

    @classmethod
    def of_run(cls, labels: dict[str, str], columns: SampleColumns, start: int, end: int,
               kind: MetricKind) -> ColumnRun:
        s = object.__new__(cls)
        s.labels, s.kind, s._columns, s._start, s._end = labels, kind, columns, start, end
        return s

    @property  # type: ignore[override]
    def timestamps_ms(self) -> np.ndarray:
        return self._columns.timestamps_ms[self._start:self._end]

    @property  # type: ignore[override]
    def values(self) -> np.ndarray:
        return self._columns.values[self._start:self._end]

    def __len__(self) -> int:
        return self._end - self._start


@dataclass(slots=True, frozen=True)
class Rejection:
    """Why (part of) a request was refused; ``reason`` is also a counter label."""

    reason: str
    detail: str
    points: int = 1


@dataclass(slots=True)
class ParseResult:
    """What an ingest parser found: the series it could read and what it refused."""

    series: list[SeriesSamples] | UniformRuns = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    # True when every series' labels dict is one the parser hands out again for the same label set
    # (never changed downstream): the pipeline may then know a label set by the dict itself.
    shared_labels: bool = False
    # When set, every series is a ``ColumnRun`` of these columns, in order.
    columns: SampleColumns | None = None

    @property
    def rejected_points(self) -> int:
        return sum(r.points for r in self.rejections)


def is_stale_marker(values: np.ndarray) -> np.ndarray:
    """Mask of the values that are Prometheus staleness markers (bit-exact)."""
    return np.asarray(values, dtype=np.float64).view(np.uint64) == np.uint64(STALE_NAN_BITS)
