"""RE2 (Go) regular expressions run on Python's ``re``, anchored like Prometheus.

Prometheus compiles matchers as ``^(?s:<re>)$``. Python's ``re`` differs from RE2
in a few places that appear in real queries: inline flags in the middle of a
pattern (``.*((?i)DUC).*``, Prometheus issue 7994), POSIX classes and ``\\z``.
We translate those; RE2 features Python lacks (``\\p{..}`` classes, ``(?U)``)
raise ``PromQLUnsupported`` instead of silently matching something else.
"""

from __future__ import annotations

import functools
import re

from .errors import PromQLParseError, PromQLUnsupported

_POSIX = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7F",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1F\\x7F",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_FLAGS = re.compile(r"\(\?([imsU-]+)\)")
_META = frozenset(".^$*+?{}[]\\|()")  # outside these, an RE2 pattern's characters match themselves


def _translate(pat: str) -> str:
    out: list[str] = []
    # Each open group records how many flag-groups we opened inside it, to close them with it.
    stack: list[int] = [0]
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        if c == "\\":
            nxt = pat[i + 1] if i + 1 < n else ""
            if nxt in ("p", "P"):
                raise PromQLUnsupported(f"regex unicode class \\{nxt} is not supported: {pat!r}")
            if nxt == "z":
                out.append("\\Z")
            elif nxt == "Q":
                end = pat.find("\\E", i + 2)
                lit = pat[i + 2 :] if end < 0 else pat[i + 2 : end]
                out.append(re.escape(lit))
                i = n if end < 0 else end + 2
                continue
            else:
                out.append(pat[i : i + 2])
            i += 2
            continue
        if c == "[":
            j = i + 1
            buf = ["["]
            if j < n and pat[j] == "^":
                buf.append("^")
                j += 1
            if j < n and pat[j] == "]":
                buf.append("\\]")
                j += 1
            while j < n and pat[j] != "]":
                if pat.startswith("[:", j):
                    end = pat.find(":]", j + 2)
                    name = pat[j + 2 : end] if end > 0 else ""
                    neg = name.startswith("^")
                    cls = _POSIX.get(name.lstrip("^"))
                    if cls is None or neg:
                        raise PromQLUnsupported(f"regex class [:{name}:] is not supported: {pat!r}")
                    buf.append(cls)
                    j = end + 2
                    continue
                if pat[j] == "\\":
                    if pat[j + 1 : j + 2] in ("p", "P"):
                        raise PromQLUnsupported(f"regex unicode class is not supported: {pat!r}")
                    buf.append(pat[j : j + 2])
                    j += 2
                    continue
                if pat[j] == "[":
                    buf.append("\\[")
                    j += 1
                    continue
                buf.append(pat[j])
                j += 1
            buf.append("]")
            out.append("".join(buf))
            i = j + 1
            continue
        if c == "(":
            m = _FLAGS.match(pat, i)
            if m:
                flags = m.group(1)
                if "U" in flags:
                    raise PromQLUnsupported(f"regex flag U is not supported: {pat!r}")
                # RE2 applies a bare (?i) to the rest of the enclosing group; Python needs a scoped group.
                out.append(f"(?{flags}:")
                stack[-1] += 1
                i = m.end()
                continue
            if pat.startswith("(?<", i) and not pat.startswith("(?<=", i) and not pat.startswith("(?<!", i):
                out.append("(?P<")
                i += 3
                stack.append(0)
                continue
            out.append("(")
            stack.append(0)
            i += 1
            continue
        if c == ")":
            out.append(")" * stack.pop() if len(stack) > 1 else "")
            out.append(")")
            i += 1
            continue
        if c == "$":
            out.append("\\Z")
            i += 1
            continue
        out.append(c)
        i += 1
    out.append(")" * stack[0])
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def compile_anchored(pattern: str) -> re.Pattern[str]:
    """Compile a PromQL regex; use ``fullmatch`` on the result."""
    try:
        return re.compile("(?s:" + _translate(pattern) + ")")
    except re.error as exc:
        raise PromQLParseError(f"invalid regular expression {pattern!r}: {exc}") from None
    except (RecursionError, OverflowError) as exc:
        raise PromQLParseError(f"invalid regular expression {pattern!r}: {exc}") from None


@functools.lru_cache(maxsize=1024)
def literal_alternatives(pattern: str) -> frozenset[str] | None:
    """The strings an anchored ``pattern`` matches when it is plain text or alternatives of it
    (``a|b|c``, as dashboards' variables write it), else None: a label index can look them up."""
    alternatives = pattern.split("|")
    if any(c in _META for a in alternatives for c in a):
        return None
    return frozenset(alternatives)
