"""Functions over instant vectors and scalars (abs, round, label_replace, histogram_quantile...)."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from . import labels as L
from .errors import PromQLExecutionError
from .labels import Labels
from .regex import compile_anchored
from .values import InstantVec, Scalar, merge_same_labels


def _deg(x: np.ndarray) -> np.ndarray:
    return x * (180 / np.pi)


def _rad(x: np.ndarray) -> np.ndarray:
    return x * (np.pi / 180)


def _sgn(x: np.ndarray) -> np.ndarray:
    return np.where(x < 0, -1.0, np.where(x > 0, 1.0, x))


MATH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "ln": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sgn": _sgn,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "asinh": np.arcsinh,
    "acosh": np.arccosh,
    "atanh": np.arctanh,
    "deg": _deg,
    "rad": _rad,
}


def math_fn(name: str, vec: InstantVec) -> InstantVec:
    with np.errstate(all="ignore"):
        vals = MATH[name](vec.values)
    return merge_same_labels(InstantVec([L.drop_name(lb) for lb in vec.labels], vals, vec.present.copy()))


def round_fn(vec: InstantVec, to_nearest: np.ndarray | None) -> InstantVec:
    with np.errstate(all="ignore"):
        inv = 1.0 / (to_nearest[None, :] if to_nearest is not None else 1.0)
        vals = np.floor(vec.values * inv + 0.5) / inv
    return merge_same_labels(InstantVec([L.drop_name(lb) for lb in vec.labels], vals, vec.present.copy()))


def clamp(vec: InstantVec, lo: np.ndarray, hi: np.ndarray) -> InstantVec:
    with np.errstate(all="ignore"):
        vals = np.maximum(lo[None, :], np.minimum(hi[None, :], vec.values))
    pres = vec.present & ~(hi < lo)[None, :]
    out = InstantVec([L.drop_name(lb) for lb in vec.labels], vals, pres)
    return merge_same_labels(out.compact())


def scalar_of(vec: InstantVec, steps: int) -> Scalar:
    cnt = vec.present.sum(axis=0)
    if len(vec) == 0:
        return Scalar(np.full(steps, np.nan))
    first = np.argmax(vec.present, axis=0)
    vals = vec.values[first, np.arange(steps)]
    return Scalar(np.where(cnt == 1, vals, np.nan))


def sort_rows(vec: InstantVec, desc: bool, steps: int) -> InstantVec:
    if steps != 1:
        return vec  # range results are ordered by labels anyway
    v = vec.values[:, 0]
    isnan = np.isnan(v)
    key = np.where(isnan, 0.0, -v if desc else v)
    order = np.lexsort((key, isnan))
    out = vec.take(order)
    out.ordered = True
    return out


def _natural_key(s: str) -> list[tuple[int, int | str]]:
    return [(0, int(tok)) if tok.isdigit() else (1, tok) for tok in re.findall(r"\d+|\D+", s)]


def sort_by_label(vec: InstantVec, names: list[str], desc: bool, steps: int) -> InstantVec:
    if steps != 1:
        return vec
    order = sorted(
        range(len(vec)),
        key=lambda i: ([_natural_key(L.get(vec.labels[i], n)) for n in names], vec.labels[i]),
        reverse=desc,
    )
    out = vec.take(order)
    out.ordered = True
    return out


def timestamp_fn(vec: InstantVec, sample_ts: np.ndarray | None, times: np.ndarray) -> InstantVec:
    src = sample_ts if sample_ts is not None else np.broadcast_to(times[None, :], vec.values.shape)
    vals = src / 1000.0
    return merge_same_labels(InstantVec([L.drop_name(lb) for lb in vec.labels], vals, vec.present.copy()))


_DATE: dict[str, Callable[[np.ndarray], np.ndarray]] = {}


def date_fn(name: str, vec: InstantVec | None, times: np.ndarray) -> InstantVec:
    if vec is None:
        vec = InstantVec([()], (times / 1000.0)[None, :], np.ones((1, times.size), dtype=bool))
        drop = False
    else:
        drop = True
    v = vec.values
    finite = np.isfinite(v) & (np.abs(v) < 2.5e11)
    secs = np.where(finite, np.trunc(np.where(finite, v, 0)), 0).astype(np.int64)
    d = secs.astype("datetime64[s]")
    day = d.astype("datetime64[D]")
    month = d.astype("datetime64[M]")
    year = d.astype("datetime64[Y]")
    if name == "year":
        res = year.astype(np.int64) + 1970
    elif name == "month":
        res = (month - year).astype(np.int64) + 1
    elif name == "day_of_month":
        res = (day - month).astype(np.int64) + 1
    elif name == "day_of_year":
        res = (day - year).astype(np.int64) + 1
    elif name == "day_of_week":
        res = (day.astype(np.int64) + 4) % 7  # 1970-01-01 was a Thursday
    elif name == "days_in_month":
        res = ((month + 1).astype("datetime64[D]") - month.astype("datetime64[D]")).astype(np.int64)
    elif name == "hour":
        res = (d - day).astype(np.int64) // 3600
    elif name == "minute":
        res = ((d - day).astype(np.int64) // 60) % 60
    else:
        raise KeyError(name)
    vals = np.where(finite, res.astype(np.float64), np.nan)
    lbls = [L.drop_name(lb) for lb in vec.labels] if drop else list(vec.labels)
    return merge_same_labels(InstantVec(lbls, vals, vec.present.copy()))


_EXPAND = re.compile(r"\$(\$|\{([A-Za-z0-9_]*)\}|([A-Za-z0-9_]+))")


def _expand(template: str, m: re.Match[str]) -> str:
    """Go's ``Regexp.ExpandString``: ``$1x`` names group "1x"; unknown groups expand to ""."""

    def repl(mm: re.Match[str]) -> str:
        if mm.group(1) == "$":
            return "$"
        name = mm.group(2) if mm.group(2) is not None else mm.group(3)
        if mm.group(2) is not None and name == "":
            return mm.group(0)
        if name.isdigit():
            i = int(name)
            return (m.group(i) or "") if i <= (m.re.groups or 0) else ""
        try:
            return m.group(name) or ""
        except IndexError:
            return ""

    return _EXPAND.sub(repl, template)


