"""promqltest's ``@`` variants: re-run an instant eval with ``@ <eval time>`` on every selector.

Prometheus' runner pins every selector (and outermost subquery) to the evaluation
time and evaluates at other times; results must not change. This needs the query
printed back from the AST, done here for the node types promql-parser produces.
"""

from __future__ import annotations

import datetime as dt
import math
import re

import promql_parser as pp

from metricsflow.promql.astutil import at_of, parse

# Functions whose result depends on the evaluation time even with pinned arguments (Prometheus' list).
AT_UNSAFE = {
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "end",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "range",
    "start",
    "step",
    "time",
    "timestamp",
}
_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _dur(td: dt.timedelta | None) -> str:
    ms = 0 if td is None else td // dt.timedelta(milliseconds=1)
    return f"{ms}ms" if ms >= 0 else f"-{-ms}ms"


def _num(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    return repr(v)


def _str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _at(node: pp.Expr, pin: int | None) -> str:
    at = at_of(node)
    if at is not None:
        if at.kind == "start":
            return " @ start()"
        if at.kind == "end":
            return " @ end()"
        return f" @ {at.ms / 1000!r}"
    return "" if pin is None else f" @ {pin / 1000!r}"


def _mods(node: pp.Expr, pin: int | None) -> str:
    off = "" if node.offset is None else f" offset {_dur(node.offset)}"
    return off + _at(node, pin)


def _selector(vs: pp.VectorSelector) -> str:
    parts = []
    for m in vs.matchers.matchers:
        name = m.name if _NAME.match(m.name) else _str(m.name)
        parts.append(f"{name}{_OPS[str(m.op)]}{_str(m.value)}")
    return (vs.name or "") + "{" + ", ".join(parts) + "}"


def render(e: pp.Expr, pin: int | None) -> str:
    """PromQL text of ``e``; selectors without ``@`` get ``@ pin`` when pin is set."""
    if isinstance(e, pp.NumberLiteral):
        return _num(e.val)
    if isinstance(e, pp.StringLiteral):
        return _str(e.val)
    if isinstance(e, pp.ParenExpr):
        return f"({render(e.expr, pin)})"
    if isinstance(e, pp.UnaryExpr):
        return f"-({render(e.expr, pin)})"
    if isinstance(e, pp.VectorSelector):
        return _selector(e) + _mods(e, pin)
    if isinstance(e, pp.MatrixSelector):
        vs = e.vector_selector
        return f"{_selector(vs)}[{_dur(e.range)}]" + _mods(vs, pin)
    if isinstance(e, pp.SubqueryExpr):
        step = "" if e.step is None else _dur(e.step)
        # Selectors inside a pinned subquery keep their own timing.
        return f"({render(e.expr, None)})[{_dur(e.range)}:{step}]" + _mods(e, pin)
    if isinstance(e, pp.BinaryExpr):
        mod = e.modifier
        text = str(e.op)
        if mod is not None:
            if mod.return_bool:
                text += " bool"
            if mod.matching is not None:
                kind = "on" if str(mod.matching.type).endswith("Include") else "ignoring"
                text += f" {kind}({', '.join(mod.matching.labels)})"
            card = str(mod.card)
            if card.endswith("ManyToOne"):
                text += f" group_left({', '.join(mod.group_labels or [])})"
            elif card.endswith("OneToMany"):
                text += f" group_right({', '.join(mod.group_labels or [])})"
        return f"({render(e.lhs, pin)}) {text} ({render(e.rhs, pin)})"
    if isinstance(e, pp.AggregateExpr):
        grouping = ""
        if e.modifier is not None:
            kind = "without" if str(e.modifier.type).endswith("Without") else "by"
            grouping = f" {kind} ({', '.join(e.modifier.labels)})"
        param = "" if e.param is None else render(e.param, pin) + ", "
        return f"{e.op}{grouping} ({param}{render(e.expr, pin)})"
    if isinstance(e, pp.Call):
        return f"{e.func.name}({', '.join(render(a, pin) for a in e.args)})"
    raise TypeError(type(e).__name__)


def _calls(e: pp.Expr) -> set[str]:
    names: set[str] = set()

    def visit(node: pp.Expr) -> None:
        if isinstance(node, pp.Call):
            names.add(node.func.name)

    pp.walk(e, visit)
    return names


def variants(query: str, eval_ms: int) -> list[tuple[str, int]]:
    """(pinned query, evaluation time) pairs as promqltest derives them; [] if not applicable."""
    expr = parse(query)
    if _calls(expr) & AT_UNSAFE:
        return []
    pinned = render(expr, eval_ms)
    times = [-1000, 0, 1000] if eval_ms == 0 else [-10 * eval_ms, 0, eval_ms // 5, eval_ms, 10 * eval_ms]
    return [(pinned, t) for t in times]
