"""Rollups: deterministic, counter-aware, mergeable; sketches merge within 1% rank error."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from metricsflow import rollup, sketch


def raw_increase(vals: np.ndarray) -> float:
    d = np.diff(vals)
    return float(np.where(d >= 0, d, vals[1:]).sum())


counters = st.lists(st.tuples(st.integers(1, 30_000), st.floats(0, 1000), st.booleans()), min_size=1, max_size=300)


@settings(max_examples=150, deadline=None)
@given(counters, st.sampled_from([60_000, 3_600_000]))
def test_counter_increase_on_rollups_equals_raw_increase(steps: list[tuple[int, float, bool]], window: int) -> None:
    ts = np.cumsum([s[0] for s in steps]).astype(np.int64)
    vals, v = [], 0.0
    for _, inc, reset in steps:
        v = inc if reset else v + inc
        vals.append(v)
    vals = np.array(vals)
    r = rollup.compute(ts, vals, window)
    assert np.isclose(rollup.counter_increase(r).sum(), raw_increase(vals), rtol=1e-9, atol=1e-6)
    assert (rollup.counter_increase(r) >= 0).all()
    coarse = rollup.coarsen(rollup.compute(ts, vals, 60_000), 3_600_000)
    assert np.isclose(rollup.counter_increase(coarse).sum(), raw_increase(vals), rtol=1e-9, atol=1e-6)
    assert r.count.sum() == ts.size and np.isclose(r.sum.sum(), vals.sum())


def test_rollups_are_deterministic_bytes_and_round_trip() -> None:
    rng = np.random.default_rng(3)
    ts = np.arange(0, 7_200_000, 10_000, dtype=np.int64)
    vals = np.round(rng.normal(50, 5, ts.size), 2)
    vals[7] = np.nan  # NaN (and stale markers) do not enter aggregates
    a = rollup.encode(rollup.compute(ts, vals, 60_000))
    b = rollup.encode(rollup.compute(ts.copy(), vals.copy(), 60_000))
    assert a == b
    r = rollup.decode(a, 60_000)
    assert len(r) == 120 and r.count[0] == 6 and r.count[1] == 5
    np.testing.assert_allclose(r.sum / r.count, [np.nanmean(vals[i * 6:(i + 1) * 6]) for i in range(120)])
    h = rollup.coarsen(r, 3_600_000)
    assert h.starts.tolist() == [0, 3_600_000] and h.min[0] == np.nanmin(vals[:360])


def test_merging_sixty_minute_digests_matches_one_hour_digest_p99_within_1pct_rank() -> None:
    rng = np.random.default_rng(7)
    obs = rng.lognormal(3, 1.2, 60 * 2000)
    ts = np.arange(obs.size, dtype=np.int64) * (3_600_000 // obs.size)
    minutes = rollup.compute(ts, obs, 60_000, distribution=True)
    merged = sketch.merge(minutes.digests)
    whole = sketch.build(obs)
    for q in (0.5, 0.99, 0.999):
        rank_merged = (obs < merged.quantile(q)).mean()
        rank_whole = (obs < whole.quantile(q)).mean()
        assert abs(rank_merged - rank_whole) / q < 0.01, q
        assert abs(rank_merged - q) / q < 0.01, q
    hour = rollup.coarsen(minutes, 3_600_000)
    assert hour.digests is not None and abs(hour.digests[0].quantile(0.99) - merged.quantile(0.99)) < 1e-9
    again = sketch.Digest.from_bytes(merged.to_bytes())
    assert again.quantile(0.99) == merged.quantile(0.99)
