"""The function library of alert templates: Go's builtins and Prometheus' helpers.

Each function raises :class:`FuncError` with Go's message on bad input; the template
executor turns that into ``error calling NAME: ...`` as Go's text/template does.
Number formatting follows Go (``%.4g``, ``+Inf``), not Python.

Go builtins: ``and or not len index print printf println eq ne lt le gt ge urlquery
html``. Prometheus: ``humanize humanize1024 humanizeDuration humanizePercentage
humanizeTimestamp toTime title toUpper toLower match reReplaceAll safeHtml stripPort
stripDomain parseDuration query first label value strvalue sortByLabel externalURL
pathPrefix graphLink tableLink args``.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .durations import parse_duration_ms
from .gofmt import go_print, go_type_name, printf_float, sprintf

__all__ = ["FuncError", "QuerySample", "make_funcs", "truth"]

QueryFunc = Callable[[str, int], list[tuple[dict[str, str], float]]]


@dataclass(slots=True)
class QuerySample:
    """A query result element as the ``query`` template function returns it."""

    labels: dict[str, str]
    value: float



class FuncError(Exception):
    """Raised by template functions; becomes "error calling NAME: ..."."""


def truth(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    if isinstance(v, str | Mapping | list | tuple):
        return len(v) > 0
    return True


def _to_float(v: Any) -> float:
    if isinstance(v, bool):
        raise FuncError(f"can't convert {go_type_name(v)} to float")
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            s = v.strip()
            if s != v or not s or "_" in s:
                raise ValueError
            return float(v)
        except ValueError:
            raise FuncError(f'strconv.ParseFloat: parsing "{v}": invalid syntax') from None
    raise FuncError(f"can't convert {go_type_name(v)} to float")


def _g4(v: float) -> str:
    return printf_float(v, ".4g")


def humanize(x: Any) -> str:
    v = _to_float(x)
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    if abs(v) >= 1:
        prefix = ""
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix = p
            v /= 1000
        return _g4(v) + prefix
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return _g4(v) + prefix


def humanize1024(x: Any) -> str:
    v = _to_float(x)
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix = p
        v /= 1024
    return _g4(v) + prefix


def humanize_duration(x: Any) -> str:
    v = _to_float(x)
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    if v == 0:
        return _g4(v) + "s"
    if abs(v) >= 1:
        sign = ""
        if v < 0:
            sign, v = "-", -v
        duration = int(v)
        seconds = duration % 60
        minutes = (duration // 60) % 60
        hours = (duration // 3600) % 24
        days = duration // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return f"{_g4(v)}{prefix}s"


def humanize_percentage(x: Any) -> str:
    return _g4(_to_float(x) * 100) + "%"


def _go_time_string(v: float) -> str:
    nanos = int(v * 1e9)
    secs, ns = divmod(nanos, 1_000_000_000)
    base = datetime.fromtimestamp(secs, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    if ns:
        base += "." + f"{ns:09d}".rstrip("0")
    return base + " +0000 UTC"


def humanize_timestamp(x: Any) -> str:
    v = _to_float(x)
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    return _go_time_string(v)


def to_time(x: Any) -> str:
    v = _to_float(x)
    if math.isnan(v) or math.isinf(v):
        raise FuncError(f"cannot convert {_g4(v)} to time.Time")
    return _go_time_string(v)


def title(s: Any) -> str:
    """Upper-case the first letter of every word, leave the rest (cases.Title with NoLower)."""
    text = str(s)
    out: list[str] = []
    prev_letter = False
    for ch in text:
        is_letter = ch.isalnum() or ch in "_'’"  # Unicode word rules: "foo_bar" is one word
        out.append(ch.upper() if is_letter and not prev_letter else ch)
        prev_letter = is_letter
    return "".join(out)


def _go_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise FuncError(f"error parsing regexp: {exc}: `{pattern}`") from None


def match(pattern: str, text: str) -> bool:
    return _go_regex(pattern).search(text) is not None


def re_replace_all(pattern: str, repl: str, text: str) -> str:
    # Go expands $1 and ${1} / ${name}; translate to Python's \g<...>.
    py_repl = re.sub(r"\$(\{([A-Za-z0-9_]+)\}|([0-9]+|[A-Za-z_][A-Za-z0-9_]*))", lambda m: "\\g<" + (
        m.group(2) or m.group(3)) + ">", repl.replace("\\", "\\\\"))
    try:
        return _go_regex(pattern).sub(py_repl, text)
    except (re.error, IndexError):
        return _go_regex(pattern).sub(repl, text)


def strip_port(host_port: str) -> str:
    if host_port.startswith("["):
        end = host_port.find("]")
        return host_port[1:end] if end > 0 else host_port
    if host_port.count(":") == 1:
        return host_port.split(":", 1)[0]
    return host_port


def strip_domain(host_port: str) -> str:
    host, sep, port = host_port, "", ""
    if host_port.count(":") == 1 and not host_port.startswith("["):
        host, sep, port = host_port.partition(":")
    if re.fullmatch(r"[0-9.]+", host) or host.startswith("["):
        return host_port
    return host.split(".", 1)[0] + sep + port


def parse_duration(s: str) -> float:
    try:
        return parse_duration_ms(s) / 1000
    except ValueError as exc:
        raise FuncError(str(exc)) from None


def _eq(a: Any, *bs: Any) -> bool:
    if not bs:
        raise FuncError("missing argument for comparison")
    for b in bs:
        _comparable(a, b)
        if a == b:
            return True
    return False


def _comparable(a: Any, b: Any) -> None:
    # Go compares only values of the same basic kind: `gt $value 1` (float64 vs int) is an
    # error in Prometheus too; rule authors write `gt $value 1.0`.
    if type(a) is not type(b):
        raise FuncError("incompatible types for comparison")


def _lt(a: Any, b: Any) -> bool:
    _comparable(a, b)
    if isinstance(a, bool | Mapping | list | tuple) or a is None:
        raise FuncError("invalid type for comparison")
    return bool(a < b)


def _index(item: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(item, Mapping):
            item = item.get(k, "")
        elif isinstance(item, list | tuple | str):
            if not isinstance(k, int) or not 0 <= k < len(item):
                raise FuncError(f"error calling index: index out of range: {k}")
            item = item[k]
        else:
            raise FuncError(f"can't index item of type {go_type_name(item)}")
    return item


def _len(item: Any) -> int:
    if isinstance(item, str | Mapping | list | tuple):
        return len(item)
    raise FuncError(f"len of type {go_type_name(item)}")


def _go_sprint(*args: Any) -> str:
    # fmt.Sprint adds spaces between operands when neither is a string.
    out: list[str] = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_print(a))
    return "".join(out)


def _first(v: Any) -> Any:
    if not isinstance(v, list) or not v:
        raise FuncError("first() called on vector with no elements")
    return v[0]


def _label(name: str, s: Any) -> str:
    if not isinstance(s, QuerySample):
        raise FuncError(f"wrong type for value; expected *template.sample; got {go_type_name(s)}")
    return s.labels.get(name, "")


def _value(s: Any) -> float:
    if not isinstance(s, QuerySample):
        raise FuncError(f"wrong type for value; expected *template.sample; got {go_type_name(s)}")
    return s.value


def _strvalue(s: Any) -> str:
    if not isinstance(s, QuerySample):
        raise FuncError(f"wrong type for value; expected *template.sample; got {go_type_name(s)}")
    return s.labels.get("__value__", "")


def _sort_by_label(name: str, v: Any) -> list[QuerySample]:
    if not isinstance(v, list):
        raise FuncError(f"wrong type for value; expected template.queryResult; got {go_type_name(v)}")
    return sorted(v, key=lambda s: s.labels.get(name, ""))


def make_funcs(query: QueryFunc | None, time_ms: int, external_url: str) -> dict[str, Callable[..., Any]]:
    def do_query(q: str) -> list[QuerySample]:
        if query is None:
            raise FuncError("query is not available in this context")
        try:
            return [QuerySample(dict(lbls), float(v)) for lbls, v in query(q, time_ms)]
        except Exception as exc:  # a failing query is shown in the text, like Prometheus does
            raise FuncError(str(exc)) from None

    def path_prefix() -> str:
        return urllib.parse.urlsplit(external_url).path

    return {
        # Go builtins
        "and": lambda *a: None,  # evaluated lazily in _Exec.call
        "or": lambda *a: None,
        "not": lambda a: not truth(a),
        "len": _len,
        "index": _index,
        "print": _go_sprint,
        "printf": lambda fmt, *a: sprintf(fmt, a),
        "println": lambda *a: " ".join(go_print(x) for x in a) + "\n",
        "eq": _eq,
        "ne": lambda a, b: not _eq(a, b),
        "lt": _lt,
        "le": lambda a, b: _lt(a, b) or _eq(a, b),
        "gt": lambda a, b: not (_lt(a, b) or _eq(a, b)),
        "ge": lambda a, b: not _lt(a, b),
        "urlquery": lambda *a: urllib.parse.quote_plus(_go_sprint(*a)),
        "html": lambda *a: _go_sprint(*a).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
        # Prometheus (template/template.go)
        "query": do_query,
        "first": _first,
        "label": _label,
        "value": _value,
        "strvalue": _strvalue,
        "sortByLabel": _sort_by_label,
        "humanize": humanize,
        "humanize1024": humanize1024,
        "humanizeDuration": humanize_duration,
        "humanizePercentage": humanize_percentage,
        "humanizeTimestamp": humanize_timestamp,
        "toTime": to_time,
        "title": title,
        "toUpper": lambda s: str(s).upper(),
        "toLower": lambda s: str(s).lower(),
        "match": match,
        "reReplaceAll": re_replace_all,
        "safeHtml": lambda s: str(s),
        "stripPort": strip_port,
        "stripDomain": strip_domain,
        "parseDuration": parse_duration,
        "externalURL": lambda: external_url,
        "pathPrefix": path_prefix,
        "graphLink": lambda expr: "/graph?g0.expr=" + urllib.parse.quote_plus(expr) + "&g0.tab=0",
        "tableLink": lambda expr: "/graph?g0.expr=" + urllib.parse.quote_plus(expr) + "&g0.tab=1",
        "args": lambda *a: {f"arg{i}": v for i, v in enumerate(a)},
    }
