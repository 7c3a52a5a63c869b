"""Split evaluation of a PromQL query across partition owners (scatter-gather with pushdown).

Status: usable — ``plan``, ``Plan.selections``, ``Plan.evaluate_partial`` and ``Plan.merge``
are implemented and property-tested (tests/test_promql_pushdown.py).

``plan(query)`` parses once and splits the expression tree:

* **series-local** subtrees (a selector under per-series functions such as
  ``rate``/``*_over_time``/``abs``/``round``, arithmetic and comparisons with
  data-free scalars) are evaluated by every partition owner; the partial holds
  their per-step values (``(n, T)``), not raw samples;
* **aggregations** ``sum/avg/count/min/max/group/stddev/stdvar/topk/bottomk`` (with
  ``by``/``without``) over a series-local expression travel as per-group, per-step
  states: sum; sum + count (+ mean where a sum overflowed); count; min/max;
  presence; count + mean + M2 (Chan et al.'s parallel variance); the local top-k
  candidates;
* selectors anywhere else (inside subqueries, ``x[5m]`` at the top, arguments of
  ``absent_over_time`` or of ``timestamp`` over a non-local expression) travel as
  the selected raw samples, so every query stays correct, just not cheaper.

``Plan.merge`` combines the partials of a disjoint cover of the partitions and
evaluates the rest of the tree with the engine, each pushed subtree bound to its
merged value. Series never span partitions, so per-series work is local. Name
dropping (``rate`` and friends) can only make two series collide when the selector
does not fix ``__name__``; such chains are not pushed (the engine's duplicate
label-set error then stays exact). Label-changing functions (``label_replace``,
``label_join``) run in ``merge`` over their pushed argument for the same reason.

Differences from one ``Engine`` over the union: float sums/means are combined per
partition (equal within the engine's tolerance); the rows of an instant vector that
the query does not order (no ``sort``/``topk``) come in label order; ties in
``topk``/``bottomk`` may pick a different series of equal value; the engine's memory
guard (series x steps) applies per partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import promql_parser as pp

from . import aggregate as agg
from . import rangefuncs
from .astutil import parse, selector_matchers, unwrap_parens
from .engine import DATE_FUNCS, Engine, check_query_times
from .errors import PromQLExecutionError
from .functions import MATH
from .labels import Labels
from .partial_wire import PartialReader, PartialWriter, labels_in, labels_out
from .prefetch import plan_selections
from .result import QueryResult
from .source import Matcher, MemorySource, SeriesSource
from .values import InstantVec, Scalar

__all__ = ["Plan", "Selection", "plan"]

Selection = tuple[list[Matcher], int, int]

PUSHED_AGGS = frozenset({"sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk"})
_RANGE_LOCAL = {*rangefuncs.SIMPLE, "quantile_over_time", "predict_linear", "double_exponential_smoothing"}
_INSTANT_LOCAL = {
    *MATH,
    "round",
    "clamp",
    "clamp_min",
    "clamp_max",
    "timestamp",
    *DATE_FUNCS,
}
_SCALAR_FUNCS = {"time", "pi", "start", "end", "range", "step", "min_of", "max_of"}
_SET_OPS = {"and", "or", "unless"}


@dataclass(frozen=True, slots=True)
class _Pushed:
    """A subtree evaluated on every partition: ``rows`` (series-local) or ``agg``."""

    kind: Literal["rows", "agg"]
    key: str  # repr of the node: what the engine binds the merged value to
    expr: pp.Expr  # the series-local expression (the aggregation's argument for "agg")
    op: str = ""
    by: list[str] | None = None
    without: list[str] | None = None
    param: pp.Expr | None = None


@dataclass(slots=True)
class _Split:
    pushed: list[_Pushed] = field(default_factory=list)
    raw: list[list[Matcher]] = field(default_factory=list)  # selectors shipped as samples


def plan(query: str, *, lookback_ms: int = 300_000, subquery_step_ms: int = 60_000) -> Plan:
    """Parse ``query`` once; raises the engine's parse errors."""
    expr = parse(query)
    split = _Split()
    _walk(expr, split)
    return Plan(query, expr, split, int(lookback_ms), int(subquery_step_ms))


