"""Helpers over the ``promql_parser`` AST: parsing with our errors, times, matchers.

``promql_parser`` is Rust-backed; a few attribute reads panic (a ``BaseException``)
for values it cannot convert, e.g. negative ``@`` timestamps. We read those from
the node's debug representation instead, which is exact.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass

import promql_parser as pp

from .errors import PromQLParseError, PromQLUnsupported
from .source import Matcher

_MS = dt.timedelta(milliseconds=1)
_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}
_AT_RE = re.compile(r"at: Some\(\s*At\(\s*SystemTime \{\s*tv_sec: (-?\d+),\s*tv_nsec: (\d+)")
_UNKNOWN_FN = re.compile(r"unknown function with name '([^']*)'")


def parse(query: str) -> pp.Expr:
    if not isinstance(query, str):
        raise PromQLParseError("query must be a string")
    return _parse_kept(query) if len(query) <= PARSED_KEPT_MAX_CHARS else _parse(query)


def _parse(query: str) -> pp.Expr:
    if "\x00" in query:
        raise PromQLParseError("query contains a NUL byte")
    try:
        return pp.parse(query)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        msg = str(exc).strip() or type(exc).__name__
        m = _UNKNOWN_FN.search(msg)
        if m and m.group(1) == "holt_winters":
            raise PromQLUnsupported("function holt_winters() is not supported") from None
        raise PromQLParseError(f"parse error: {msg}") from None


# A range query parses its text three times (selections, the small-or-pooled choice, the engine)
# and a dashboard sends the same texts every refresh. The AST is only read, never changed;
# errors are not kept (each is raised anew).
PARSED_KEPT_MAX_CHARS = 4096
_parse_kept = functools.lru_cache(maxsize=1024)(_parse)


# Times and durations beyond ~36 million years cannot be evaluated on int64 milliseconds.
MAX_ABS_MS = 2**60


def td_ms(td: dt.timedelta | None) -> int:
    return 0 if td is None else td // _MS


def duration_ms(node: object, attr: str) -> int:
    """Read ``offset``/``range``/``step`` of a node; the parser raises on out-of-range values."""
    try:
        value = getattr(node, attr)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # Rust-side conversion errors and panics
        raise PromQLParseError(f"{attr} is out of range") from None
    ms = td_ms(value)
    if abs(ms) > MAX_ABS_MS:
        raise PromQLParseError(f"{attr} is out of range")
    return ms


@dataclass(frozen=True, slots=True)
class At:
    """A resolved ``@``: an absolute time, or the query's start()/end()."""

    kind: str  # "at" | "start" | "end"
    ms: int = 0

    def resolve(self, q_start: int, q_end: int) -> int:
        return self.ms if self.kind == "at" else q_start if self.kind == "start" else q_end


def at_of(node: pp.VectorSelector | pp.SubqueryExpr) -> At | None:
    at = node.at
    if at is None:
        return None
    kind = str(at.type)
    if kind.endswith("Start"):
        return At("start")
    if kind.endswith("End"):
        return At("end")
    # The node's own @ prints after any inner expression, so the last match is ours.
    found = _AT_RE.findall(repr(node))
    if not found:
        raise PromQLParseError("cannot read @ timestamp")
    sec, nsec = found[-1]
    ms = int(sec) * 1000 + int(nsec) // 1_000_000
    if abs(ms) > MAX_ABS_MS:
        raise PromQLParseError("@ timestamp is out of range")
    return At("at", ms)


def selector_matchers(vs: pp.VectorSelector) -> list[Matcher]:
    ms = vs.matchers
    if ms.or_matchers:
        raise PromQLUnsupported("'or' inside label matchers is not supported")
    out: list[Matcher] = []
    if vs.name is not None:
        out.append(Matcher("__name__", "=", vs.name))
    for m in ms.matchers:
        op = _OPS.get(str(m.op))
        if op is None:
            raise PromQLUnsupported(f"label matcher operator {m.op}")
        out.append(Matcher(m.name, op, m.value))  # type: ignore[arg-type]
    return out


def unwrap_parens(e: pp.Expr) -> pp.Expr:
    while isinstance(e, pp.ParenExpr):
        e = e.expr
    return e
