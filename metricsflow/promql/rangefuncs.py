"""Functions over range vectors (``rate(x[5m])``, ``*_over_time``...), all steps at once.

Every function receives the flat samples of a ``RangeVec`` and, for each series
and step, the window ``[lo, hi)`` of sample indices (samples with
``end - range < t <= end``). They return ``(values, present)`` of shape (n, T).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import kahan
from .errors import PromQLExecutionError
from .values import RangeVec
from .windows import per_window, reduceat, search, sliding

Result = tuple[np.ndarray, np.ndarray]


@dataclass(slots=True)
class Windows:
    rv: RangeVec
    lo: np.ndarray  # (n, T) first sample index (global)
    hi: np.ndarray  # (n, T) one past the last sample index
    ends: np.ndarray  # (T,) window end (eval time - offset)
    range_ms: int
    step_times: np.ndarray  # (T,) evaluation timestamps
    _buckets: tuple[np.ndarray, int] | bool | None = False  # False: not looked at yet

    @property
    def count(self) -> np.ndarray:
        return self.hi - self.lo

    def buckets(self) -> tuple[np.ndarray, int] | None:
        """(bounds, R) when every window is R consecutive one-step buckets, else None.

        ``bounds[i, j]`` is the first sample of series i after grid time j; window k is
        buckets k..k+R-1. Dashboards (``avg_over_time(x[1h])`` at a 60 s step) overlap
        each sample 60 times; reducing each bucket once and combining buckets costs
        O(samples + windows * log R) instead of O(windows * samples per window).
        """
        if self._buckets is False:
            self._buckets = self._find_buckets()
        return self._buckets  # type: ignore[return-value]

    def _find_buckets(self) -> tuple[np.ndarray, int] | None:
        steps = self.ends.size
        if steps < 2 or self.lo.shape[0] == 0:
            return None
        step = int(self.ends[1] - self.ends[0])
        if step <= 0 or self.range_ms % step or self.range_ms // step < SLIDE_MIN_BUCKETS:
            return None
        if not bool((np.diff(self.ends) == step).all()):
            return None
        width = self.range_ms // step
        grid = self.ends[0] - self.range_ms + step * np.arange(steps + width, dtype=np.int64)
        bounds = search(self.rv.ts, self.rv.offsets, grid, "right", self.rv.common_grid())
        # The same searches as the windows' own: anything else would change the answer.
        if not (np.array_equal(bounds[:, :steps], self.lo) and np.array_equal(bounds[:, width:], self.hi)):
            return None
        return bounds, width


# Below this many buckets per window, a direct reduction per window is as cheap.
SLIDE_MIN_BUCKETS = 8


def windowed(w: Windows, ufunc: np.ufunc, vals: np.ndarray, identity: float) -> np.ndarray:
    """``reduceat(ufunc, vals, w.lo, w.hi)``; via step buckets when the windows allow (``Windows.buckets``)."""
    found = w.buckets()
    if found is None:
        return reduceat(ufunc, vals, w.lo, w.hi)
    bounds, width = found
    lo, hi = bounds[:, :-1], bounds[:, 1:]
    per_bucket = np.where(hi > lo, reduceat(ufunc, vals, lo, hi), identity)
    return sliding(ufunc, per_bucket, width)


def _prev_within_series(w: Windows) -> tuple[np.ndarray, np.ndarray]:
    v = w.rv.vals
    prev = np.empty_like(v)
    if v.size:
        prev[1:] = v[:-1]
        prev[0] = v[0]
    starts = w.rv.offsets[:-1][np.diff(w.rv.offsets) > 0]
    first = np.zeros(v.size, dtype=bool)
    first[starts] = True
    return prev, first


def _fell(w: Windows) -> np.ndarray:
    """Per sample, whether it is below the sample before it in its series (a counter reset; NaN never is).

    One comparison of neighbours, not ``_prev_within_series``' four passes, which took a third
    of ``rate`` on a query without resets (nearly every one; perf/RESULTS.md, "Seals between cuts, …").
    """
    v = w.rv.vals
    fell = np.zeros(v.size, dtype=bool)
    if v.size > 1:
        np.less(v[1:], v[:-1], out=fell[1:])
        starts = w.rv.offsets[1:-1]
        fell[starts[(starts > 0) & (starts < v.size)]] = False  # a series' first sample follows another series
    return fell


def _counter_drops(w: Windows) -> np.ndarray | None:
    """Per sample, the value before it where a counter reset there, else 0; None if none did."""
    at = np.flatnonzero(_fell(w))
    if not at.size:
        return None
    v = w.rv.vals
    drop = np.zeros(v.size)
    drop[at] = v[at - 1]
    return drop


def extrapolated_rate(w: Windows, is_counter: bool, is_rate: bool) -> Result:
    """Prometheus' extrapolatedRate for float samples (rate, increase, delta)."""
    ts, v = w.rv.ts, w.rv.vals
    cnt = w.count
    ok = cnt >= 2
    f = np.where(ok, w.lo, 0)
    last = np.where(ok, w.hi - 1, 0)
    if v.size == 0:
        return np.zeros(cnt.shape), np.zeros(cnt.shape, dtype=bool)
    # Series that share their timestamps share every window's times too: those passes run on one row.
    rows = slice(0, 1) if w.rv.common_grid() is not None else slice(None)
    first_t, last_t = ts[f[rows]], ts[last[rows]]
    first_v, last_v = v[f], v[last]
    # The same IEEE operations as Prometheus' extrapolatedRate, in place where a temporary is ours:
    # on (series x steps) matrices every pass saved is ~40 µs per 36,000 cells.
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        result = last_v - first_v
        if is_counter:
            drop = _counter_drops(w)
            if drop is not None:
                corr = reduceat(np.add, drop, np.where(ok, w.lo + 1, 0), np.where(ok, w.hi, 0))
                result += np.where(ok, corr, 0.0)
            else:  # no reset anywhere (the usual case): the correction is 0 in every window
                result += 0.0  # as adding it would (-0 becomes 0)
        dur_start = np.subtract(first_t, (w.ends - w.range_ms)[None, :], dtype=np.float64)
        dur_start /= 1000.0
        dur_end = np.subtract(w.ends[None, :], last_t, dtype=np.float64)
        dur_end /= 1000.0
        sampled = np.subtract(last_t, first_t, dtype=np.float64)
        sampled /= 1000.0
        avg = sampled / np.maximum(cnt[rows] - 1, 1)
        threshold = avg * 1.1
        avg /= 2
        np.copyto(dur_start, avg, where=dur_start >= threshold)
        if is_counter:
            to_zero = first_v / result
            to_zero *= sampled
            fits = (result > 0) & (first_v >= 0)
            fits &= to_zero < dur_start
            dur_start = np.where(fits, to_zero, dur_start)
        np.copyto(dur_end, avg, where=dur_end >= threshold)
        factor = sampled + dur_start
        factor += dur_end
        factor /= sampled
        np.copyto(factor, 1.0, where=sampled == 0)
        if is_rate:
            factor /= w.range_ms / 1000.0
        result *= factor
    return result, ok


