"""A reader and runner for Prometheus' promqltest script format (``*.test``).

Supports what the conformance files use: ``load``/``load_with_nhcb`` (float
series only), ``clear``, ``eval instant at``, ``eval range from .. to .. step``,
``expect fail|ordered|string|range vector`` and the older ``eval_fail`` /
``eval_ordered`` forms. Warn/info expectations are ignored; anything with a
native histogram (``{{``) is reported as skipped. Comparison follows promqltest:
relative tolerance 1e-6, NaN equals NaN, order only when asked; every instant
query is re-run as a range query whose middle step must agree, and with ``@``
pinned at other evaluation times (``at_variants.py``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metricsflow.model import STALE_NAN
from metricsflow.promql import Engine, MemorySource, PromQLError
from metricsflow.promql.result import QueryResult

EPSILON = 1e-6
_MIN_NORMAL = 2.2250738585072014e-308
_DUR = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNITS_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": 31_536_000_000,
}
_UNUM = r"(?:[iI]nf|NaN|nan|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
_NUM = rf"(?:[+-]?{_UNUM})"
_ITEM = re.compile(rf"^({_NUM}|stale|_)(?:([+-])({_UNUM})x(\d+)|x(\d+))?$")
_EVAL_INSTANT = re.compile(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$")
_EVAL_RANGE = re.compile(
    r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$"
)
_EXPECT = re.compile(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$")
_EXPECT_RANGE = re.compile(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$")
_QUERY_CONTEXT_FUNCS = re.compile(r"(start|end|range|step)\(\)")


def parse_duration(s: str) -> int:
    s = s.strip()
    if s == "0":
        return 0
    pos, total = 0, 0
    for m in _DUR.finditer(s):
        if m.start() != pos:
            raise ValueError(f"bad duration {s!r}")
        total += int(m.group(1)) * _UNITS_MS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"bad duration {s!r}")
    return total


def _num(s: str) -> float:
    t = s.lstrip("+-")
    sign = -1.0 if s.startswith("-") else 1.0
    if t.lower() == "inf":
        return sign * math.inf
    if t.lower() == "nan":
        return math.nan
    return float(s)


def expand_values(tokens: list[str]) -> list[float | None]:
    """Expand promqltest value items; None marks an omitted sample."""
    out: list[float | None] = []
    for tok in tokens:
        m = _ITEM.match(tok)
        if not m:
            raise ValueError(f"bad series value {tok!r}")
        base, sign, inc, n1, n2 = m.groups()
        if base == "_":
            out.extend([None] * (int(n2) if n2 else 1))
            continue
        v = STALE_NAN if base == "stale" else _num(base)
        if n1 is not None:
            step = _num(inc) * (1 if sign == "+" else -1)
            for _ in range(int(n1) + 1):
                out.append(v)
                v += step
        elif n2 is not None:
            out.extend([v] * (int(n2) + 1))
        else:
            out.append(v)
    return out


def _read_quoted(s: str, i: int) -> tuple[str, int]:
    q = s[i]
    j = i + 1
    buf = []
    while j < len(s) and s[j] != q:
        if s[j] == "\\" and q != "`":
            nxt = s[j + 1]
            buf.append({"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}.get(nxt, "\\" + nxt))
            j += 2
            continue
        buf.append(s[j])
        j += 1
    return "".join(buf), j + 1


def split_series(line: str) -> tuple[dict[str, str], str]:
    """``metric{a="b"} rest`` -> (labels incl. __name__, rest)."""
    line = line.strip()
    m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
    labels: dict[str, str] = {}
    i = 0
    if m:
        labels["__name__"] = m.group(0)
        i = m.end()
    if i < len(line) and line[i] == "{":
        i += 1
        while True:
            while line[i] in " ,\t":
                i += 1
            if line[i] == "}":
                i += 1
                break
            if line[i] in "\"'":
                name, i = _read_quoted(line, i)
            else:
                nm = re.match(r"[a-zA-Z_][a-zA-Z0-9_]*", line[i:])
                assert nm, line
                name = nm.group(0)
                i += nm.end()
            while line[i] == " ":
                i += 1
            assert line[i] == "=", line
            i += 1
            while line[i] == " ":
                i += 1
            value, i = _read_quoted(line, i)
            if value != "":
                labels[name] = value
    return labels, line[i:].strip()


@dataclass
class Expected:
    labels: dict[str, str]
    values: list[float | None]
    pos: int


@dataclass
class EvalCase:
    file: str
    line: int
    query: str
    epoch: int  # index into the file's storage states
    is_range: bool
    start_ms: int
    end_ms: int = 0
    step_ms: int = 0
    fail: bool = False
    fail_msg: str | None = None
    fail_regex: str | None = None
    ordered: bool = False
    scalar: float | None = None
    string: str | None = None
    range_vector: tuple[int, int, int] | None = None
    expected: list[Expected] = field(default_factory=list)
    native_histogram: bool = False

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Script:
    name: str
    loads: list[list[tuple[dict[str, str], int, list[float | None]]]]  # per epoch, cumulative
    cases: list[EvalCase]

    def source(self, epoch: int) -> MemorySource:
        src = MemorySource()
        for labels, interval, vals in self.loads[epoch]:
            ts = [i * interval for i, v in enumerate(vals) if v is not None]
            src.add(labels, np.array(ts, dtype=np.int64), np.array([v for v in vals if v is not None]))
        return src


def parse_script(path: Path) -> Script:
    raw = path.read_text().split("\n")
    lines = ["" if ln.strip().startswith("#") else ln.strip() for ln in raw]
    loads: list[list[tuple[dict[str, str], int, list[float | None]]]] = [[]]
    cases: list[EvalCase] = []
    i = 0
    while i < len(lines):
        ln = lines[i]
        if not ln:
            i += 1
            continue
        word = ln.split()[0].lower()
        if word == "clear":
            loads.append([])
            i += 1
        elif word.startswith("load"):
            interval = parse_duration(ln.split()[1])
            current = list(loads[-1])
            i += 1
            while i < len(lines) and lines[i]:
                labels, rest = split_series(lines[i])
                if "{{" not in rest:
                    current.append((labels, interval, expand_values(rest.split())))
                i += 1
            loads.append(current)
        elif word.startswith("eval"):
            i = _parse_eval(path.name, lines, i, len(loads) - 1, cases)
        else:
            raise ValueError(f"{path.name}:{i + 1}: unknown command {ln!r}")
    return Script(path.name, loads, cases)


def _parse_eval(fname: str, lines: list[str], i: int, epoch: int, cases: list[EvalCase]) -> int:
    ln = lines[i]
    mi, mr = _EVAL_INSTANT.match(ln), _EVAL_RANGE.match(ln)
    if mi:
        mod, at, query = mi.groups()
        case = EvalCase(fname, i + 1, query, epoch, False, parse_duration(at or "0"))
    elif mr:
        mod, a, b, s, query = mr.groups()
        case = EvalCase(
            fname, i + 1, query, epoch, True, parse_duration(a), parse_duration(b), parse_duration(s)
        )
    else:
        raise ValueError(f"{fname}:{i + 1}: bad eval {ln!r}")
    case.fail = mod == "fail"
    case.ordered = mod == "ordered"
    case.native_histogram = "{{" in query
    pos = 0
    i += 1
    while i < len(lines) and lines[i]:
        d = lines[i]
        i += 1
        if "{{" in d:
            case.native_histogram = True
        if d.startswith("expected_fail_message"):
            case.fail_msg = d[len("expected_fail_message") :].strip()
            continue
        if d.startswith("expected_fail_regexp"):
            case.fail_regex = d[len("expected_fail_regexp") :].strip()
            continue
        m = _EXPECT_RANGE.match(d)
        if m:
            case.range_vector = (
                parse_duration(m.group(1)),
                parse_duration(m.group(2)),
                parse_duration(m.group(3)),
            )
            continue
        if d.startswith("expect string"):
            s = d[len("expect string") :].strip()
            case.string = s[1:-1] if s.startswith("`") else _read_quoted(s, 0)[0]
            continue
        m = _EXPECT.match(d)
        if m and d.split(" ")[0] == "expect":
            kind, how, msg = m.groups()
            if kind == "fail":
                case.fail = True
                if how == "msg":
                    case.fail_msg = msg.strip()
                elif how == "regex":
                    case.fail_regex = msg.strip()
            elif kind == "ordered":
                case.ordered = True
            continue
        try:
            case.scalar = _num(d)
            break
        except ValueError:
            pass
        if case.native_histogram:
            continue
        labels, rest = split_series(d)
        pos += 1
        case.expected.append(Expected(labels, expand_values(rest.split()), pos))
    cases.append(case)
    return i


# -- comparison -----------------------------------------------------------------------------


def almost_equal(a: float, b: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < _MIN_NORMAL:
        return diff < EPSILON * _MIN_NORMAL
    return diff / min(abs_sum, 1.7976931348623157e308) < EPSILON


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if v != ""))


def _compare_vector(case: EvalCase, got: list[tuple[dict[str, str], float]], ordered: bool) -> None:
    exp = {_key(e.labels): e for e in case.expected}
    seen = set()
    for pos, (labels, v) in enumerate(got):
        k = _key(labels)
        if k not in exp:
            raise AssertionError(f"unexpected metric {labels} in result, has value {v}")
        e = exp[k]
        if ordered and e.pos != pos + 1:
            raise AssertionError(f"expected metric {labels} at position {e.pos} but was at {pos + 1}")
        ev = e.values[0]
        if ev is None or not almost_equal(ev, v):
            raise AssertionError(f"expected {ev} for {labels} but got {v}")
        seen.add(k)
    missing = [dict(k) for k in exp if k not in seen]
    if missing:
        raise AssertionError(f"expected metrics not found: {missing}")


def _compare_matrix(case: EvalCase, res: QueryResult, start: int, end: int, step: int) -> None:
    if res.result_type != "matrix":
        raise AssertionError(f"expected matrix result, got {res.result_type}")
    keys = [_key(s.labels) for s in res.series]
    if keys != sorted(keys):
        raise AssertionError("matrix results should always be sorted by labels")
    exp = {_key(e.labels): e for e in case.expected}
    for s in res.series:
        k = _key(s.labels)
        if k not in exp:
            raise AssertionError(
                f"unexpected metric {s.labels} in result: {list(zip(s.timestamps_ms, s.values, strict=True))}"
            )
        want = []
        for i, v in enumerate(exp[k].values):
            t = start + i * step
            if t > end:
                raise AssertionError(f"expected {len(exp[k].values)} points for {s.labels}, range is shorter")
            if v is not None:
                want.append((t, v))
        got = list(zip(s.timestamps_ms.tolist(), s.values.tolist(), strict=True))
        if len(want) != len(got):
            raise AssertionError(f"expected {want} for {s.labels}, got {got}")
        for (wt, wv), (gt, gv) in zip(want, got, strict=True):
            if wt != gt or not almost_equal(wv, gv):
                raise AssertionError(f"expected {want} for {s.labels}, got {got}")
    missing = [dict(k) for k in exp if k not in set(keys)]
    if missing:
        raise AssertionError(f"expected metrics not found: {missing}")


def run_case(case: EvalCase, engine: Engine, at_variants: bool = True) -> None:
    """Raise AssertionError when our engine disagrees with the script."""
    if case.is_range:
        _run_range(case, engine)
        return
    _run_instant(case, engine, case.query, case.start_ms)
    if not at_variants:
        return
    from at_variants import variants

    for query, t in variants(case.query, case.start_ms):
        try:
            _run_instant(case, engine, query, t)
        except AssertionError as exc:
            raise AssertionError(f"@ variant {query!r} at {t} ms: {exc}") from exc


def _check_error(case: EvalCase, exc: PromQLError) -> None:
    if not case.fail:
        raise AssertionError(f"unexpected error: {type(exc).__name__}: {exc}") from exc
    if case.fail_msg is not None and str(exc) != case.fail_msg:
        raise AssertionError(f"expected error {case.fail_msg!r}, got {str(exc)!r}") from exc
    if case.fail_regex is not None and not re.search(case.fail_regex, str(exc)):
        raise AssertionError(f"expected error matching {case.fail_regex!r}, got {str(exc)!r}") from exc


def _run_range(case: EvalCase, engine: Engine) -> None:
    try:
        res = engine.range(case.query, case.start_ms, case.end_ms, case.step_ms)
    except PromQLError as exc:
        _check_error(case, exc)
        return
    if case.fail:
        raise AssertionError("expected an error, got a result")
    _compare_matrix(case, res, case.start_ms, case.end_ms, case.step_ms)


def _run_instant(case: EvalCase, engine: Engine, query: str, t: int) -> None:
    try:
        res = engine.instant(query, t)
    except PromQLError as exc:
        _check_error(case, exc)
        return
    if case.fail:
        raise AssertionError("expected an error, got a result")
    if case.string is not None:
        assert res.result_type == "string", res.result_type
        assert res.string == case.string, (res.string, case.string)
        return
    if case.range_vector is not None:
        start, end, step = case.range_vector
        _compare_matrix(case, res, start, end, step)
        return
    if case.scalar is not None:
        assert res.result_type == "scalar", f"expected scalar, got {res.result_type}"
        assert almost_equal(case.scalar, res.scalar), f"expected scalar {case.scalar} but got {res.scalar}"
    else:
        assert res.result_type == "vector", f"expected vector, got {res.result_type}"
        _compare_vector(case, [(s.labels, float(s.values[0])) for s in res.series], case.ordered)
    # promqltest re-runs instant queries as a range query around t and checks the middle step.
    if case.ordered or _QUERY_CONTEXT_FUNCS.search(query):
        return
    rres = engine.range(query, t - 60_000, t + 60_000, 60_000)
    point = []
    for s in rres.series:
        hit = np.flatnonzero(s.timestamps_ms == t)
        if hit.size:
            point.append((s.labels, float(s.values[hit[0]])))
    if case.scalar is not None:
        assert point and almost_equal(case.scalar, point[0][1]), (
            f"range mode: expected {case.scalar}, got {point}"
        )
    else:
        try:
            _compare_vector(case, point, False)
        except AssertionError as exc:
            raise AssertionError(f"range mode: {exc}") from exc
