"""Query results and their Prometheus HTTP API ``data`` encoding."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import orjson

from .format import format_timestamp, format_timestamps, format_value, format_values, timestamp_text

ResultType = Literal["matrix", "vector", "scalar", "string"]


class ResultSeries(NamedTuple):
    """One result series: unpacks as ``(labels, timestamps_ms, values)`` for alerting."""

    labels: dict[str, str]
    timestamps_ms: np.ndarray
    values: np.ndarray


@dataclass(slots=True)
class QueryResult:
    result_type: ResultType
    series: list[ResultSeries] = field(default_factory=list)
    # For scalar and string results: the evaluation time and the value.
    time_ms: int = 0
    scalar: float = float("nan")
    string: str = ""

    def to_json_data(self) -> dict[str, Any]:
        """The ``data`` object of Prometheus' /api/v1/query(_range) response."""
        if self.result_type == "scalar":
            return {
                "resultType": "scalar",
                "result": [format_timestamp(self.time_ms), format_value(self.scalar)],
            }
        if self.result_type == "string":
            return {"resultType": "string", "result": [format_timestamp(self.time_ms), self.string]}
        if self.result_type == "vector":
            return {
                "resultType": "vector",
                "result": [
                    {
                        "metric": dict(s.labels),
                        "value": [
                            format_timestamp(int(s.timestamps_ms[0])),
                            format_value(float(s.values[0])),
                        ],
                    }
                    for s in self.series
                ],
            }
        return {"resultType": "matrix", "result": _matrix_json(self.series)}

    def to_json_bytes(self) -> bytes:
        """``json.dumps(to_json_data())`` written directly, byte for byte as Prometheus writes it.

        About twice as fast for large range results: no intermediate lists, and
        timestamps keep Prometheus' three-digit millisecond form (``1.050``).
        """
        if self.result_type in ("scalar", "string"):
            value = format_value(self.scalar) if self.result_type == "scalar" else self.string
            body = f"[{timestamp_text(self.time_ms)},{json.dumps(value)}]"
            return f'{{"resultType":"{self.result_type}","result":{body}}}'.encode()
        parts: list[str] = []
        if self.result_type == "vector":
            for s in self.series:
                metric = json.dumps(s.labels, separators=(",", ":"), ensure_ascii=False)
                value = format_value(float(s.values[0]))
                parts.append(
                    f'{{"metric":{metric},"value":[{timestamp_text(int(s.timestamps_ms[0]))},"{value}"]}}'
                )
        elif self.series:
            with gc_paused():
                parts = _matrix_texts(self.series)
        return f'{{"resultType":"{self.result_type}","result":[{",".join(parts)}]}}'.encode()


def _matrix_texts(series: list[ResultSeries]) -> list[str]:
    """One JSON object per series, with no per-point Python string formatting.

    Range results share one step grid, so each distinct timestamp's text is made once
    as the separator ``"],[<ts>,"`` that precedes a value; a series' points are then
    one ``join`` over separators and values interleaved.
    """
    texts = format_values(np.concatenate([s.values for s in series]))
    grid, inverse = np.unique(np.concatenate([s.timestamps_ms for s in series]), return_inverse=True)
    seps = np.array([f'"],[{timestamp_text(t)},"' for t in grid.tolist()], dtype=object)
    woven: list[str] = [""] * (2 * len(texts))
    woven[0::2] = seps[inverse.ravel()].tolist()
    woven[1::2] = texts
    parts = []
    pos = 0
    for s in series:
        n = 2 * int(s.timestamps_ms.size)
        metric = orjson.dumps(s.labels).decode()
        # The first separator's leading '"],' belongs to no previous point.
        points = "".join(woven[pos : pos + n])[3:] + '"]' if n else ""
        parts.append(f'{{"metric":{metric},"values":[{points}]}}')
        pos += n
    return parts


@contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection while a query builds ~10^5 short-lived objects.

    Each allocation burst triggers collections that walk the whole heap, and a worker's
    heap is large (Faust, the label index): building a matrix answer went 36 -> 8 ms.
    Safe across threads: whoever disabled it enables it again.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _matrix_json(series: list[ResultSeries]) -> list[dict[str, Any]]:
    """Format all points in one batch: per-point Python work is the cost of a range result."""
    if not series:
        return []
    with gc_paused():
        return _matrix_json_batch(series)


def _matrix_json_batch(series: list[ResultSeries]) -> list[dict[str, Any]]:
    all_ts = np.concatenate([s.timestamps_ms for s in series])
    all_vals = np.concatenate([s.values for s in series])
    texts = format_values(all_vals)
    # Range results share one step grid: each distinct timestamp is formatted once.
    grid, inverse = np.unique(all_ts, return_inverse=True)
    grid_fmt = format_timestamps(grid)
    ts_objs = [grid_fmt[i] for i in inverse.ravel().tolist()]
    pairs = list(map(list, zip(ts_objs, texts, strict=True)))
    out = []
    pos = 0
    for s in series:
        n = int(s.timestamps_ms.size)
        out.append({"metric": dict(s.labels), "values": pairs[pos : pos + n]})
        pos += n
    return out
