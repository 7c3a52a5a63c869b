"""Adapt a PromQL engine's instant query to the evaluator's ``QueryFunc``.

Uses only the engine's public contract (``instant(expr, time_ms)`` returning a result
with ``result_type``, ``series`` of ``(labels, timestamps_ms, values)`` and ``scalar``),
so the alerting package does not import the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from metricsflow.errors import MetricsflowError

from .evaluator import QueryFunc

__all__ = ["InstantEngine", "RuleResultTypeError", "instant_query_func", "vector_of"]


class InstantEngine(Protocol):
    def instant(self, query: str, time_ms: int) -> Any: ...


class RuleResultTypeError(MetricsflowError, ValueError):
    """A rule expression evaluated to a range vector or a string."""


def vector_of(result: Any) -> list[tuple[dict[str, str], float]]:
    """An instant query result as the evaluator's vector."""
    kind = result.result_type
    if kind == "scalar":
        return [({}, float(result.scalar))]  # Prometheus' EngineQueryFunc: scalar -> one sample, no labels
    if kind != "vector":
        raise RuleResultTypeError("rule result is not a vector or scalar")
    series: Sequence[Any] = result.series
    return [(dict(s[0]), float(s[2][0])) for s in series]


def instant_query_func(engine: InstantEngine) -> QueryFunc:
    """``query(expr, time_ms)`` over ``engine.instant``; engine errors propagate to the rule's lastError."""

    def query(expr: str, time_ms: int) -> list[tuple[dict[str, str], float]]:
        return vector_of(engine.instant(expr, time_ms))

    return query