def label_replace(vec: InstantVec, dst: str, repl: str, src: str, regex: str) -> InstantVec:
    try:
        rx = compile_anchored(regex)
    except Exception as exc:
        raise PromQLExecutionError(f"invalid regular expression in label_replace(): {regex}") from exc
    if not dst or not _valid_utf8(dst):
        raise PromQLExecutionError(f"invalid destination label name in label_replace(): {dst}")
    out: list[Labels] = []
    for lb in vec.labels:
        m = rx.fullmatch(L.get(lb, src))
        out.append(L.with_label(lb, dst, _expand(repl, m)) if m else lb)
    return merge_same_labels(InstantVec(out, vec.values, vec.present, vec.ordered))


def _valid_utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def label_join(vec: InstantVec, dst: str, sep: str, srcs: list[str]) -> InstantVec:
    for s in srcs:
        if not _valid_utf8(s):
            raise PromQLExecutionError(f"invalid source label name in label_join(): {s}")
    if not dst or not _valid_utf8(dst):
        raise PromQLExecutionError(f"invalid destination label name in label_join(): {dst}")
    out = [L.with_label(lb, dst, sep.join(L.get(lb, s) for s in srcs)) for lb in vec.labels]
    return merge_same_labels(InstantVec(out, vec.values, vec.present, vec.ordered))


def absent_labels(matchers: list[tuple[str, str, str]]) -> Labels:
    """Labels of absent(): equality matchers only; a label named twice is dropped."""
    got: dict[str, str] = {}
    has: set[str] = set()
    for name, op, value in matchers:
        if name == L.NAME:
            continue
        if op == "=" and name not in has:
            got[name] = value
            has.add(name)
        else:
            got.pop(name, None)
    return L.from_mapping(got)


def parse_go_float(s: str) -> float | None:
    """strconv.ParseFloat: no surrounding spaces or underscores; accepts inf/nan spellings and hex."""
    if not s or s != s.strip() or "_" in s:
        return None
    try:
        return float(s)
    except ValueError:
        try:
            return float.fromhex(s)
        except ValueError:
            return None


