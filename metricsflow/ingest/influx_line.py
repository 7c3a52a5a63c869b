"""InfluxDB line protocol (v1 ``/write`` and v2 ``/api/v2/write``).

``<measurement>[,<tag>=<v>...] <field>=<v>[,<field>=<v>...] [<timestamp>]``

Mapping (same as VictoriaMetrics' default, so series match a VM peer):
* each numeric field becomes one series named ``<measurement>_<field>``;
  with ``value_field_is_name=True`` a field called ``value`` maps to just
  ``<measurement>`` (Telegraf's prometheus_client convention) instead;
* tags become labels; names are sanitised with :mod:`metricsflow.ingest.names`;
  an empty tag value is dropped (Prometheus: empty label == absent);
* float, ``i`` integer and ``u`` unsigned fields are stored as float64; booleans
  (t/T/true/True/TRUE, f/F/false/False/FALSE) as 1/0; string fields are refused
  (``unsupported_field_type``) while the line's other fields are kept;
* a missing timestamp is ``now_ms``; ``precision`` scales the timestamp.

Escapes (InfluxDB docs): measurement ``\\,`` ``\\ ``; tag keys, tag values and
field keys ``\\,`` ``\\=`` ``\\ ``; string field values ``\\"`` ``\\\\``. A
backslash before any other character is literal. Lines whose first non-blank
character is ``#`` are comments. String values cannot span lines.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from metricsflow.errors import InvalidInput
from metricsflow.ingest._rejections import RejectionLog
from metricsflow.ingest.names import sanitize_label_name, sanitize_metric_name
from metricsflow.model import METRIC_NAME_LABEL, ParseResult, SeriesSamples

# Multiplier/divisor to ms for every precision spelling InfluxDB v1 and v2 accept.
_PRECISION_TO_MS: dict[str, tuple[int, int]] = {
    "ns": (1, 1_000_000), "n": (1, 1_000_000),
    "us": (1, 1_000), "u": (1, 1_000), "µs": (1, 1_000),
    "ms": (1, 1),
    "s": (1_000, 1),
    "m": (60_000, 1),
    "h": (3_600_000, 1),
}  # fmt: skip
_MIN_I64, _MAX_I64 = -(2**63), 2**63
_TRUE = frozenset(("t", "T", "true", "True", "TRUE"))
_FALSE = frozenset(("f", "F", "false", "False", "FALSE"))


class _Series:
    __slots__ = ("labels", "timestamps_ms", "values")

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.timestamps_ms: list[int] = []
        self.values: list[float] = []


class _LineError(Exception):
    """One line is unreadable; becomes a ``bad_line`` (or given reason) rejection."""

    def __init__(self, detail: str, reason: str = "bad_line") -> None:
        super().__init__(detail)
        self.reason = reason


def parse_influx_line(
    body: bytes,
    *,
    now_ms: int,
    precision: str = "ns",
    value_field_is_name: bool = False,
) -> ParseResult:
    """Parse a line-protocol body. Bad lines are refused one by one, never the body."""
    try:
        mult, div = _PRECISION_TO_MS[precision]
    except KeyError:
        raise InvalidInput("bad_precision", f"precision {precision!r}; want ns, us, ms, s, m, h") from None
    try:
        lines = body.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        lines = None
    parser = _Parser(now_ms, mult, div, value_field_is_name)
    if lines is not None:
        for lineno, line in enumerate(lines, 1):
            parser.line(line, lineno)
    else:
        # Only the lines with invalid UTF-8 are lost.
        for lineno, raw in enumerate(body.split(b"\n"), 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                parser.reject("invalid_utf8", f"line {lineno}: not valid UTF-8")
                continue
            parser.line(line, lineno)
    return parser.result()


class _Parser:
    def __init__(self, now_ms: int, mult: int, div: int, value_field_is_name: bool) -> None:
        self.now_ms = now_ms
        self.mult = mult
        self.div = div
        self.value_field_is_name = value_field_is_name
        self.series: dict[Any, _Series] = {}  # (raw key, raw field name) -> series
        self.by_labels: dict[tuple[tuple[str, str], ...], _Series] = {}
        # raw key section -> (measurement, labels) so repeated series skip tag parsing.
        self.keys: dict[str, tuple[str, dict[str, str]] | _LineError] = {}
        self.rejections = RejectionLog()

    def reject(self, reason: str, detail: str, points: int = 1) -> None:
        self.rejections.add(reason, detail, points)

    def result(self) -> ParseResult:
        out = ParseResult()
        for s in self.by_labels.values():
            out.series.append(
                SeriesSamples(s.labels, np.array(s.timestamps_ms, np.int64), np.array(s.values))
            )
        out.rejections = self.rejections.to_list()
        return out

    def line(self, line: str, lineno: int) -> None:
        line = line.strip(" \t\r")
        if not line or line[0] == "#":
            return
        try:
            if "\\" in line or '"' in line:
                key, fields, stamp = _split_line_slow(line)
            else:
                parts = line.split(" ")
                if len(parts) == 2:
                    key, fields, stamp = parts[0], parts[1].split(","), ""
                elif len(parts) == 3:
                    key, fields, stamp = parts[0], parts[1].split(","), parts[2]
                else:
                    raise _LineError("want '<measurement>[,tags] <fields> [timestamp]'")
            parsed = self.keys.get(key)
            if parsed is None:
                try:
                    parsed = _parse_key(key)
                except _LineError as exc:
                    parsed = exc
                self.keys[key] = parsed
            if isinstance(parsed, _LineError):
                raise parsed
            timestamp_ms = self._timestamp(stamp)
            self._fields(key, parsed, fields, timestamp_ms, lineno)
        except _LineError as exc:
            self.reject(exc.reason, f"line {lineno}: {exc}")

    def _timestamp(self, stamp: str) -> int:
        if not stamp:
            return self.now_ms
        try:
            if "_" in stamp:
                raise ValueError
            t = int(stamp)
        except ValueError:
            raise _LineError(f"bad timestamp {stamp[:40]!r}") from None
        t_ms = t * self.mult // self.div
        if not _MIN_I64 <= t < _MAX_I64 or not _MIN_I64 <= t_ms < _MAX_I64:
            raise _LineError(f"timestamp {stamp[:40]!r} out of int64 range")
        return t_ms

    def _fields(
        self, key: str, parsed: tuple[str, dict[str, str]], fields: list[str], timestamp_ms: int, lineno: int
    ) -> None:
        measurement, labels = parsed
        decoded: list[tuple[str, float]] = []
        strings: list[str] = []
        for field in fields:
            name, sep, text = _partition_unescaped(field) if "\\" in field else field.partition("=")
            if not sep or not name or not text:
                raise _LineError(f"bad field {field[:40]!r}")
            value = _field_value(text)
            if value is None:
                strings.append(name)
            else:
                decoded.append((name, value))
        # Reported only once the whole line parsed: a bad line is one bad_line, not also a string field.
        for name in strings:
            self.reject("unsupported_field_type", f"line {lineno}: string field {_unescape_key(name)!r}")
        for name, value in decoded:
            series = self.series.get((key, name))
            if series is None:
                field_name = _unescape_key(name)
                if self.value_field_is_name and field_name == "value":
                    metric = sanitize_metric_name(measurement)
                else:
                    metric = sanitize_metric_name(f"{measurement}_{field_name}")
                series_labels = {**labels, METRIC_NAME_LABEL: metric}
                # Different spellings (tag order, escapes) can sanitise to one label set: merge them.
                canonical = tuple(sorted(series_labels.items()))
                series = self.by_labels.get(canonical)
                if series is None:
                    series = self.by_labels[canonical] = _Series(series_labels)
                self.series[(key, name)] = series
            series.timestamps_ms.append(timestamp_ms)
            series.values.append(value)


def _field_value(text: str) -> float | None:
    """Decode one field value; None for a string field. Raises _LineError."""
    last = text[-1]
    try:
        if last == "i":
            if "_" in text:
                raise ValueError
            return float(int(text[:-1]))
        if last == "u":
            if "_" in text or text[0] == "-":
                raise ValueError
            return float(int(text[:-1]))
        if text[0] == '"':
            if len(text) < 2 or last != '"':
                raise _LineError(f"unterminated string {text[:40]!r}")
            return None
        if text in _TRUE:
            return 1.0
        if text in _FALSE:
            return 0.0
        if "_" in text:
            raise ValueError
        value = float(text)
    except ValueError:
        raise _LineError(f"bad field value {text[:40]!r}") from None
    if not math.isfinite(value):
        # Influx floats are finite (no NaN/Inf syntax); "nan", "inf", 1e999 are errors there too.
        raise _LineError(f"bad field value {text[:40]!r}")
    return value


def _parse_key(key: str) -> tuple[str, dict[str, str]]:
    if "\\" in key:
        parts = _split_unescaped(key, ",")
        measurement = _unescape_measurement(parts[0])
    else:
        parts = key.split(",")
        measurement = parts[0]
    if not measurement:
        raise _LineError("empty measurement")
    labels: dict[str, str] = {}
    for tag in parts[1:]:
        pieces = _split_unescaped(tag, "=") if "\\" in tag else tag.split("=")
        if len(pieces) != 2 or not pieces[0]:
            raise _LineError(f"bad tag {tag[:40]!r}")
        name = sanitize_label_name(_unescape_key(pieces[0]))
        if name in labels:
            raise _LineError(f"tag {name!r} given twice (after sanitising)", "duplicate_label_name")
        if pieces[1]:
            labels[name] = _unescape_key(pieces[1])
    return measurement, labels


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` not preceded by a backslash (escapes kept for later)."""
    parts: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _partition_unescaped(text: str) -> tuple[str, str, str]:
    """``str.partition("=")`` that skips escaped ``\\=`` (field keys)."""
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
        elif c == "=":
            return text[:i], "=", text[i + 1 :]
        else:
            i += 1
    return text, "", ""


def _split_line_slow(line: str) -> tuple[str, list[str], str]:
    """Split a line that has escapes or quotes into key, raw fields, timestamp."""
    n = len(line)
    i = 0
    while i < n and line[i] != " ":  # key: escapes only, quotes are literal
        i += 2 if line[i] == "\\" else 1
    key = line[: min(i, n)]
    if i >= n:
        raise _LineError("no fields")
    i += 1
    fields: list[str] = []
    start = i
    in_string = False
    while i < n:
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            in_string = not in_string
        elif not in_string and c == ",":
            fields.append(line[start:i])
            start = i + 1
        elif not in_string and c == " ":
            break
        i += 1
    if in_string:
        raise _LineError("unterminated string field")
    fields.append(line[start:i])
    stamp = line[i + 1 :] if i < n else ""
    if " " in stamp:
        raise _LineError("unexpected text after timestamp")
    return key, fields, stamp


def _unescape_measurement(text: str) -> str:
    return text.replace("\\,", ",").replace("\\ ", " ") if "\\" in text else text


def _unescape_key(text: str) -> str:
    if "\\" not in text:
        return text
    return text.replace("\\,", ",").replace("\\=", "=").replace("\\ ", " ")
