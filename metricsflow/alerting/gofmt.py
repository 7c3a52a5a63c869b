"""Go's text formatting of values, as Prometheus' templates and JSON APIs print them.

Go and Python agree on ``%g``/``%e``/``%f`` for finite floats (both keep at least two
exponent digits) but differ on infinities and NaN and on the "shortest" forms Go uses
for ``%v`` and ``strconv.FormatFloat(f, 'e', -1, 64)``; those are written out here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from metricsflow.promql.labels import go_quote

__all__ = [
    "format_float_e_shortest",
    "format_float_g_shortest",
    "format_rfc3339_ms",
    "go_print",
    "go_type_name",
    "printf_float",
    "sprintf",
]


def _special(v: float) -> str | None:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return None


def _shortest_digits(v: float) -> tuple[str, int]:
    """Shortest round-tripping digits of ``abs(v)`` and the decimal exponent of the first digit."""
    if v == 0:
        return "0", 0
    # Python's repr is the shortest round-tripping form, like Go's precision -1.
    t = Decimal(repr(abs(v))).normalize().as_tuple()
    digits = "".join(map(str, t.digits))
    return digits, int(t.exponent) + len(digits) - 1


def format_float_e_shortest(v: float) -> str:
    """``strconv.FormatFloat(v, 'e', -1, 64)``: Prometheus' alert ``value`` string ("1e+00")."""
    sp = _special(v)
    if sp is not None:
        return sp
    digits, exp = _shortest_digits(v)
    sign = "-" if math.copysign(1.0, v) < 0 else ""
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def format_float_g_shortest(v: float) -> str:
    """``strconv.FormatFloat(v, 'g', -1, 64)``, which is also fmt's ``%v`` for a float64."""
    sp = _special(v)
    if sp is not None:
        return sp
    digits, exp = _shortest_digits(v)
    # strconv/ftoa.go: with the shortest precision the %e/%f decision uses eprec = 6,
    # which is why Go prints 1e+06 but 123456.
    if exp < -4 or exp >= 6:
        return format_float_e_shortest(v)
    sign = "-" if math.copysign(1.0, v) < 0 else ""
    if exp >= 0:
        if len(digits) <= exp + 1:
            return sign + digits + "0" * (exp + 1 - len(digits))
        return sign + digits[: exp + 1] + "." + digits[exp + 1 :]
    return sign + "0." + "0" * (-exp - 1) + digits


def printf_float(v: float, spec: str) -> str:
    """A float through a printf spec such as ``.4g``, with Go's spelling of Inf and NaN."""
    sp = _special(v)
    if sp is not None:
        return sp  # Go prints +Inf / -Inf / NaN for %g, %f and %e alike
    return format(v, spec)


def go_type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Mapping):
        return "map[string]string"
    if isinstance(v, Sequence):
        return "[]interface {}"
    if v is None:
        return "<nil>"
    return type(v).__name__


def go_print(v: Any) -> str:
    """fmt.Sprint of one value, the way ``{{ x }}`` prints it."""
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return format_float_g_shortest(v)
    if isinstance(v, int | str):
        return str(v)
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{k}:{go_print(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list | tuple):
        return "[" + " ".join(go_print(x) for x in v) + "]"
    return str(v)




def _bad_verb(verb: str, arg: Any) -> str:
    return f"%!{verb}({go_type_name(arg)}={go_print(arg)})"


def _format_one(flags: str, width: str, prec: str | None, verb: str, arg: Any) -> str:
    spec_prec = f".{prec}" if prec is not None else ""
    if verb == "v":
        body = go_print(arg)
    elif verb == "s":
        if isinstance(arg, str):
            body = arg if prec is None else arg[: int(prec or 0)]
        elif isinstance(arg, Mapping | list | tuple):
            body = go_print(arg)
        else:
            return _bad_verb(verb, arg)
    elif verb == "q":
        if not isinstance(arg, str):
            return _bad_verb(verb, arg)
        body = go_quote(arg)
    elif verb in "dxXob":
        if isinstance(arg, bool) or not isinstance(arg, int):
            if verb in "xX" and isinstance(arg, str):
                body = arg.encode().hex()
                body = body.upper() if verb == "X" else body
            else:
                return _bad_verb(verb, arg)
        else:
            body = format(arg, {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}[verb])
            if "+" in flags and arg >= 0 and verb == "d":
                body = "+" + body
    elif verb in "feEgG":
        if isinstance(arg, bool) or not isinstance(arg, int | float):
            return _bad_verb(verb, arg)
        if isinstance(arg, int):
            return _bad_verb(verb, arg)
        if prec is None and verb in "gG":
            body = format_float_g_shortest(arg)
            if verb == "G":
                body = body.upper().replace("INF", "Inf").replace("NAN", "NaN")
        else:
            body = printf_float(arg, ("+" if "+" in flags else "") + (spec_prec or ".6") + verb)
    elif verb == "t":
        if not isinstance(arg, bool):
            return _bad_verb(verb, arg)
        body = "true" if arg else "false"
    else:
        return f"%!{verb}({go_type_name(arg)}={go_print(arg)})"
    if width:
        w = int(width)
        if "-" in flags:
            body = body.ljust(w)
        elif "0" in flags and verb in "dfeEgGxX" and not body.startswith(("+Inf", "-Inf", "NaN")):
            sign = body[0] if body[:1] in "+-" else ""
            body = sign + body[len(sign) :].rjust(w - len(sign), "0")
        else:
            body = body.rjust(w)
    return body


def sprintf(fmt: str, args: Sequence[Any]) -> str:
    """A subset of Go's fmt.Sprintf: verbs v s q d x X o b f F e E g G t %%, flags, width, precision.

    Mismatches print the way Go prints them (``%!d(float64=1.5)``, ``%!d(MISSING)``,
    ``%!(EXTRA string=x)``) instead of raising.
    """
    out: list[str] = []
    i, n, argi = 0, len(fmt), 0
    while i < n:
        ch = fmt[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        i += 1
        if i >= n:
            out.append("%!(NOVERB)")
            break
        flags = ""
        while i < n and fmt[i] in "+-# 0":
            flags += fmt[i]
            i += 1
        width = ""
        while i < n and fmt[i].isdigit():
            width += fmt[i]
            i += 1
        prec: str | None = None
        if i < n and fmt[i] == ".":
            i += 1
            prec = ""
            while i < n and fmt[i].isdigit():
                prec += fmt[i]
                i += 1
            prec = prec or "0"
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if verb == "F":
            verb = "f"
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        out.append(_format_one(flags, width, prec, verb, args[argi]))
        argi += 1
    if argi < len(args):
        extra = ", ".join(f"{go_type_name(a)}={go_print(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def format_rfc3339_ms(time_ms: int) -> str:
    """Go's time.Time JSON encoding (RFC 3339, UTC, trailing zeros trimmed); 0 is Go's zero time."""
    if time_ms == 0:
        return "0001-01-01T00:00:00Z"
    secs, ms = divmod(time_ms, 1000)
    base = datetime.fromtimestamp(secs, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if ms:
        base += "." + f"{ms:03d}".rstrip("0")
    return base + "Z"
