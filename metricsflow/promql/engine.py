"""The PromQL engine: parse with ``promql_parser``, evaluate on numpy columns.

Every node is evaluated once for all steps of the query (an instant query is a
range query with one step). Semantics follow Prometheus 3.x: 5m lookback,
left-open range windows, staleness markers, ``extrapolatedRate``, ``__name__``
dropped by operations that change a metric's meaning (see docs/promql.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import promql_parser as pp

from metricsflow.model import is_stale_marker

from . import aggregate as agg
from . import binops, functions, rangefuncs
from . import labels as L
from .astutil import MAX_ABS_MS, at_of, duration_ms, parse, selector_matchers, unwrap_parens
from .errors import PromQLError, PromQLExecutionError, PromQLParseError, PromQLTimeout, PromQLUnsupported
from .labels import Labels
from .rangefuncs import Windows
from .result import QueryResult, ResultSeries
from .source import Matcher, SeriesSource
from .values import InstantVec, RangeVec, Scalar, String, Value, check_unique, merge_same_labels
from .windows import search

MAX_POINTS_PER_SERIES = 11_000  # Prometheus refuses range queries above this resolution
MAX_CELLS = 50_000_000  # series x steps held at once; mirrors Prometheus' max-samples default
MAX_SUBQUERY_STEPS = 1_000_000
_T = TypeVar("_T")

_CARD = {
    "VectorMatchCardinality.OneToOne": "one-to-one",
    "VectorMatchCardinality.ManyToOne": "many-to-one",
    "VectorMatchCardinality.OneToMany": "one-to-many",
    "VectorMatchCardinality.ManyToMany": "many-to-many",
}
DATE_FUNCS = frozenset({
    "minute",
    "hour",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "month",
    "year",
})
_RANGE_ARG_FUNCS = {
    *rangefuncs.SIMPLE,
    "quantile_over_time",
    "predict_linear",
    "double_exponential_smoothing",
    "absent_over_time",
}
_NATIVE_HISTOGRAM_FUNCS = {
    "histogram_count",
    "histogram_sum",
    "histogram_avg",
    "histogram_fraction",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_quantiles",
}


@dataclass(frozen=True, slots=True)
class Ctx:
    """Where and how a node is evaluated: the step grid plus query-wide settings."""

    times: np.ndarray  # (T,) int64 evaluation timestamps, ms
    q_start: int
    q_end: int
    q_step: int
    lookback_ms: int
    subquery_step_ms: int
    deadline: float | None

    @property
    def steps(self) -> int:
        return int(self.times.size)

    def check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise PromQLTimeout("query timed out in expression evaluation")


class Engine:
    """Evaluates PromQL against a ``SeriesSource``.

    ``lookback_ms`` is Prometheus' lookback delta; ``timeout_s`` bounds evaluation
    (checked between evaluation steps); ``subquery_step_ms`` is the step of
    subqueries written without one (Prometheus uses the global evaluation interval).
    """

    def __init__(
        self,
        source: SeriesSource,
        lookback_ms: int = 300_000,
        timeout_s: float | None = None,
        subquery_step_ms: int = 60_000,
    ) -> None:
        self.source = source
        self.lookback_ms = int(lookback_ms)
        self.timeout_s = timeout_s
        self.subquery_step_ms = int(subquery_step_ms)

    # -- public API -------------------------------------------------------------------------

    def instant(self, query: str, time_ms: int) -> QueryResult:
        time_ms = int(time_ms)
        check_query_times(time_ms, time_ms, 0)
        return self._guarded(lambda: self._result(parse(query), time_ms, time_ms, 0, None))

    def range(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> QueryResult:
        start_ms, end_ms, step_ms = int(start_ms), int(end_ms), int(step_ms)
        check_query_times(start_ms, end_ms, step_ms)
        return self._guarded(lambda: self._result(parse(query), start_ms, end_ms, step_ms, None))

    # -- hooks for split evaluation (metricsflow.promql.pushdown) --------------------------

    def evaluate_nodes(self, nodes: Sequence[pp.Expr], start_ms: int, end_ms: int, step_ms: int) -> list[Value]:
        """Values of sub-expressions on the query's step grid (``step_ms == 0``: instant)."""
        check_query_times(start_ms, end_ms, step_ms)

        def run() -> list[Value]:
            ctx = self._ctx(start_ms, end_ms, step_ms)
            ev = _Evaluator(self.source)
            return [ev.eval(n, ctx) for n in nodes]

        return self._guarded(run)

    def evaluate_bound(
        self, expr: pp.Expr, start_ms: int, end_ms: int, step_ms: int, bound: Mapping[str, InstantVec]
    ) -> QueryResult:
        """Evaluate ``expr`` where every sub-expression whose ``repr`` is a key of ``bound``
        (and is evaluated on the query's own grid, i.e. not inside a subquery) takes that value."""
        check_query_times(start_ms, end_ms, step_ms)
        return self._guarded(lambda: self._result(expr, start_ms, end_ms, step_ms, bound))

    # -- internals --------------------------------------------------------------------------

    def _ctx(self, start_ms: int, end_ms: int, step_ms: int) -> Ctx:
        times = (
            np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
            if step_ms
            else np.array([start_ms], dtype=np.int64)
        )
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        return Ctx(times, start_ms, end_ms, step_ms, self.lookback_ms, self.subquery_step_ms, deadline)

    def _result(
        self, expr: pp.Expr, start_ms: int, end_ms: int, step_ms: int, bound: Mapping[str, InstantVec] | None
    ) -> QueryResult:
        ctx = self._ctx(start_ms, end_ms, step_ms)
        ev = _Evaluator(self.source, bound, ctx.times)
        val = ev.eval(expr, ctx)
        return _to_result(val, ctx, is_range=step_ms != 0, ev=ev, expr=expr)

    def _guarded(self, run: Callable[[], _T]) -> _T:
        try:
            return run()
        except PromQLError:
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except MemoryError:
            raise PromQLExecutionError("query processing would load too many samples into memory") from None
        except BaseException as exc:
            raise PromQLExecutionError(
                f"internal error evaluating query: {type(exc).__name__}: {exc}"
            ) from exc


