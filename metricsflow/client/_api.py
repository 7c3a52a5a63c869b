"""The recording methods both clients offer (never I/O, never blocking)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from types import TracebackType

from metricsflow.client._core import RUNNING_COUNTER, Recorder, series_key
from metricsflow.model import MetricKind

_GAUGE = int(MetricKind.GAUGE)
_DISTRIBUTION = int(MetricKind.DISTRIBUTION)


class Timing:
    """Context manager from :meth:`Recording.timer` without ``seconds``: records the block's duration."""

    __slots__ = ("_api", "_name", "_start", "_tags", "seconds")

    def __init__(self, api: Recording | None, name: str, tags: dict[str, object]) -> None:
        self._api = api
        self._name = name
        self._tags = tags
        self._start = 0.0
        self.seconds: float | None = None

    def __enter__(self) -> Timing:
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.seconds = time.perf_counter() - self._start
        if self._api is not None:
            self._api._add(self._name, _DISTRIBUTION, self.seconds, None, self._tags)


class Recording:
    """Recording helpers; subclasses provide ``_recorder`` and ``_wake()``.

    Every method is an O(1) append under one lock (≈1–3 µs) and never raises for
    an unreachable collector. ``name`` and ``value`` are positional-only, so
    ``name=``/``value=`` may be used as tags.
    """

    _recorder: Recorder

    def _wake(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _add(self, name: str, kind: int, value: float, ts_ms: int | None,
             tags: Mapping[str, object] | None) -> None:
        try:
            value = float(value)
        except (TypeError, ValueError):
            self._recorder.count_drop("invalid_value")
            return
        if kind == RUNNING_COUNTER and not (value >= 0.0 and math.isfinite(value)):
            # A counter only goes up; a negative or NaN increment would look like a reset.
            self._recorder.count_drop("invalid_value")
            return
        if self._recorder.add(series_key(name, kind, tags), value, ts_ms):
            self._wake()

    def counter(self, name: str, value: float = 1.0, /, **tags: object) -> None:
        """Add ``value`` (≥ 0) to a counter; the point sent is the running total (COUNTER kind).

        Totals are per series and per client since its creation, Prometheus-style,
        so ``rate()``/``increase()`` work and a lost point loses no increments.
        """
        self._add(name, RUNNING_COUNTER, value, None, tags)

    def gauge(self, name: str, value: float, /, **tags: object) -> None:
        """Record the current value of a gauge (GAUGE kind)."""
        self._add(name, _GAUGE, value, None, tags)

    def distribution(self, name: str, value: float, /, **tags: object) -> None:
        """Record one raw observation (DISTRIBUTION kind); quantiles are computed server-side."""
        self._add(name, _DISTRIBUTION, value, None, tags)

    def timer(self, name: str, seconds: float | None = None, /, **tags: object) -> Timing:
        """Record a duration in seconds as a distribution observation.

        With ``seconds`` the observation is recorded now; without, use the result as a
        context manager that times its block (``with client.timer("db_query_seconds"):``).
        """
        if seconds is not None:
            self._add(name, _DISTRIBUTION, seconds, None, tags)
            return Timing(None, name, tags)
        return Timing(self, name, tags)

    def write(self, name: str, value: float, /, timestamp_ms: int | None = None,
              tags: Mapping[str, object] | None = None, kind: MetricKind = MetricKind.GAUGE) -> None:
        """Record one point as given: ``value`` is sent unchanged whatever the ``kind``
        (a COUNTER value must already be cumulative). ``timestamp_ms`` defaults to now."""
        self._add(name, int(kind), value, timestamp_ms, tags)