class Plan:
    """A query split into per-partition work and the merge on top."""

    def __init__(self, query: str, expr: pp.Expr, split: _Split, lookback_ms: int, subquery_step_ms: int) -> None:
        self.query = query
        self._expr = expr
        self._split = split
        self.lookback_ms = lookback_ms
        self.subquery_step_ms = subquery_step_ms

    @property
    def pushed(self) -> int:
        """How many subtrees run on the partition owners (0: everything travels raw)."""
        return len(self._split.pushed)

    def selections(self, start_ms: int, end_ms: int, step_ms: int) -> list[Selection]:
        """What a partition owner reads: every selector with its inclusive window."""
        return plan_selections(
            self.query, start_ms, end_ms, max(step_ms, 1), self.lookback_ms, self.subquery_step_ms
        )

    def evaluate_partial(
        self, source: SeriesSource, start_ms: int, end_ms: int, step_ms: int, *, timeout_s: float | None = None
    ) -> bytes:
        """This partition set's share, serialised (see partial_wire)."""
        start_ms, end_ms, step_ms = int(start_ms), int(end_ms), int(step_ms)
        check_query_times(start_ms, end_ms, step_ms)
        engine = Engine(source, self.lookback_ms, timeout_s, self.subquery_step_ms)
        nodes: list[pp.Expr] = []
        for p in self._split.pushed:
            nodes.append(p.expr)
            if p.param is not None:
                nodes.append(p.param)
        values = iter(engine.evaluate_nodes(nodes, start_ms, end_ms, step_ms))
        steps = (end_ms - start_ms) // step_ms + 1 if step_ms else 1
        w = PartialWriter()
        for p in self._split.pushed:
            vec = _as_vector(next(values))
            param = _as_scalar(next(values)) if p.param is not None else None
            if p.kind == "rows":
                w.parts.append(_rows_part(w, vec))
            else:
                w.parts.append(_agg_part(w, p, vec, param, steps))
        w.parts.append(self._raw_part(w, source, start_ms, end_ms, step_ms))
        return w.to_bytes()

    def merge(
        self,
        partials: Sequence[bytes],
        start_ms: int,
        end_ms: int,
        step_ms: int,
        *,
        timeout_s: float | None = None,
    ) -> QueryResult:
        """The query's result from the partials of a disjoint cover of all partitions."""
        start_ms, end_ms, step_ms = int(start_ms), int(end_ms), int(step_ms)
        check_query_times(start_ms, end_ms, step_ms)
        steps = (end_ms - start_ms) // step_ms + 1 if step_ms else 1
        readers = [PartialReader(bytes(p)) for p in partials]
        n = len(self._split.pushed) + 1
        for r in readers:
            if len(r.parts) != n:
                raise PromQLExecutionError(f"query partial has {len(r.parts)} parts, the plan {n}")
        raw = MemorySource()
        for r in readers:
            _read_raw(r, r.parts[-1], raw)
        engine = Engine(raw, self.lookback_ms, timeout_s, self.subquery_step_ms)
        params = engine.evaluate_nodes(
            [p.param for p in self._split.pushed if p.param is not None], start_ms, end_ms, step_ms
        )
        it = iter(params)
        bound: dict[str, InstantVec] = {}
        for i, p in enumerate(self._split.pushed):
            parts = [(r, r.parts[i]) for r in readers]
            if p.kind == "rows":
                bound[p.key] = _merge_rows(parts, steps)
            elif p.op in ("topk", "bottomk"):
                cands = _merge_rows(parts, steps)
                bound[p.key] = agg.select_k(p.op, cands, p.by, p.without, _as_scalar(next(it)), steps)
            else:
                if p.param is not None:
                    next(it)
                bound[p.key] = _merge_agg(p.op, parts, steps)
        return engine.evaluate_bound(self._expr, start_ms, end_ms, step_ms, bound)

    def _raw_part(
        self, w: PartialWriter, source: SeriesSource, start_ms: int, end_ms: int, step_ms: int
    ) -> dict[str, object]:
        wanted = {tuple(m) for m in self._split.raw}
        windows: dict[tuple[Matcher, ...], tuple[int, int]] = {}
        for ms, lo, hi in self.selections(start_ms, end_ms, step_ms):
            key = tuple(ms)
            if key in wanted:
                old = windows.get(key)
                windows[key] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
        series = []
        for key, (lo, hi) in windows.items():
            for s in source.select(list(key), lo, hi):
                ts = w.add_array(np.asarray(s.timestamps_ms), "i8")
                vals = w.add_array(np.asarray(s.values), "f8")
                series.append([sorted(s.labels.items()), ts, vals])
        return {"kind": "raw", "series": series}


