"""Number formatting exactly as Prometheus writes it.

Sample values use ``jsonutil.MarshalFloat``: Go's shortest ``'f'`` format, except
``'e'`` below 1e-6 and from 1e21 on; ``+Inf``/``-Inf``/``NaN`` spelled out. Python's
``repr`` gives the same shortest digits, only the notation needs fixing.
"""

from __future__ import annotations

import math

import numpy as np
import orjson


def _positional(r: str) -> str:
    """Turn Python's shortest repr (maybe with exponent) into plain positional digits."""
    if "e" not in r:
        return r[:-2] if r.endswith(".0") else r
    mant, exp_s = r.split("e")
    exp = int(exp_s)
    sign = ""
    if mant.startswith("-"):
        sign, mant = "-", mant[1:]
    intpart, _, frac = mant.partition(".")
    digits = intpart + frac
    point = len(intpart) + exp
    if point <= 0:
        s = "0." + "0" * (-point) + digits
    elif point >= len(digits):
        s = digits + "0" * (point - len(digits))
    else:
        s = digits[:point] + "." + digits[point:]
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return sign + s


def format_go_f(v: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)`` (used for count_values labels)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return _positional(repr(v))


def format_value(v: float) -> str:
    """Prometheus API sample value string."""
    if v != v:
        return "NaN"
    if v in (math.inf, -math.inf):
        return "+Inf" if v > 0 else "-Inf"
    a = abs(v)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        r = repr(v)
        if "e" not in r:  # repr switched notation at a different threshold
            r = f"{v:e}"
            r = repr(float(r))
        mant, exp = r.split("e")
        if mant.endswith(".0"):
            mant = mant[:-2]
        sign = exp[0] if exp[0] in "+-" else "+"
        digits = exp.lstrip("+-")
        return f"{mant}e{sign}{digits.zfill(2)}"
    return _positional(repr(v))


def format_timestamp(t_ms: int) -> float | int:
    """Unix seconds as Prometheus writes them: an integer when whole, else millisecond decimals."""
    return t_ms // 1000 if t_ms % 1000 == 0 else t_ms / 1000


def _shortest_texts_repr(arr: np.ndarray, strip_whole: bool) -> list[str]:
    texts = list(map(repr, arr.tolist()))
    return [t[:-2] if t.endswith(".0") else t for t in texts] if strip_whole else texts


def _shortest_texts_orjson(arr: np.ndarray, strip_whole: bool) -> list[str]:
    # orjson writes float64 arrays with Ryu-style shortest digits, ~4x faster than repr;
    # non-finite values come out as null, which the caller replaces anyway.
    text = orjson.dumps(np.ascontiguousarray(arr, dtype=np.float64), option=orjson.OPT_SERIALIZE_NUMPY).decode()
    if not strip_whole:
        return text[1:-1].split(",")
    # Shortest digits end in ".0" only for whole numbers: one pass over the text.
    texts = text[1:-1].replace(".0,", ",").split(",")
    if texts[-1].endswith(".0"):
        texts[-1] = texts[-1][:-2]
    return texts


def _orjson_agrees() -> bool:
    """orjson's digits must equal repr's in the range format_values does not fix up."""
    probe = np.array([0.1, 1 / 3, 2 / 3, 47.382910293841, 1e-4, 1.5e-4, 123456.7, 2.0**53, 9.999999999999998e15,
                      -0.0, 5.0, 1234567890.125, 0.30000000000000004, 7.5e-4 / 7, 10.0, 0.0])
    try:
        return all(_shortest_texts_orjson(probe, strip) == _shortest_texts_repr(probe, strip)
                   for strip in (False, True))
    except (TypeError, orjson.JSONEncodeError):
        return False


_shortest_texts = _shortest_texts_orjson if _orjson_agrees() else _shortest_texts_repr


def format_values(arr: np.ndarray) -> list[str]:
    """``format_value`` for a whole array: shortest digits in one C call, fix-ups only where needed."""
    if arr.size == 0:
        return []
    with np.errstate(invalid="ignore"):
        a = np.abs(arr)
        finite = np.isfinite(arr)
        # Non-finite values and the ranges where repr's notation differs from Go's.
        special = ~finite | ((a != 0) & ((a < 1e-4) | (a >= 1e16)))
        whole = np.flatnonzero(finite & ~special & (arr == np.trunc(arr)))
    # Go writes whole numbers without ".0": a pass over the text costs about a fifth of
    # stripping each one in Python (0.1 µs), so it is taken when a fifth or more are whole
    # (format_values of 360,000 integers: ~100 → ~50 ms).
    strip_whole = 5 * whole.size >= arr.size
    out = _shortest_texts(arr, strip_whole)
    if not strip_whole:
        for i in whole.tolist():
            out[i] = out[i][:-2]  # "12.0" -> "12"
    if special.any():
        vals = arr.tolist()
        for i in np.flatnonzero(special).tolist():
            out[i] = format_value(vals[i])
    return out


def format_timestamps(ts_ms: np.ndarray) -> list[float | int]:
    whole = ts_ms % 1000 == 0
    secs = (ts_ms // 1000).tolist()
    frac = (ts_ms / 1000).tolist()
    return [s if w else f for s, w, f in zip(secs, whole.tolist(), frac, strict=True)]


def timestamp_text(t_ms: int) -> str:
    """``jsonutil.MarshalTimestamp``: seconds, then ``.`` and exactly three digits if needed."""
    sign = "-" if t_ms < 0 else ""
    t = -t_ms if t_ms < 0 else t_ms
    sec, frac = divmod(t, 1000)
    return f"{sign}{sec}.{frac:03d}" if frac else f"{sign}{sec}"
