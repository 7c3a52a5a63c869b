"""Which data a query will read: every selector with its time window (for scatter-gather).

Walks the AST with the same timing rules as the evaluator: lookback for instant
selectors, left-open ranges for matrix selectors, offsets, ``@`` (absolute or
start()/end()), and subqueries, whose inner grid is derived exactly as the
evaluator derives it. Windows are inclusive and may be slightly wider than
needed, never narrower.
"""

from __future__ import annotations

import functools

import promql_parser as pp

from .astutil import at_of, duration_ms, parse, selector_matchers
from .source import Matcher

Window = tuple[list[Matcher], int, int]


def plan_selections(
    query: str,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    lookback_ms: int = 300_000,
    subquery_step_ms: int = 60_000,
) -> list[Window]:
    expr = parse(query)
    out: list[Window] = []
    # The last evaluation time, as the evaluator's grid has it: reading up to ``end_ms`` when it
    # is off the grid made every series' read one the engine had to clip again.
    last = start_ms + (end_ms - start_ms) // step_ms * step_ms if step_ms > 0 and end_ms > start_ms else end_ms
    _walk(expr, start_ms, last, start_ms, end_ms, lookback_ms, subquery_step_ms, out)
    return out


def _walk(
    e: pp.Expr, lo: int, hi: int, q_start: int, q_end: int, lookback: int, sub_step: int, out: list[Window]
) -> None:
    """``lo``/``hi`` are the first and last evaluation times of this node."""
    if isinstance(e, pp.ParenExpr | pp.UnaryExpr):
        _walk(e.expr, lo, hi, q_start, q_end, lookback, sub_step, out)
    elif isinstance(e, pp.VectorSelector):
        off = duration_ms(e, "offset")
        at = at_of(e)
        a, b = (at.resolve(q_start, q_end),) * 2 if at else (lo, hi)
        out.append((selector_matchers(e), a - off - lookback + 1, b - off))
    elif isinstance(e, pp.MatrixSelector):
        vs = e.vector_selector
        off, rng = duration_ms(vs, "offset"), duration_ms(e, "range")
        at = at_of(vs)
        a, b = (at.resolve(q_start, q_end),) * 2 if at else (lo, hi)
        out.append((selector_matchers(vs), a - off - rng + 1, b - off))
    elif isinstance(e, pp.SubqueryExpr):
        off, rng = duration_ms(e, "offset"), duration_ms(e, "range")
        step = duration_ms(e, "step") or sub_step
        at = at_of(e)
        a, b = (at.resolve(q_start, q_end),) * 2 if at else (lo, hi)
        first = (a - off - rng) // step * step + step
        last = b - off
        if last >= first:
            last = first + (last - first) // step * step
            _walk(e.expr, first, last, q_start, q_end, lookback, sub_step, out)
    elif isinstance(e, pp.BinaryExpr):
        _walk(e.lhs, lo, hi, q_start, q_end, lookback, sub_step, out)
        _walk(e.rhs, lo, hi, q_start, q_end, lookback, sub_step, out)
    elif isinstance(e, pp.AggregateExpr):
        if e.param is not None:
            _walk(e.param, lo, hi, q_start, q_end, lookback, sub_step, out)
        _walk(e.expr, lo, hi, q_start, q_end, lookback, sub_step, out)
    elif isinstance(e, pp.Call):
        for arg in e.args:
            _walk(arg, lo, hi, q_start, q_end, lookback, sub_step, out)


@functools.lru_cache(maxsize=1024)
def has_subquery(query: str) -> bool:
    """Whether ``query`` holds a subquery, whose inner steps its selections do not show."""
    return _has_subquery(parse(query))


def _has_subquery(e: pp.Expr) -> bool:
    if isinstance(e, pp.SubqueryExpr):
        return True
    if isinstance(e, pp.ParenExpr | pp.UnaryExpr):
        return _has_subquery(e.expr)
    if isinstance(e, pp.BinaryExpr):
        return _has_subquery(e.lhs) or _has_subquery(e.rhs)
    if isinstance(e, pp.AggregateExpr):
        return (e.param is not None and _has_subquery(e.param)) or _has_subquery(e.expr)
    if isinstance(e, pp.Call):
        return any(_has_subquery(arg) for arg in e.args)
    return False
