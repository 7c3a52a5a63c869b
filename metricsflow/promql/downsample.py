"""Reading PromQL from the rollup tiers: which aggregate stands in for raw samples.

A query over a long or old range reads one synthetic sample per rollup window
instead of every raw sample. Which aggregate becomes that sample depends on the
function consuming the selector (the rule Thanos uses for its downsampled
blocks): ``rate``/``increase``/``irate`` read a counter rebuilt from the
counter-aware increases, ``max_over_time`` the max, ``min_over_time`` the min,
``sum_over_time`` the sum, ``count_over_time`` the count (so it returns windows
× samples per window only via ``sum_over_time(count)``; see docs/promql.md),
``last_over_time`` and the derivative family the last value, everything else
the average. Each synthetic sample is stamped at the end of its window.
"""

from __future__ import annotations

import numpy as np
import promql_parser as pp

from metricsflow import rollup

from .astutil import parse, selector_matchers
from .source import Matcher

COUNTER_FUNCS = {"rate", "increase", "irate", "resets"}
_BY_FUNC = {"max_over_time": "max", "min_over_time": "min", "sum_over_time": "sum", "count_over_time": "count",
            "last_over_time": "last", "delta": "last", "idelta": "last", "deriv": "last", "changes": "last",
            "predict_linear": "last", "timestamp": "last", **{f: "counter" for f in COUNTER_FUNCS}}
DEFAULT_AGG = "avg"

SelectorKey = tuple[Matcher, ...]


def selector_key(matchers: list[Matcher]) -> SelectorKey:
    return tuple(sorted(matchers, key=lambda m: (m.name, m.op, m.value)))


def selector_aggregates(query: str) -> dict[SelectorKey, str]:
    """The aggregate each selector of ``query`` should read from a rollup tier."""
    out: dict[SelectorKey, str] = {}
    _walk(parse(query), DEFAULT_AGG, out)
    return out


def _walk(e: pp.Expr, agg: str, out: dict[SelectorKey, str]) -> None:
    if isinstance(e, pp.VectorSelector):
        out.setdefault(selector_key(selector_matchers(e)), agg)
    elif isinstance(e, pp.MatrixSelector):
        out.setdefault(selector_key(selector_matchers(e.vector_selector)), agg)
    elif isinstance(e, pp.Call):
        inner = _BY_FUNC.get(e.func.name, DEFAULT_AGG)
        for arg in e.args:
            _walk(arg, inner, out)
    elif isinstance(e, pp.ParenExpr | pp.UnaryExpr | pp.SubqueryExpr):
        _walk(e.expr, agg, out)
    elif isinstance(e, pp.BinaryExpr):
        _walk(e.lhs, agg, out)
        _walk(e.rhs, agg, out)
    elif isinstance(e, pp.AggregateExpr):
        if e.param is not None:
            _walk(e.param, agg, out)
        _walk(e.expr, agg, out)


def synthesize(r: rollup.Rollup, agg: str) -> tuple[np.ndarray, np.ndarray]:
    """One sample per window: (window end - 1 ms, the aggregate)."""
    ts = r.starts + (r.window_ms - 1)
    if len(r) == 0:
        return ts, np.empty(0)
    if agg == "counter":
        return ts, r.first[0] + np.cumsum(rollup.counter_increase(r))
    if agg == "avg":
        return ts, r.sum / r.count
    return ts, r.column(agg).astype(np.float64)