# -- planning ----------------------------------------------------------------------------------


def _walk(e: pp.Expr, out: _Split) -> None:
    """Push the largest splittable subtrees; everything else is evaluated in merge."""
    e = unwrap_parens(e)
    if not _has_selector(e):
        return
    if isinstance(e, pp.AggregateExpr) and _pushable_agg(e):
        by, without = _grouping(e)
        param = e.param if str(e.op) in ("topk", "bottomk") else None
        out.pushed.append(_Pushed("agg", repr(e), e.expr, str(e.op), by, without, param))
        return
    if _local(e):
        out.pushed.append(_Pushed("rows", repr(e), e))
        return
    if isinstance(e, pp.VectorSelector):  # cannot happen (a selector is local), kept for clarity
        out.raw.append(selector_matchers(e))
    elif isinstance(e, pp.MatrixSelector):
        out.raw.append(selector_matchers(e.vector_selector))
    elif isinstance(e, pp.SubqueryExpr):
        out.raw.extend(_all_selectors(e.expr))
    elif isinstance(e, pp.UnaryExpr):
        _walk(e.expr, out)
    elif isinstance(e, pp.BinaryExpr):
        _walk(e.lhs, out)
        _walk(e.rhs, out)
    elif isinstance(e, pp.AggregateExpr):
        if e.param is not None:
            _walk(e.param, out)
        _walk(e.expr, out)
    elif isinstance(e, pp.Call):
        for arg in e.args:
            a = unwrap_parens(arg)
            # timestamp() of a bare selector reads sample times, not values: keep the samples.
            if e.func.name == "timestamp" and isinstance(a, pp.VectorSelector):
                out.raw.append(selector_matchers(a))
            else:
                _walk(a, out)
    else:
        out.raw.extend(_all_selectors(e))


def _grouping(e: pp.AggregateExpr) -> tuple[list[str] | None, list[str] | None]:
    if e.modifier is None:
        return None, None
    labels = list(e.modifier.labels)
    return (None, labels) if str(e.modifier.type).endswith("Without") else (labels, None)


def _pushable_agg(e: pp.AggregateExpr) -> bool:
    op = str(e.op)
    if op not in PUSHED_AGGS or not _local(unwrap_parens(e.expr)):
        return False
    return e.param is None or (op in ("topk", "bottomk") and _const_scalar(unwrap_parens(e.param)))


def _local(e: pp.Expr) -> bool:
    """A series-local instant vector: each output row depends on one input series only."""
    e = unwrap_parens(e)
    if isinstance(e, pp.VectorSelector):
        return True
    chain_ok = _local_chain(e)
    return chain_ok is not None and chain_ok


def _local_chain(e: pp.Expr) -> bool | None:
    """True/False for a local chain over a selector that fixes ``__name__``; None if not a chain."""
    e = unwrap_parens(e)
    if isinstance(e, pp.VectorSelector):
        return _fixed_name(e)
    if isinstance(e, pp.UnaryExpr):
        return _local_chain(e.expr)
    if isinstance(e, pp.BinaryExpr):
        if str(e.op) in _SET_OPS:
            return None
        lhs, rhs = unwrap_parens(e.lhs), unwrap_parens(e.rhs)
        if _const_scalar(rhs):
            return _local_chain(lhs)
        if _const_scalar(lhs):
            return _local_chain(rhs)
        return None
    if isinstance(e, pp.Call):
        name = e.func.name
        args = [unwrap_parens(a) for a in e.args]
        if name in _RANGE_LOCAL:
            mats = [a for a in args if isinstance(a, pp.MatrixSelector)]
            if len(mats) != 1 or not all(a is mats[0] or _const_scalar(a) for a in args):
                return None
            return _fixed_name(mats[0].vector_selector)
        if name in _INSTANT_LOCAL and args:
            rest = args[1:]
            if not all(_const_scalar(a) for a in rest):
                return None
            return _local_chain(args[0])
    return None


def _fixed_name(vs: pp.VectorSelector) -> bool:
    return any(m.name == "__name__" and m.op == "=" for m in selector_matchers(vs))