def _to_result(val: Value, ctx: Ctx, is_range: bool, ev: _Evaluator, expr: pp.Expr) -> QueryResult:
    if is_range:
        if isinstance(val, Scalar):
            return QueryResult("matrix", [ResultSeries({}, ctx.times.copy(), val.values.copy())])
        if not isinstance(val, InstantVec):
            kind = "string" if isinstance(val, String) else "range vector"
            raise PromQLParseError(
                f'invalid expression type "{kind}" for range query, must be Scalar or instant Vector'
            )
        series = []
        for i in sorted(range(len(val)), key=lambda i: val.labels[i]):
            p = val.present[i]
            if p.any():
                series.append(ResultSeries(L.to_dict(val.labels[i]), ctx.times[p], val.values[i][p]))
        return QueryResult("matrix", series)
    t = int(ctx.times[0])
    if isinstance(val, Scalar):
        return QueryResult("scalar", time_ms=t, scalar=float(val.values[0]))
    if isinstance(val, String):
        return QueryResult("string", time_ms=t, string=val.value)
    if isinstance(val, InstantVec):
        series = [
            ResultSeries(L.to_dict(val.labels[i]), ctx.times[:1].copy(), val.values[i, :1].copy())
            for i in range(len(val))
            if val.present[i, 0]
        ]
        return QueryResult("vector", series)
    # A range vector at the top of an instant query: raw samples of each window.
    w = ev.last_windows
    assert w is not None
    out = []
    for i in sorted(range(len(val)), key=lambda i: val.labels[i]):
        lo, hi = int(w.lo[i, 0]), int(w.hi[i, 0])
        if hi > lo:
            out.append(ResultSeries(L.to_dict(val.labels[i]), val.ts[lo:hi].copy(), val.vals[lo:hi].copy()))
    return QueryResult("matrix", out)


def _check_time(t_ms: int) -> None:
    if abs(t_ms) > MAX_ABS_MS:
        raise PromQLParseError(f"time {t_ms} ms is out of range")