def histogram_quantile(q: np.ndarray, vec: InstantVec) -> InstantVec:
    """Classic ``le`` buckets, following Prometheus' BucketQuantile step by step."""
    T = vec.values.shape[1]
    groups: dict[Labels, list[tuple[float, int]]] = {}
    for i, lb in enumerate(vec.labels):
        le = parse_go_float(L.get(lb, "le"))
        if le is None:
            continue
        key = L.without(lb, ["le"])
        groups.setdefault(key, []).append((le, i))
    out_labels: list[Labels] = []
    out_vals: list[np.ndarray] = []
    out_pres: list[np.ndarray] = []
    for key, buckets in groups.items():
        buckets.sort(key=lambda b: b[0])
        bounds = np.array([b[0] for b in buckets])
        rows = np.array([b[1] for b in buckets], dtype=np.intp)
        pres = vec.present[rows]  # (nb, T)
        counts = vec.values[rows]
        vals = np.full(T, np.nan)
        anyp = pres.any(axis=0)
        # Bucket sets can differ between steps; evaluate each distinct pattern vectorised.
        patterns, inverse = np.unique(pres.T, axis=0, return_inverse=True)
        for pi, pat in enumerate(patterns):
            if not pat.any():
                continue
            cols = np.flatnonzero(inverse.ravel() == pi)
            vals[cols] = _bucket_quantile(q[cols], bounds[pat], counts[pat][:, cols])
        out_labels.append(L.drop_name(key))
        out_vals.append(vals)
        out_pres.append(anyp)
    if not out_labels:
        return InstantVec.empty(T)
    return merge_same_labels(InstantVec(out_labels, np.stack(out_vals), np.stack(out_pres)))


def _almost_equal(a: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    min_normal = np.finfo(np.float64).tiny
    with np.errstate(all="ignore"):
        abs_sum = np.abs(a) + np.abs(b)
        diff = np.abs(a - b)
        small = (a == 0) | (b == 0) | (abs_sum < min_normal)
        rel = diff / np.minimum(abs_sum, np.finfo(np.float64).max)
        return (a == b) | np.where(small, diff < eps * min_normal, rel < eps)


def _bucket_quantile(q: np.ndarray, bounds: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Vectorised BucketQuantile over steps: ``bounds`` (nb,) sorted, ``counts`` (nb, k)."""
    k = counts.shape[1]
    res = np.full(k, np.nan)
    if not np.isinf(bounds[-1]) or bounds[-1] < 0:
        return np.where(q < 0, -np.inf, np.where(q > 1, np.inf, res))
    # Coalesce buckets with equal upper bounds.
    ub, start = np.unique(bounds, return_index=True)
    c = np.add.reduceat(counts, start, axis=0)
    # Ignore tiny float noise, then force monotonicity (Prometheus ensureMonotonicAndIgnoreSmallDeltas).
    prev = c[0].copy()
    for i in range(1, c.shape[0]):
        cur = c[i]
        fix = (cur != prev) & (_almost_equal(prev, cur, 1e-12) | (cur < prev))
        c[i] = np.where(fix, prev, cur)
        prev = c[i]
    nb = c.shape[0]
    with np.errstate(all="ignore"):
        if nb >= 2:
            obs = c[-1]
            rank = q * obs
            ge = c[:-1] >= rank[None, :]
            b = np.where(ge.any(axis=0), np.argmax(ge, axis=0), nb - 1)
            bi = np.minimum(b, nb - 1)
            bucket_end = ub[bi]
            cnt = c[bi, np.arange(k)]
            has_prev = bi > 0
            prev_c = np.where(has_prev, c[np.maximum(bi - 1, 0), np.arange(k)], 0.0)
            bucket_start = np.where(has_prev, ub[np.maximum(bi - 1, 0)], 0.0)
            interp = bucket_start + (bucket_end - bucket_start) * ((rank - prev_c) / (cnt - prev_c))
            val = np.where(b == nb - 1, ub[nb - 2], np.where((b == 0) & (ub[0] <= 0), ub[0], interp))
            res = np.where(obs == 0, np.nan, val)
    res = np.where(np.isnan(q), np.nan, np.where(q < 0, -np.inf, np.where(q > 1, np.inf, res)))
    return res