def _const_scalar(e: pp.Expr) -> bool:
    """A scalar that needs no data, so every partition computes the same one."""
    e = unwrap_parens(e)
    if isinstance(e, pp.NumberLiteral):
        return True
    if isinstance(e, pp.UnaryExpr):
        return _const_scalar(e.expr)
    if isinstance(e, pp.BinaryExpr):
        return _const_scalar(e.lhs) and _const_scalar(e.rhs)
    if isinstance(e, pp.Call) and e.func.name in _SCALAR_FUNCS:
        return all(_const_scalar(a) for a in e.args)
    return False


def _has_selector(e: pp.Expr) -> bool:
    return bool(_all_selectors(e))


def _all_selectors(e: pp.Expr) -> list[list[Matcher]]:
    e = unwrap_parens(e)
    if isinstance(e, pp.VectorSelector):
        return [selector_matchers(e)]
    if isinstance(e, pp.MatrixSelector):
        return [selector_matchers(e.vector_selector)]
    children: list[pp.Expr] = []
    if isinstance(e, pp.SubqueryExpr | pp.UnaryExpr):
        children = [e.expr]
    elif isinstance(e, pp.BinaryExpr):
        children = [e.lhs, e.rhs]
    elif isinstance(e, pp.AggregateExpr):
        children = [e.expr] + ([e.param] if e.param is not None else [])
    elif isinstance(e, pp.Call):
        children = list(e.args)
    return [m for c in children for m in _all_selectors(c)]


# -- partials ----------------------------------------------------------------------------------


def _as_vector(v: object) -> InstantVec:
    if not isinstance(v, InstantVec):
        raise PromQLExecutionError("expected an instant vector argument")
    return v


def _as_scalar(v: object) -> np.ndarray:
    if not isinstance(v, Scalar):
        raise PromQLExecutionError("expected a scalar argument")
    return v.values


def _rows_part(w: PartialWriter, vec: InstantVec) -> dict[str, object]:
    return {
        "kind": "rows",
        "labels": labels_out(vec.labels),
        "values": w.add_array(vec.values, "f8"),
        "present": w.add_array(vec.present, "b1"),
    }


def _agg_part(
    w: PartialWriter, p: _Pushed, vec: InstantVec, param: np.ndarray | None, steps: int
) -> dict[str, object]:
    if p.op in ("topk", "bottomk"):
        assert param is not None
        return _rows_part(w, agg.select_k(p.op, vec, p.by, p.without, param, steps))
    count = agg.aggregate("count", vec, p.by, p.without, None, steps)
    part: dict[str, object] = {
        "kind": "agg",
        "labels": labels_out(count.labels),
        "count": w.add_array(count.values, "f8"),
    }
    if p.op in ("sum", "min", "max", "avg"):
        op = "sum" if p.op == "avg" else p.op
        part["value"] = w.add_array(_aligned(agg.aggregate(op, vec, p.by, p.without, None, steps), count), "f8")
    # avg needs the mean only where the sum overflowed (then the engine averages incrementally).
    if p.op in ("stddev", "stdvar") or (p.op == "avg" and not np.isfinite(_part_sum(w, part)).all()):
        part["mean"] = w.add_array(_aligned(agg.aggregate("avg", vec, p.by, p.without, None, steps), count), "f8")
        if p.op != "avg":
            var = _aligned(agg.aggregate("stdvar", vec, p.by, p.without, None, steps), count)
            with np.errstate(invalid="ignore"):
                part["m2"] = w.add_array(var * count.values, "f8")
    return part


def _part_sum(w: PartialWriter, part: dict[str, object]) -> np.ndarray:
    return w.array(part["value"])  # type: ignore[arg-type]


def _aligned(vec: InstantVec, like: InstantVec) -> np.ndarray:
    """``vec``'s values in the row order of ``like`` (same groups; absent cells are 0)."""
    if vec.labels == like.labels:
        return np.where(vec.present, vec.values, 0.0)
    pos = {lb: i for i, lb in enumerate(vec.labels)}
    out = np.zeros(like.values.shape)
    for i, lb in enumerate(like.labels):
        j = pos.get(lb)
        if j is not None:
            out[i] = np.where(vec.present[j], vec.values[j], 0.0)
    return out