def check_query_times(start_ms: int, end_ms: int, step_ms: int) -> None:
    """The API's checks of a query's times; ``step_ms == 0`` is an instant query at ``start_ms``."""
    _check_time(start_ms)
    if step_ms == 0 and start_ms == end_ms:
        return
    _check_time(end_ms)
    if step_ms <= 0:
        raise PromQLParseError(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
        )
    if end_ms < start_ms:
        raise PromQLParseError("end timestamp must not be before start time")
    if (end_ms - start_ms) // step_ms + 1 > MAX_POINTS_PER_SERIES:
        raise PromQLParseError(
            "exceeded maximum resolution of 11,000 points per timeseries. "
            "Try decreasing the query resolution (?step=XX)"
        )


def _check_cells(n: int, steps: int) -> None:
    if n * steps > MAX_CELLS:
        raise PromQLExecutionError(
            "query processing would load too many samples into memory in query execution"
        )


class _Evaluator:
    def __init__(
        self,
        source: SeriesSource,
        bound: Mapping[str, InstantVec] | None = None,
        bound_times: np.ndarray | None = None,
    ) -> None:
        self.source = source
        self.last_windows: Windows | None = None
        self.bound = bound or None
        self.bound_times = bound_times

    def _bound(self, e: pp.Expr, ctx: Ctx) -> InstantVec | None:
        """A precomputed value for ``e``, only on the grid it was computed for."""
        assert self.bound is not None
        hit = self.bound.get(repr(e))
        if hit is None or self.bound_times is None or not np.array_equal(ctx.times, self.bound_times):
            return None
        # Copies: operators above may update their inputs in place.
        return InstantVec(list(hit.labels), hit.values.copy(), hit.present.copy(), hit.ordered)

    # -- data access ------------------------------------------------------------------------

    def _fetch(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> RangeVec:
        columns = getattr(self.source, "select_range", None)  # a source that reads as flat columns
        if columns is not None:
            rv = columns(matchers, start_ms, end_ms)
            if rv is not None:
                return rv
        data = self.source.select(matchers, start_ms, end_ms)
        rows = []
        for s in data:
            ts = np.asarray(s.timestamps_ms, dtype=np.int64)
            vals = np.asarray(s.values, dtype=np.float64)
            # Sources promise the window; trim only if one returned more.
            if ts.size and (ts[0] < start_ms or ts[-1] > end_ms):
                keep = (ts >= start_ms) & (ts <= end_ms)
                ts, vals = ts[keep], vals[keep]
            rows.append((L.from_mapping(s.labels), ts, vals))
        rows.sort(key=lambda r: r[0])
        if len({r[0] for r in rows}) != len(rows):
            rows = _merge_duplicate_series(rows)
        labels = [r[0] for r in rows]
        lengths = np.array([r[1].size for r in rows], dtype=np.intp)
        offsets = np.zeros(len(rows) + 1, dtype=np.intp)
        np.cumsum(lengths, out=offsets[1:])
        ts_all = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, dtype=np.int64)
        vals_all = np.concatenate([r[2] for r in rows]) if rows else np.zeros(0)
        return RangeVec(labels, ts_all, vals_all, offsets)

    def _instant_selector(self, vs: pp.VectorSelector, ctx: Ctx) -> tuple[InstantVec, np.ndarray]:
        matchers = selector_matchers(vs)
        off = duration_ms(vs, "offset")
        at = at_of(vs)
        base = np.full(ctx.steps, at.resolve(ctx.q_start, ctx.q_end), dtype=np.int64) if at else ctx.times
        ref = base - off
        rv = self._fetch(matchers, int(ref.min()) - ctx.lookback_ms + 1, int(ref.max()))
        n = len(rv)
        _check_cells(n, ctx.steps)
        if n == 0:
            return InstantVec.empty(ctx.steps), np.zeros((0, ctx.steps), dtype=np.int64)
        pos = search(rv.ts, rv.offsets, ref, "right", rv.common_grid()) - 1
        valid = pos >= rv.offsets[:-1, None]
        posc = np.where(valid, pos, 0)
        if rv.ts.size == 0:
            return InstantVec.empty(ctx.steps), np.zeros((0, ctx.steps), dtype=np.int64)
        st = rv.ts[posc]
        v = rv.vals[posc]
        valid &= st > (ref - ctx.lookback_ms)[None, :]
        valid &= ~is_stale_marker(v)
        keep = valid.any(axis=1)
        rows = np.flatnonzero(keep)
        vec = InstantVec([rv.labels[i] for i in rows], v[rows], valid[rows])
        return vec, st[rows]

    def _windows(self, node: pp.Expr, ctx: Ctx) -> Windows:
        node = unwrap_parens(node)
        if isinstance(node, pp.MatrixSelector):
            vs = node.vector_selector
            rng = duration_ms(node, "range")
            off = duration_ms(vs, "offset")
            at = at_of(vs)
            base = np.full(ctx.steps, at.resolve(ctx.q_start, ctx.q_end), dtype=np.int64) if at else ctx.times
            ends = base - off
            rv = self._fetch(selector_matchers(vs), int(ends.min()) - rng + 1, int(ends.max()))
            if rv.vals.size:
                stale = is_stale_marker(rv.vals)
                if stale.any():
                    rv = _filter_samples(rv, ~stale)
        elif isinstance(node, pp.SubqueryExpr):
            rng = duration_ms(node, "range")
            off = duration_ms(node, "offset")
            step = duration_ms(node, "step") or ctx.subquery_step_ms
            at = at_of(node)
            base = np.full(ctx.steps, at.resolve(ctx.q_start, ctx.q_end), dtype=np.int64) if at else ctx.times
            ends = base - off
            first = (int(base.min()) - off - rng) // step * step + step
            last = int(base.max()) - off
            nsteps = (last - first) // step + 1 if last >= first else 0
            if nsteps > MAX_SUBQUERY_STEPS:
                raise PromQLExecutionError(
                    f"subquery would evaluate {nsteps} steps, more than {MAX_SUBQUERY_STEPS}"
                )
            inner_times = first + step * np.arange(max(nsteps, 0), dtype=np.int64)
            if inner_times.size == 0:
                rv = RangeVec([], np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(1, dtype=np.intp))
            else:
                inner = self.eval(node.expr, replace(ctx, times=inner_times))
                if not isinstance(inner, InstantVec):
                    raise PromQLUnsupported("subquery over a non-vector expression")
                rv = _to_range(inner, inner_times)
        else:
            raise PromQLUnsupported(f"range vector argument of type {type(node).__name__}")
        ctx.check()
        _check_cells(len(rv), ctx.steps)
        lo = search(rv.ts, rv.offsets, ends - rng, "right", rv.common_grid())
        hi = search(rv.ts, rv.offsets, ends, "right", rv.common_grid())
        w = Windows(rv, lo, hi, ends, rng, ctx.times)
        self.last_windows = w
        return w

    # -- dispatch ---------------------------------------------------------------------------

    def eval(self, e: pp.Expr, ctx: Ctx) -> Value:
        ctx.check()
        if self.bound is not None and not isinstance(e, pp.ParenExpr):
            hit = self._bound(e, ctx)
            if hit is not None:
                return hit
        if isinstance(e, pp.ParenExpr):
            return self.eval(e.expr, ctx)
        if isinstance(e, pp.NumberLiteral):
            return Scalar(np.full(ctx.steps, float(e.val)))
        if isinstance(e, pp.StringLiteral):
            return String(e.val)
        if isinstance(e, pp.VectorSelector):
            return self._instant_selector(e, ctx)[0]
        if isinstance(e, pp.MatrixSelector | pp.SubqueryExpr):
            if ctx.steps != 1:
                raise PromQLParseError(
                    'invalid expression type "range vector" for range query, must be Scalar or instant Vector'
                )
            return self._windows(e, ctx).rv
        if isinstance(e, pp.UnaryExpr):
            return self._unary(self.eval(e.expr, ctx))
        if isinstance(e, pp.BinaryExpr):
            return self._binary(e, ctx)
        if isinstance(e, pp.AggregateExpr):
            return self._aggregate(e, ctx)
        if isinstance(e, pp.Call):
            return self._call(e, ctx)
        raise PromQLUnsupported(f"expression type {type(e).__name__}")

    def _scalar(self, e: pp.Expr, ctx: Ctx) -> np.ndarray:
        v = self.eval(e, ctx)
        if not isinstance(v, Scalar):
            raise PromQLExecutionError("expected a scalar argument")
        return v.values

    def _vector(self, e: pp.Expr, ctx: Ctx) -> InstantVec:
        v = self.eval(e, ctx)
        if not isinstance(v, InstantVec):
            raise PromQLExecutionError("expected an instant vector argument")
        return v

    def _unary(self, v: Value) -> Value:
        if isinstance(v, Scalar):
            return Scalar(-v.values)
        if isinstance(v, InstantVec):
            out = InstantVec([L.drop_name(lb) for lb in v.labels], -v.values, v.present.copy())
            return merge_same_labels(out)
        raise PromQLUnsupported("unary minus on a non-numeric value")

    def _binary(self, e: pp.BinaryExpr, ctx: Ctx) -> Value:
        op = str(e.op)
        mod = e.modifier
        return_bool = bool(mod.return_bool) if mod is not None else False
        if (
            mod is not None
            and mod.fill_values is not None
            and (mod.fill_values.lhs is not None or mod.fill_values.rhs is not None)
        ):
            raise PromQLUnsupported("fill() modifiers in binary operations")
        lhs = self.eval(e.lhs, ctx)
        rhs = self.eval(e.rhs, ctx)
        ctx.check()
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            return binops.scalar_scalar(op, lhs, rhs)
        if isinstance(lhs, InstantVec) and isinstance(rhs, Scalar):
            return binops.vector_scalar(op, lhs, rhs, False, return_bool)
        if isinstance(lhs, Scalar) and isinstance(rhs, InstantVec):
            return binops.vector_scalar(op, rhs, lhs, True, return_bool)
        if not (isinstance(lhs, InstantVec) and isinstance(rhs, InstantVec)):
            raise PromQLExecutionError("binary expression must contain only scalar and instant vector types")
        if mod is not None and mod.matching is not None:
            on = str(mod.matching.type).endswith("Include")
            names = list(mod.matching.labels)
        else:
            on, names = False, []
        card = _CARD.get(str(mod.card), "one-to-one") if mod is not None else "one-to-one"
        if op in binops.SET_OPS:
            return binops.set_op(op, lhs, rhs, binops.Matching("many-to-many", on, names, []))
        include = list(mod.group_labels or []) if mod is not None else []
        return binops.vector_vector(op, lhs, rhs, binops.Matching(card, on, names, include), return_bool)

    def _aggregate(self, e: pp.AggregateExpr, ctx: Ctx) -> Value:
        op = str(e.op)
        by: list[str] | None = None
        without: list[str] | None = None
        if e.modifier is not None:
            if str(e.modifier.type).endswith("Without"):
                without = list(e.modifier.labels)
            else:
                by = list(e.modifier.labels)
        if op == "count_values":
            param_node = unwrap_parens(e.param)
            label = param_node.val if isinstance(param_node, pp.StringLiteral) else None
            if label is None:
                raise PromQLExecutionError("count_values needs a string parameter")
            if not label:
                raise PromQLExecutionError(f'invalid label name "{label}"')
            return agg.count_values(self._vector(e.expr, ctx), label, by, without, ctx.steps)
        param = (
            self._scalar(e.param, ctx)
            if op in ("topk", "bottomk", "quantile", "limitk", "limit_ratio")
            else None
        )
        vec = self._vector(e.expr, ctx)
        ctx.check()
        if op in ("topk", "bottomk", "limitk"):
            assert param is not None
            return agg.select_k(op, vec, by, without, param, ctx.steps)
        if op == "limit_ratio":
            assert param is not None
            if np.isnan(param).any():
                raise PromQLExecutionError("Ratio value is NaN")
            raise PromQLUnsupported("aggregation limit_ratio")
        return agg.aggregate(op, vec, by, without, param, ctx.steps)

    def _call(self, e: pp.Call, ctx: Ctx) -> Value:
        name = e.func.name
        args = list(e.args)
        if name in _RANGE_ARG_FUNCS:
            return self._call_range(name, args, ctx)
        return self._call_instant(name, args, ctx)

    def _call_range(self, name: str, args: list[pp.Expr], ctx: Ctx) -> Value:
        """Functions taking a range vector (matrix selector or subquery)."""
        if name in rangefuncs.SIMPLE:
            w = self._windows(args[0], ctx)
            return _range_result(w, *rangefuncs.SIMPLE[name](w), keep_name=name in rangefuncs.KEEPS_NAME)
        if name == "quantile_over_time":
            q = self._scalar(args[0], ctx)
            w = self._windows(args[1], ctx)
            return _range_result(w, *rangefuncs.quantile_over_time(w, q))
        if name == "predict_linear":
            w = self._windows(args[0], ctx)
            dur = self._scalar(args[1], ctx)
            return _range_result(w, *rangefuncs.predict_linear(w, dur))
        if name == "double_exponential_smoothing":
            w = self._windows(args[0], ctx)
            sf, tf = self._scalar(args[1], ctx), self._scalar(args[2], ctx)
            return _range_result(w, *rangefuncs.double_exponential_smoothing(w, sf, tf))
        if name == "absent_over_time":
            w = self._windows(args[0], ctx)
            some = (w.count > 0).any(axis=0)
            arg = unwrap_parens(args[0])
            lb = self._absent_labels(arg.vector_selector if isinstance(arg, pp.MatrixSelector) else None)
            out = InstantVec([lb], np.ones((1, ctx.steps)), ~some[None, :])
            return out.compact()
        raise PromQLUnsupported(f"function {name}() is not supported")

    def _call_instant(self, name: str, args: list[pp.Expr], ctx: Ctx) -> Value:
        """Functions over instant vectors and scalars."""
        T = ctx.steps
        if name in ("min_of", "max_of"):
            a, b = self._scalar(args[0], ctx), self._scalar(args[1], ctx)
            return Scalar(np.minimum(a, b) if name == "min_of" else np.maximum(a, b))
        if name in functions.MATH:
            return functions.math_fn(name, self._vector(args[0], ctx))
        if name == "round":
            vec = self._vector(args[0], ctx)
            return functions.round_fn(vec, self._scalar(args[1], ctx) if len(args) > 1 else None)
        if name in ("clamp", "clamp_min", "clamp_max"):
            vec = self._vector(args[0], ctx)
            inf = np.full(T, np.inf)
            if name == "clamp":
                return functions.clamp(vec, self._scalar(args[1], ctx), self._scalar(args[2], ctx))
            if name == "clamp_min":
                return functions.clamp(vec, self._scalar(args[1], ctx), inf)
            return functions.clamp(vec, -inf, self._scalar(args[1], ctx))
        if name == "scalar":
            return functions.scalar_of(self._vector(args[0], ctx), T)
        if name == "vector":
            return InstantVec([()], self._scalar(args[0], ctx)[None, :].copy(), np.ones((1, T), dtype=bool))
        if name == "time":
            return Scalar(ctx.times / 1000.0)
        if name == "pi":
            return Scalar(np.full(T, np.pi))
        if name in ("start", "end", "range", "step"):
            val = {
                "start": ctx.q_start,
                "end": ctx.q_end,
                "range": ctx.q_end - ctx.q_start,
                "step": ctx.q_step,
            }
            return Scalar(np.full(T, val[name] / 1000.0))
        if name == "timestamp":
            if isinstance(args[0], pp.VectorSelector):
                vec, sample_ts = self._instant_selector(args[0], ctx)
                return functions.timestamp_fn(vec, sample_ts, ctx.times)
            return functions.timestamp_fn(self._vector(args[0], ctx), None, ctx.times)
        if name in DATE_FUNCS:
            return functions.date_fn(name, self._vector(args[0], ctx) if args else None, ctx.times)
        if name == "label_replace":
            vec = self._vector(args[0], ctx)
            dst, repl, src, rx = (self._string(a) for a in args[1:5])
            return functions.label_replace(vec, dst, repl, src, rx)
        if name == "label_join":
            vec = self._vector(args[0], ctx)
            strs = [self._string(a) for a in args[1:]]
            return functions.label_join(vec, strs[0], strs[1], strs[2:])
        if name in ("sort", "sort_desc"):
            return functions.sort_rows(self._vector(args[0], ctx), name == "sort_desc", T)
        if name in ("sort_by_label", "sort_by_label_desc"):
            vec = self._vector(args[0], ctx)
            return functions.sort_by_label(vec, [self._string(a) for a in args[1:]], name.endswith("desc"), T)
        if name == "absent":
            vec = self._vector(args[0], ctx)
            arg = unwrap_parens(args[0])
            lb = self._absent_labels(arg if isinstance(arg, pp.VectorSelector) else None)
            return InstantVec([lb], np.ones((1, T)), ~vec.present.any(axis=0)[None, :]).compact()
        if name == "histogram_quantile":
            q = self._scalar(args[0], ctx)
            return functions.histogram_quantile(q, self._vector(args[1], ctx))
        if name in _NATIVE_HISTOGRAM_FUNCS:
            raise PromQLUnsupported(f"function {name}() (native histograms are not supported)")
        raise PromQLUnsupported(f"function {name}() is not supported")

    @staticmethod
    def _string(e: pp.Expr) -> str:
        e = unwrap_parens(e)
        if not isinstance(e, pp.StringLiteral):
            raise PromQLExecutionError("expected a string literal argument")
        return str(e.val)

    @staticmethod
    def _absent_labels(vs: pp.VectorSelector | None) -> Labels:
        if vs is None:
            return ()
        return functions.absent_labels([(m.name, m.op, m.value) for m in selector_matchers(vs)])


