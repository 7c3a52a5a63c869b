"""Parsing of HTTP query parameters the way Prometheus' API does."""

from __future__ import annotations

import functools
import math
import time
from datetime import datetime

import promql_parser

from metricsflow.errors import InvalidInput
from metricsflow.promql.source import Matcher

_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def parse_time_ms(raw: str | None, default_ms: int, param: str) -> int:
    """Unix seconds (float) or RFC3339, as Prometheus accepts."""
    if raw is None or raw == "":
        return default_ms
    try:
        seconds = float(raw)
    except ValueError:
        try:
            seconds = datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
        except ValueError:
            msg = f'invalid parameter "{param}": cannot parse "{raw}" to a valid timestamp'
            raise InvalidInput("bad_data", msg) from None
    if not math.isfinite(seconds):
        raise InvalidInput("bad_data", f'invalid parameter "{param}": cannot parse "{raw}" to a valid timestamp')
    return int(round(seconds * 1000))


def parse_duration_ms(raw: str, param: str) -> int:
    """A step: float seconds or a Prometheus duration (e.g. 15s, 1m30s)."""
    try:
        seconds = float(raw)
        if math.isfinite(seconds) and seconds > 0:
            return max(1, int(round(seconds * 1000)))
    except ValueError:
        pass
    total, num, units = 0, "", {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
                                "w": 604_800_000, "y": 31_536_000_000}
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch.isdigit():
            num += ch
            i += 1
            continue
        unit = raw[i:i + 2] if raw[i:i + 2] == "ms" else ch
        if not num or unit not in units:
            raise InvalidInput("bad_data", f'invalid parameter "{param}": cannot parse "{raw}" to a valid duration')
        total += int(num) * units[unit]
        num, i = "", i + len(unit)
    if num or total <= 0:
        raise InvalidInput("bad_data", f'invalid parameter "{param}": cannot parse "{raw}" to a valid duration')
    return total


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_selector(text: str) -> list[Matcher]:
    """Matchers of a plain series selector such as ``cpu{host=~"a.*"}``."""
    return list(_parsed_selector(text))


@functools.lru_cache(maxsize=1024)
def _parsed_selector(text: str) -> tuple[Matcher, ...]:
    # Dashboards send the same selectors every refresh; parsing one took ~5 % of a small /v1/query.
    try:
        expr = promql_parser.parse(text)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("bad_data", f"invalid selector {text!r}: {exc}") from None
    if type(expr).__name__ != "VectorSelector":
        raise InvalidInput("bad_data", f"{text!r} is not a series selector; use /api/v1/query for expressions")
    matchers = [Matcher(m.name, _OPS[str(m.op)], m.value) for m in expr.matchers.matchers]
    if expr.name and not any(m.name == "__name__" for m in matchers):
        matchers.append(Matcher("__name__", "=", expr.name))
    if all(m.matches("") for m in matchers):
        raise InvalidInput("bad_data", f"selector {text!r} must contain at least one matcher that does not match "
                           "the empty string")
    return tuple(matchers)
