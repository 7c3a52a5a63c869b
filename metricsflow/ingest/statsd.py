"""StatsD / DogStatsD datagrams: ``name:value[:value...]|type[|@rate][|#tag:v,tag2][|T<unix s>]``.

Types: ``c`` counter, ``g`` gauge (a leading ``+``/``-`` makes it a delta),
``ms`` timer, ``h`` histogram, ``d`` distribution, ``s`` set (the value is a
member string, not a number). One datagram holds many metrics separated by
newlines; DogStatsD packs several values of one metric as ``name:1:2:3|ms``.

The parser does not aggregate: it returns a columnar :class:`StatsdBatch` that
the StatsD sidecar folds into its flush-interval state (sum for counters,
last/delta for gauges, sketches for timers, distinct members for sets).
Tags are kept raw as sorted ``(key, value)`` tuples; ``tag`` without a colon
has the value ``""``. Names are not sanitised here (the sidecar does it when it
builds series). DogStatsD events (``_e{``) and service checks (``_sc|``) are
refused as ``unsupported_type``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from metricsflow.ingest._rejections import RejectionLog
from metricsflow.model import Rejection

# Type codes in StatsdBatch.types (uint8), one per StatsD type letter(s).
COUNTER, GAUGE, TIMER, HISTOGRAM, DISTRIBUTION, SET = range(6)
_TYPES = {"c": COUNTER, "g": GAUGE, "ms": TIMER, "h": HISTOGRAM, "d": DISTRIBUTION, "s": SET}

Tags = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class StatsdBatch:
    """Parsed events as parallel columns (index i is one event).

    ``values`` is NaN for set events; their member is in ``set_members[i]``.
    ``timestamps_ms`` is 0 when the datagram had no ``|T`` timestamp.
    """

    names: list[str] = field(default_factory=list)
    types: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    sample_rates: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    gauge_deltas: np.ndarray = field(default_factory=lambda: np.zeros(0, np.bool_))
    timestamps_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tags: list[Tags] = field(default_factory=list)
    set_members: dict[int, str] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)


class _BadLine(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse_statsd(datagram: bytes) -> StatsdBatch:
    """Parse one datagram (or a newline-joined batch of them); bad lines are counted."""
    names: list[str] = []
    types: list[int] = []
    values: list[float] = []
    rates: list[float] = []
    deltas: list[bool] = []
    stamps: list[int] = []
    tags_col: list[Tags] = []
    members: dict[int, str] = {}
    tag_cache: dict[str, Tags] = {}  # one tuple per distinct raw tag string
    problems = RejectionLog()

    for raw in datagram.split(b"\n"):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            problems.add("invalid_utf8", "a line is not valid UTF-8")
            continue
        if not line:
            continue
        try:
            name, metric_values, mtype, rate, tags, stamp_ms = _parse_line(line, tag_cache)
        except _BadLine as exc:
            problems.add(exc.reason, f"{line[:60]!r}: {exc}")
            continue
        for text in metric_values:
            if mtype == SET:
                members[len(names)] = text
                value, delta = math.nan, False
            else:
                value, delta = _number(text, mtype)
            names.append(name)
            types.append(mtype)
            values.append(value)
            rates.append(rate)
            deltas.append(delta)
            stamps.append(stamp_ms)
            tags_col.append(tags)
    batch = StatsdBatch(
        names=names,
        types=np.array(types, dtype=np.uint8),
        values=np.array(values, dtype=np.float64),
        sample_rates=np.array(rates, dtype=np.float64),
        gauge_deltas=np.array(deltas, dtype=np.bool_),
        timestamps_ms=np.array(stamps, dtype=np.int64),
        tags=tags_col,
        set_members=members,
    )
    batch.rejections = problems.to_list()
    return batch


def _parse_line(line: str, tag_cache: dict[str, Tags]) -> tuple[str, list[str], int, float, Tags, int]:
    if line.startswith(("_e{", "_sc|")):
        raise _BadLine("unsupported_type", "DogStatsD events and service checks are not metrics")
    head, sep, rest = line.partition("|")
    if not sep:
        raise _BadLine("bad_line", "want name:value|type")
    name, colon, value_text = head.partition(":")
    if not colon or not name or not value_text:
        raise _BadLine("bad_line", "want name:value|type")
    sections = rest.split("|")
    mtype = _TYPES.get(sections[0])
    if mtype is None:
        raise _BadLine("unsupported_type", f"type {sections[0][:10]!r}; want c, g, ms, h, d or s")
    rate = 1.0
    tags: Tags = ()
    stamp_ms = 0
    for section in sections[1:]:
        if not section:
            continue
        lead = section[0]
        if lead == "@":
            try:
                rate = float(section[1:])
            except ValueError:
                raise _BadLine("bad_sample_rate", f"sample rate {section[:20]!r}") from None
            if not 0.0 < rate <= 1.0:
                raise _BadLine("bad_sample_rate", f"sample rate {rate} not in (0, 1]")
        elif lead == "#":
            raw_tags = section[1:]
            cached = tag_cache.get(raw_tags)
            if cached is None:
                cached = tag_cache[raw_tags] = _parse_tags(raw_tags)
            tags = cached
        elif lead == "T":
            try:
                stamp_ms = int(section[1:]) * 1000
                if not 0 <= stamp_ms < 2**63:
                    raise ValueError
            except ValueError:
                raise _BadLine("bad_timestamp", f"timestamp {section[:20]!r}") from None
        # Other DogStatsD extensions (c: container id, e: external data) carry no metric data.
    # Sets take one member (which may contain ':'); other types may pack several values.
    metric_values = [value_text] if mtype == SET else value_text.split(":")
    if mtype != SET:
        for text in metric_values:
            _number(text, mtype)  # validate all before emitting any
    return name, metric_values, mtype, rate, tags, stamp_ms


def _number(text: str, mtype: int) -> tuple[float, bool]:
    try:
        if "_" in text:
            raise ValueError
        value = float(text)
    except ValueError:
        raise _BadLine("bad_value", f"value {text[:20]!r} is not a number") from None
    if not math.isfinite(value):
        raise _BadLine("bad_value", f"value {text[:20]!r} is not finite")
    # Only gauges have deltas: "+3"/"-3" adjust the current value (etsy/statsd semantics).
    return value, mtype == GAUGE and text[0] in "+-"


def _parse_tags(raw: str) -> Tags:
    pairs = []
    for tag in raw.split(","):
        if tag:
            key, _, value = tag.partition(":")
            pairs.append((key, value))
    return tuple(sorted(pairs))