def _merge_duplicate_series(
    rows: list[tuple[Labels, np.ndarray, np.ndarray]],
) -> list[tuple[Labels, np.ndarray, np.ndarray]]:
    """One series per label set when a source returns the same series twice (e.g. replicas)."""
    merged: dict[Labels, tuple[np.ndarray, np.ndarray]] = {}
    for lb, ts, vals in rows:
        if lb not in merged:
            merged[lb] = (ts, vals)
            continue
        all_ts = np.concatenate([merged[lb][0], ts])
        all_vals = np.concatenate([merged[lb][1], vals])
        order = np.argsort(all_ts, kind="stable")
        all_ts, all_vals = all_ts[order], all_vals[order]
        keep = np.ones(all_ts.size, dtype=bool)
        keep[:-1] = all_ts[1:] != all_ts[:-1]
        merged[lb] = (all_ts[keep], all_vals[keep])
    return [(lb, ts, vals) for lb, (ts, vals) in merged.items()]


def _filter_samples(rv: RangeVec, keep: np.ndarray) -> RangeVec:
    # Each series' new bounds are the kept samples before its old ones (reduceat over the offsets
    # failed when the last series had no samples: its offset is past the end).
    kept = np.zeros(keep.size + 1, dtype=np.intp)
    np.cumsum(keep, out=kept[1:])
    return RangeVec(rv.labels, rv.ts[keep], rv.vals[keep], kept[rv.offsets])


def _to_range(vec: InstantVec, times: np.ndarray) -> RangeVec:
    counts = vec.present.sum(axis=1)
    offsets = np.zeros(len(vec) + 1, dtype=np.intp)
    np.cumsum(counts, out=offsets[1:])
    rows, cols = np.nonzero(vec.present)
    return RangeVec(list(vec.labels), times[cols], vec.values[rows, cols], offsets)


def _range_result(w: Windows, vals: np.ndarray, pres: np.ndarray, keep_name: bool = False) -> InstantVec:
    labels = w.rv.labels if keep_name else [L.drop_name(lb) for lb in w.rv.labels]
    out = InstantVec(list(labels), vals, pres).compact()
    # Prometheus checks the whole matrix here, not per step (engine.go, matrix-argument functions).
    check_unique(out.labels)
    return out
