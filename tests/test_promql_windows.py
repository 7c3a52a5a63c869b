"""Windowed reductions by step buckets answer like one reduction per window."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricsflow.promql import Engine, MemorySource, rangefuncs
from metricsflow.promql.source import clip_range
from metricsflow.promql.values import RangeVec
from metricsflow.promql.windows import sliding

MIN = 60_000


@given(st.lists(st.lists(st.floats(-1e6, 1e6) | st.just(float("nan")), min_size=1, max_size=40), min_size=1,
                max_size=4).filter(lambda rows: len({len(r) for r in rows}) == 1),
       st.integers(1, 40), st.sampled_from([np.add, np.fmin, np.fmax]))
def test_sliding_equals_a_reduction_per_window(rows: list[list[float]], width: int, ufunc: np.ufunc) -> None:
    x = np.array(rows)
    if width > x.shape[1]:
        return
    got = sliding(ufunc, x, width)
    want = np.array([[ufunc.reduce(r[k:k + width]) for k in range(x.shape[1] - width + 1)] for r in x])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-6, equal_nan=True)


def _source(rng: np.random.Generator, special: bool) -> MemorySource:
    src = MemorySource()
    for i in range(6):
        n = int(rng.integers(0, 400))
        # Irregular, sometimes sparse sampling: some buckets empty, some with several samples.
        ts = np.unique(rng.integers(0, 200 * MIN, size=n)) // 1000 * 1000
        vals = rng.normal(50, 20, ts.size)
        if special and ts.size:
            vals[rng.integers(0, ts.size, size=3)] = rng.choice([np.nan, np.inf, -np.inf, 1e300], size=3)
        src.add({"__name__": "m", "i": str(i)}, ts, vals)
    return src


@pytest.mark.parametrize("func", ["sum_over_time", "avg_over_time", "min_over_time", "max_over_time",
                                  "stddev_over_time", "count_over_time"])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), special=st.booleans(), rng_steps=st.sampled_from([8, 10, 16, 60]),
       step_s=st.sampled_from([15, 60, 120]))
def test_bucketed_windows_answer_like_direct_reductions(func: str, seed: int, special: bool, rng_steps: int,
                                                        step_s: int) -> None:
    rng = np.random.default_rng(seed)
    src = _source(rng, special)
    query = f"{func}(m[{rng_steps * step_s}s])"
    start, end, step = int(rng.integers(0, 60)) * MIN, 200 * MIN, step_s * 1000
    bucketed = Engine(src).range(query, start, end, step)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rangefuncs, "SLIDE_MIN_BUCKETS", 10**9)
        direct = Engine(src).range(query, start, end, step)
    assert [s.labels for s in bucketed.series] == [s.labels for s in direct.series]
    for b, d in zip(bucketed.series, direct.series, strict=True):
        np.testing.assert_array_equal(b.timestamps_ms, d.timestamps_ms)
        np.testing.assert_allclose(b.values, d.values, rtol=1e-9, atol=1e-9, equal_nan=True)


def test_bucketed_windows_are_used_for_dashboard_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    src = _source(np.random.default_rng(3), False)
    calls = []
    real = rangefuncs.Windows._find_buckets

    def spy(self: rangefuncs.Windows) -> object:
        found = real(self)
        calls.append(found is not None)
        return found

    monkeypatch.setattr(rangefuncs.Windows, "_find_buckets", spy)
    Engine(src).range("avg_over_time(m[1h])", 0, 200 * MIN, MIN)
    Engine(src).range("avg_over_time(m[5m])", 0, 200 * MIN, MIN)  # five buckets: direct
    assert calls == [True, False]


@given(st.lists(st.lists(st.integers(0, 50), max_size=8), max_size=6), st.integers(-5, 55), st.integers(-5, 55))
@settings(max_examples=200, deadline=None)
def test_clip_range_equals_a_clip_per_series(rows: list[list[int]], a: int, b: int) -> None:
    series = [np.unique(np.array(r, dtype=np.int64)) for r in rows]
    offsets = np.zeros(len(series) + 1, dtype=np.intp)
    np.cumsum([s.size for s in series], out=offsets[1:])
    flat = np.concatenate(series) if series else np.zeros(0, np.int64)
    labels = [(("i", str(i)),) for i in range(len(series))]
    start, end = min(a, b), max(a, b)
    got = clip_range(RangeVec(labels, flat, flat * 0.5, offsets), start, end)
    assert got.labels == labels
    for i, s in enumerate(series):
        want = s[(s >= start) & (s <= end)]
        lo, hi = got.offsets[i], got.offsets[i + 1]
        assert got.ts[lo:hi].tolist() == want.tolist()
        assert got.vals[lo:hi].tolist() == (want * 0.5).tolist()


def _prometheus_rate(ts: list[int], vals: list[float], t: int, range_ms: int, counter: bool,
                     rate: bool) -> float | None:
    """Prometheus' extrapolatedRate for floats, one window at a time, as its Go source reads."""
    start = t - range_ms
    window = [(s, v) for s, v in zip(ts, vals, strict=True) if start < s <= t]
    if len(window) < 2:
        return None
    (first_t, first_v), (last_t, last_v) = window[0], window[-1]
    result = last_v - first_v
    if counter:
        prev = first_v
        for _, v in window[1:]:
            if v < prev:
                result += prev
            prev = v
    to_start = (first_t - start) / 1000
    to_end = (t - last_t) / 1000
    sampled = (last_t - first_t) / 1000
    avg = sampled / (len(window) - 1)
    if to_start >= avg * 1.1:
        to_start = avg / 2
    if counter and result > 0 and first_v >= 0:
        to_start = min(to_start, sampled * (first_v / result))
    if to_end >= avg * 1.1:
        to_end = avg / 2
    factor = (sampled + to_start + to_end) / sampled
    if rate:
        factor /= range_ms / 1000
    return result * factor


@given(st.lists(st.tuples(st.integers(1, 30), st.integers(-3, 40)), min_size=1, max_size=40),
       st.sampled_from([("rate", True, True), ("increase", True, False), ("delta", False, False)]),
       st.integers(1, 6))
@settings(max_examples=150, deadline=None)
def test_rate_increase_delta_equal_prometheus_window_by_window(steps: list[tuple[int, int]],
                                                              func: tuple[str, bool, bool], minutes: int) -> None:
    """Counters with resets, irregular scrapes, windows with 0, 1 and many samples."""
    ts = np.cumsum([gap * 5_000 for gap, _ in steps]).astype(np.int64)
    vals = np.array([float(v) for _, v in steps])
    src = MemorySource()
    src.add({"__name__": "c", "a": "1"}, ts, vals)
    name, counter, rate = func
    range_ms = minutes * 60_000
    res = Engine(src).range(f"{name}(c[{minutes}m])", 0, int(ts[-1]) + 60_000, 15_000)
    got = {int(t): float(v) for s in res.series for t, v in zip(s.timestamps_ms, s.values, strict=True)}
    for t in range(0, int(ts[-1]) + 60_001, 15_000):
        want = _prometheus_rate(ts.tolist(), vals.tolist(), t, range_ms, counter, rate)
        if want is None:
            assert t not in got
        else:
            assert got[t] == pytest.approx(want, rel=1e-12, abs=1e-12), t