def _read_raw(r: PartialReader, part: dict[str, object], into: MemorySource) -> None:
    for labels, ts, vals in part["series"]:  # type: ignore[attr-defined]
        into.add(dict(labels), r.array(ts), r.array(vals))


def _merge_rows(parts: list[tuple[PartialReader, dict]], steps: int) -> InstantVec:
    """Series-local rows of all partitions, in label order; a series seen twice (two owners
    during a rebalance) is kept once."""
    rows: dict[Labels, tuple[np.ndarray, np.ndarray]] = {}
    for r, part in parts:
        vals, pres = r.array(part["values"]), r.array(part["present"])
        for i, lb in enumerate(labels_in(part["labels"])):
            rows.setdefault(lb, (vals[i], pres[i]))
    if not rows:
        return InstantVec.empty(steps)
    order = sorted(rows)
    return InstantVec(
        order,
        np.array([rows[lb][0] for lb in order], dtype=np.float64).reshape(len(order), steps),
        np.array([rows[lb][1] for lb in order], dtype=bool).reshape(len(order), steps),
    )


def _merge_agg(op: str, parts: list[tuple[PartialReader, dict]], steps: int) -> InstantVec:
    index: dict[Labels, int] = {}
    per_part: list[tuple[PartialReader, dict, np.ndarray]] = []
    for r, part in parts:
        gids = [index.setdefault(lb, len(index)) for lb in labels_in(part["labels"])]
        per_part.append((r, part, np.asarray(gids, dtype=np.intp)))
    G = len(index)
    if G == 0:
        return InstantVec.empty(steps)
    n = np.zeros((G, steps))
    for r, part, g in per_part:
        n[g] += r.array(part["count"])
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        vals = _combine(op, per_part, n, G, steps)
    labels = list(index)
    order = sorted(range(G), key=lambda i: labels[i])
    return InstantVec([labels[i] for i in order], vals[order], (n > 0)[order]).compact()


def _combine(
    op: str, per_part: list[tuple[PartialReader, dict, np.ndarray]], n: np.ndarray, G: int, T: int
) -> np.ndarray:
    if op == "count":
        return n
    if op == "group":
        return np.ones((G, T))
    if op in ("min", "max"):
        out = np.full((G, T), np.nan)
        fn = np.fmin if op == "min" else np.fmax
        for r, part, g in per_part:
            c = r.array(part["count"])
            out[g] = fn(out[g], np.where(c > 0, r.array(part["value"]), np.nan))
        return out
    total = np.zeros((G, T))
    if op in ("sum", "avg"):
        for r, part, g in per_part:
            total[g] += r.array(part["value"])
        if op == "sum":
            return total
    # Means weighted by their share of the count stay finite where a plain sum would overflow.
    mean = np.zeros((G, T))
    m2 = np.zeros((G, T))
    seen = np.zeros((G, T))
    if op == "avg" and np.isfinite(total).all():
        return total / np.where(n > 0, n, 1)
    for r, part, g in per_part:
        c = r.array(part["count"])
        if op == "avg":
            mb = r.array(part["mean"]) if "mean" in part else r.array(part["value"]) / np.where(c > 0, c, 1)
            mean[g] += np.where(c > 0, mb * (c / np.where(n[g] > 0, n[g], 1)), 0.0)
            continue
        mb = r.array(part["mean"])
        # Chan, Golub and LeVeque's pairwise update of (count, mean, M2).
        m2b = r.array(part["m2"])
        na = seen[g]
        tot = na + c
        delta = mb - mean[g]
        has = c > 0
        first = has & (na == 0)
        safe_tot = np.where(tot > 0, tot, 1)
        new_mean = np.where(first, mb, mean[g] + delta * c / safe_tot)
        new_m2 = np.where(first, m2b, m2[g] + m2b + delta * delta * na * c / safe_tot)
        mean[g] = np.where(has, new_mean, mean[g])
        m2[g] = np.where(has, new_m2, m2[g])
        seen[g] = tot
    if op == "avg":
        # The engine divides the sum by the count unless the sum overflows (then it averages
        # incrementally); the count-weighted partial means stand in for the overflowed cells.
        return np.where(np.isfinite(total), total / np.where(n > 0, n, 1), mean)
    var = m2 / np.where(n > 0, n, 1)
    return np.sqrt(var) if op == "stddev" else var