def instant_value(w: Windows, is_rate: bool) -> Result:
    """irate / idelta: the last two samples of each window."""
    ts, v = w.rv.ts, w.rv.vals
    ok = w.count >= 2
    if v.size == 0:
        return np.zeros(ok.shape), ok
    b = np.where(ok, w.hi - 1, 0)
    a = np.where(ok, w.hi - 2, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if is_rate:
            res = np.where(v[b] < v[a], v[b], v[b] - v[a]) / ((ts[b] - ts[a]) / 1000.0)
        else:
            res = v[b] - v[a]
    return res, ok


def _pair_count(w: Windows, flags: np.ndarray) -> Result:
    """Count flagged consecutive pairs inside each window (resets, changes)."""
    cs = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
    ok = w.count >= 1
    lo1 = np.minimum(w.lo + 1, w.hi)
    res = np.where(ok, cs[w.hi] - cs[lo1], 0).astype(np.float64)
    return res, ok


def resets(w: Windows) -> Result:
    return _pair_count(w, _fell(w))


def changes(w: Windows) -> Result:
    v = w.rv.vals
    prev, first = _prev_within_series(w)
    changed = (v != prev) & ~(np.isnan(v) & np.isnan(prev)) & ~first
    return _pair_count(w, changed)


def _kahan_sum(w: Windows) -> np.ndarray:
    """Windowed sums, Kahan-compensated like Prometheus where plain summation could lose digits.

    A plain ``reduceat`` sum is exact to ~n*eps*sum|x|; only windows where that bound
    is not negligible against the result (cancellation, e.g. 1, 1e100, 1, -1e100)
    are recomputed with a Neumaier loop over the gathered window.
    """
    v = w.rv.vals
    with np.errstate(invalid="ignore", over="ignore"):
        plain = windowed(w, np.add, v, 0.0)
        # Values of one sign cannot cancel: the magnitude is the sum itself (gauges, counters).
        one_sign = bool((v >= 0).all() or (v <= 0).all())
        mag = np.abs(plain) if one_sign else windowed(w, np.add, np.abs(v), 0.0)
        cnt = w.count
        risky = (cnt > 1) & np.isfinite(plain) & (cnt * 2.3e-16 * mag > 1e-13 * np.abs(plain))
    if not risky.any():
        return plain
    lo = np.where(risky, w.lo, 0)
    hi = np.where(risky, w.hi, 0)

    def fn(cells: np.ndarray, idx: np.ndarray, mask: np.ndarray, n: np.ndarray) -> np.ndarray:
        W = v[idx]
        total, comp = np.zeros(W.shape[0]), np.zeros(W.shape[0])
        for j in range(W.shape[1]):
            t, c = kahan.inc(W[:, j], total, comp)
            total = np.where(mask[:, j], t, total)
            comp = np.where(mask[:, j], c, comp)
        with np.errstate(invalid="ignore"):
            return np.where(np.isinf(total), total, total + comp)

    fixed = per_window(lo, hi, fn)
    return np.where(risky, fixed, plain)


def sum_over_time(w: Windows) -> Result:
    return _kahan_sum(w), w.count > 0


def avg_over_time(w: Windows) -> Result:
    cnt = w.count
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        total = _kahan_sum(w)
        res = total / cnt
        # The direct sum overflowed although the inputs are finite: fall back to a
        # running mean for those windows only (as Prometheus switches to one).
        bad = np.isinf(res) & (cnt > 0)
        if bad.any():
            for i, j in zip(*np.nonzero(bad), strict=True):
                xs = w.rv.vals[w.lo[i, j] : w.hi[i, j]]
                if np.isinf(xs).any():
                    continue
                res[i, j] = float(np.sum(xs / len(xs)))
    return res, cnt > 0


def min_over_time(w: Windows) -> Result:
    return windowed(w, np.fmin, w.rv.vals, np.nan), w.count > 0


def max_over_time(w: Windows) -> Result:
    return windowed(w, np.fmax, w.rv.vals, np.nan), w.count > 0


def count_over_time(w: Windows) -> Result:
    cnt = w.count
    return cnt.astype(np.float64), cnt > 0


def last_over_time(w: Windows) -> Result:
    ok = w.count > 0
    v = w.rv.vals
    if v.size == 0:
        return np.zeros(ok.shape), ok
    return v[np.where(ok, w.hi - 1, 0)], ok


def first_over_time(w: Windows) -> Result:
    ok = w.count > 0
    v = w.rv.vals
    if v.size == 0:
        return np.zeros(ok.shape), ok
    return v[np.where(ok, w.lo, 0)], ok


def ts_of_last_over_time(w: Windows) -> Result:
    ok = w.count > 0
    if w.rv.ts.size == 0:
        return np.zeros(ok.shape), ok
    return w.rv.ts[np.where(ok, w.hi - 1, 0)] / 1000.0, ok


def ts_of_first_over_time(w: Windows) -> Result:
    ok = w.count > 0
    if w.rv.ts.size == 0:
        return np.zeros(ok.shape), ok
    return w.rv.ts[np.where(ok, w.lo, 0)] / 1000.0, ok


def present_over_time(w: Windows) -> Result:
    ok = w.count > 0
    return np.ones(ok.shape), ok


def _ts_of_extreme(w: Windows, pick_max: bool) -> Result:
    v, ts = w.rv.vals, w.rv.ts

    def fn(cells: np.ndarray, idx: np.ndarray, mask: np.ndarray, cnt: np.ndarray) -> np.ndarray:
        W = v[idx]
        best = W[:, 0].copy()
        best_t = ts[idx[:, 0]].astype(np.float64)
        for j in range(1, idx.shape[1]):
            x = W[:, j]
            better = (x > best) if pick_max else (x < best)
            take = mask[:, j] & (better | np.isnan(best))
            best = np.where(take, x, best)
            best_t = np.where(take, ts[idx[:, j]], best_t)
        return best_t / 1000.0

    return per_window(w.lo, w.hi, fn), w.count > 0


def ts_of_max_over_time(w: Windows) -> Result:
    return _ts_of_extreme(w, True)


def ts_of_min_over_time(w: Windows) -> Result:
    return _ts_of_extreme(w, False)


# Above this many samples in all windows together, variance uses windowed sums instead of
# Prometheus' per-sample Welford loop (which costs a numpy pass per window column).
WELFORD_MAX_CELLS = 2_000_000


def _variance_by_sums(w: Windows) -> np.ndarray:
    """Variance from windowed sums of values shifted by each series' first sample.

    The shift keeps the classic cancellation of E[x^2] - E[x]^2 small for monitoring data;
    windows whose values are all equal are exactly 0, as with Welford.
    """
    v = w.rv.vals
    lengths = np.diff(w.rv.offsets)
    firsts = np.repeat(v[w.rv.offsets[:-1][lengths > 0]], lengths[lengths > 0])
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        d = v - np.where(np.isfinite(firsts), firsts, 0.0)
        s1 = windowed(w, np.add, d, 0.0)
        s2 = windowed(w, np.add, d * d, 0.0)
        n = w.count
        var = np.maximum((s2 - s1 * s1 / n) / n, 0.0)
        same = windowed(w, np.fmin, v, np.nan) == windowed(w, np.fmax, v, np.nan)
        var = np.where(same & np.isfinite(var), 0.0, var)
        return np.where(np.isnan(s1) | np.isnan(s2), np.nan, var)


def _variance(w: Windows) -> np.ndarray:
    v = w.rv.vals
    if int(np.maximum(w.count, 0).sum()) > WELFORD_MAX_CELLS:
        return _variance_by_sums(w)

    def fn(cells: np.ndarray, idx: np.ndarray, mask: np.ndarray, cnt: np.ndarray) -> np.ndarray:
        # Welford with Kahan-compensated accumulators, column by column, as Prometheus does.
        W = v[idx]
        k = W.shape[0]
        count = np.zeros(k)
        mean, c_mean = np.zeros(k), np.zeros(k)
        aux, c_aux = np.zeros(k), np.zeros(k)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            for j in range(W.shape[1]):
                m = mask[:, j]
                x = W[:, j]
                count2 = count + 1
                delta = x - (mean + c_mean)
                mean2, c_mean2 = kahan.inc(delta / count2, mean, c_mean)
                aux2, c_aux2 = kahan.inc(delta * (x - (mean2 + c_mean2)), aux, c_aux)
                count = np.where(m, count2, count)
                mean, c_mean = np.where(m, mean2, mean), np.where(m, c_mean2, c_mean)
                aux, c_aux = np.where(m, aux2, aux), np.where(m, c_aux2, c_aux)
            return (aux + c_aux) / count

    return per_window(w.lo, w.hi, fn)


def stdvar_over_time(w: Windows) -> Result:
    return _variance(w), w.count > 0


def stddev_over_time(w: Windows) -> Result:
    with np.errstate(invalid="ignore"):
        return np.sqrt(_variance(w)), w.count > 0


def sorted_quantile(S: np.ndarray, n: np.ndarray, nan_count: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Prometheus' quantile() on rows of ``S`` (ascending, NaN/padding last).

    NaN inputs sort first in Prometheus, so the virtual sorted row is ``nan_count``
    NaNs followed by the ``n - nan_count`` real values at the start of ``S``.
    """
    with np.errstate(invalid="ignore"):
        nf = n.astype(np.float64)
        rank = q * (nf - 1)
        lower = np.maximum(0, np.floor(rank))
        upper = np.minimum(nf - 1, lower + 1)
        weight = rank - np.floor(rank)

        def at(j: np.ndarray) -> np.ndarray:
            ji = np.nan_to_num(j, nan=0.0).astype(np.int64)
            real = ji - nan_count
            got = np.take_along_axis(S, np.clip(real, 0, S.shape[1] - 1)[:, None], axis=1)[:, 0]
            return np.where(real < 0, np.nan, got)

        res = at(lower) * (1 - weight) + at(upper) * weight
        res = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, res))
        return np.where(np.isnan(q) | (n == 0), np.nan, res)


def quantile_over_time(w: Windows, q: np.ndarray) -> Result:
    v = w.rv.vals
    qcell = np.broadcast_to(q[None, :], w.lo.shape).ravel()

    def fn(cells: np.ndarray, idx: np.ndarray, mask: np.ndarray, cnt: np.ndarray) -> np.ndarray:
        W = np.where(mask, v[idx], np.nan)
        nan_count = (np.isnan(W) & mask).sum(axis=1)
        return sorted_quantile(np.sort(W, axis=1), cnt, nan_count, qcell[cells])

    return per_window(w.lo, w.hi, fn), w.count > 0


def mad_over_time(w: Windows) -> Result:
    v = w.rv.vals
    half = np.array(0.5)

    def fn(cells: np.ndarray, idx: np.ndarray, mask: np.ndarray, cnt: np.ndarray) -> np.ndarray:
        W = np.where(mask, v[idx], np.nan)
        has_nan = (np.isnan(W) & mask).any(axis=1)  # a NaN sample makes the median undefined
        zero = np.zeros(cnt.shape, dtype=np.int64)
        q = np.broadcast_to(half, cnt.shape)
        med = sorted_quantile(np.sort(W, axis=1), cnt, zero, q)
        D = np.where(mask, np.abs(W - med[:, None]), np.nan)
        res = sorted_quantile(np.sort(D, axis=1), cnt, zero, q)
        return np.where(has_nan, np.nan, res)

    return per_window(w.lo, w.hi, fn), w.count > 0


def double_exponential_smoothing(w: Windows, sf: np.ndarray, tf: np.ndarray) -> Result:
    v = w.rv.vals
    bad_sf = (sf <= 0) | (sf >= 1) | np.isnan(sf)
    bad_tf = (tf <= 0) | (tf >= 1) | np.isnan(tf)
    if bad_sf.any():
        raise PromQLExecutionError(f"invalid smoothing factor. Expected: 0 < sf < 1, got: {sf[bad_sf][0]:f}")
    if bad_tf.any():
        raise PromQLExecutionError(f"invalid trend factor. Expected: 0 < tf < 1, got: {tf[bad_tf][0]:f}")
    sf_cell = np.broadcast_to(sf[None, :], w.lo.shape).ravel()
    tf_cell = np.broadcast_to(tf[None, :], w.lo.shape).ravel()

    def fn(cells: np.ndarray, idx: np.ndarray, mask: np.ndarray, cnt: np.ndarray) -> np.ndarray:
        W = v[idx]
        a, t = sf_cell[cells], tf_cell[cells]
        s0 = np.zeros(W.shape[0])
        s1 = W[:, 0].copy()
        b = W[:, 1] - W[:, 0] if W.shape[1] > 1 else np.zeros(W.shape[0])
        with np.errstate(all="ignore"):
            for i in range(1, W.shape[1]):
                m = mask[:, i]
                x = a * W[:, i]
                b2 = b if i == 1 else t * (s1 - s0) + (1 - t) * b
                y = (1 - a) * (s1 + b2)
                s0, s1, b = np.where(m, s1, s0), np.where(m, x + y, s1), np.where(m, b2, b)
        return s1

    return per_window(w.lo, w.hi, fn), w.count >= 2


def _regression(w: Windows, intercept_at: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Least squares per window; intercept at the first sample (deriv) or eval time."""
    v, ts = w.rv.vals, w.rv.ts
    t_cell = None if intercept_at is None else np.broadcast_to(intercept_at[None, :], w.lo.shape).ravel()
    slopes = np.full(w.lo.size, np.nan)
    inters = np.full(w.lo.size, np.nan)
    from .windows import gather_blocks

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for cells, idx, mask, cnt in gather_blocks(w.lo, w.hi):
            W = v[idx]
            base = ts[idx[:, 0]] if t_cell is None else t_cell[cells]
            X = np.where(mask, (ts[idx] - base[:, None]) / 1000.0, 0.0)
            Y = np.where(mask, W, 0.0)
            n = cnt.astype(np.float64)
            sx, sy = X.sum(axis=1), Y.sum(axis=1)
            sxy, sx2 = (X * Y).sum(axis=1), (X * X).sum(axis=1)
            cov = sxy - sx * sy / n
            var = sx2 - sx * sx / n
            slope = cov / var
            inter = sy / n - slope * sx / n
            first = W[:, 0]
            const = np.all(~mask | (W == first[:, None]), axis=1)
            slope = np.where(const, np.where(np.isinf(first), np.nan, 0.0), slope)
            inter = np.where(const, np.where(np.isinf(first), np.nan, first), inter)
            slopes[cells], inters[cells] = slope, inter
    return slopes.reshape(w.lo.shape), inters.reshape(w.lo.shape)


def deriv(w: Windows) -> Result:
    slope, _ = _regression(w, None)
    return slope, w.count >= 2


def predict_linear(w: Windows, duration_s: np.ndarray) -> Result:
    slope, inter = _regression(w, w.step_times)
    with np.errstate(invalid="ignore", over="ignore"):
        return slope * duration_s[None, :] + inter, w.count >= 2


SIMPLE: dict[str, Callable[[Windows], Result]] = {
    "rate": lambda w: extrapolated_rate(w, True, True),
    "increase": lambda w: extrapolated_rate(w, True, False),
    "delta": lambda w: extrapolated_rate(w, False, False),
    "irate": lambda w: instant_value(w, True),
    "idelta": lambda w: instant_value(w, False),
    "resets": resets,
    "changes": changes,
    "deriv": deriv,
    "sum_over_time": sum_over_time,
    "avg_over_time": avg_over_time,
    "min_over_time": min_over_time,
    "max_over_time": max_over_time,
    "count_over_time": count_over_time,
    "last_over_time": last_over_time,
    "first_over_time": first_over_time,
    "present_over_time": present_over_time,
    "stddev_over_time": stddev_over_time,
    "stdvar_over_time": stdvar_over_time,
    "mad_over_time": mad_over_time,
    "ts_of_last_over_time": ts_of_last_over_time,
    "ts_of_first_over_time": ts_of_first_over_time,
    "ts_of_max_over_time": ts_of_max_over_time,
    "ts_of_min_over_time": ts_of_min_over_time,
}

# last/first_over_time act like an offset and keep the metric name (Prometheus engine.go).
KEEPS_NAME = {"last_over_time", "first_over_time"}
