"""PromQL engine: ``Engine(source).instant(q, t)`` / ``.range(q, start, end, step)``.

See docs/promql.md for what is supported and how it differs from Prometheus.
"""

from .engine import Engine
from .errors import PromQLError, PromQLExecutionError, PromQLParseError, PromQLTimeout, PromQLUnsupported
from .result import QueryResult, ResultSeries
from .source import Matcher, MemorySource, SelectionSource, SeriesData, SeriesSource, selections

__all__ = [
    "Engine",
    "Matcher",
    "MemorySource",
    "PromQLError",
    "PromQLExecutionError",
    "PromQLParseError",
    "PromQLTimeout",
    "PromQLUnsupported",
    "QueryResult",
    "ResultSeries",
    "SelectionSource",
    "SeriesData",
    "SeriesSource",
    "selections",
]
