"""Shortcuts of the engine answer as the general paths do: topk over ranges, one-series groups."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from metricsflow.promql import Engine, MemorySource

MIN = 60_000
_values = st.sampled_from([1.0, 2.0, 2.0, 3.0, -1.0, float("nan"), float("inf"), float("-inf"), None])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_values, min_size=6, max_size=6), min_size=1, max_size=9),
       st.sampled_from(["topk", "bottomk"]), st.integers(1, 6), st.booleans())
def test_range_selection_equals_instant_selection(rows: list[list[float | None]], op: str, k: int,
                                                  grouped: bool) -> None:
    src = MemorySource()
    for i, row in enumerate(rows):
        present = [(j * MIN, v) for j, v in enumerate(row) if v is not None]  # None: no sample, an absent cell
        if present:
            ts, vals = zip(*present, strict=True)
            src.add({"__name__": "m", "i": str(i), "g": str(i % 2)}, list(ts), list(vals))
    query = f"{op} by (g) ({k}, m)" if grouped else f"{op}({k}, m)"
    ranged = Engine(src, lookback_ms=30_000).range(query, 0, 5 * MIN, MIN)
    for j in range(6):
        at = Engine(src, lookback_ms=30_000).instant(query, j * MIN)
        want = sorted(s.labels["i"] for s in at.series)
        got = sorted(s.labels["i"] for s in ranged.series if j * MIN in s.timestamps_ms.tolist())
        assert got == want, (j, query)
        for s in ranged.series:
            hit = np.flatnonzero(s.timestamps_ms == j * MIN)
            if hit.size:
                inst = next(x for x in at.series if x.labels == s.labels)
                np.testing.assert_array_equal(s.values[hit], inst.values)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.just(-0.0), min_size=1, max_size=6),
       st.sampled_from(["sum", "avg"]))
def test_one_series_groups_aggregate_like_larger_groups(values: list[float], op: str) -> None:
    src = MemorySource()
    for i, v in enumerate(values):
        src.add({"__name__": "m", "i": str(i), "pair": "p"}, [0], [v])
        src.add({"__name__": "z", "i": str(i), "pair": "p"}, [0], [0.0])
    alone = Engine(src).instant(f"{op} by (i) (m)", 0).to_json_data()
    # Paired with a zero series in the same group, the general path runs; for sum, v + 0 is the answer.
    if op == "sum":
        paired = Engine(src).instant(f"{op} by (i) ({{__name__=~'m|z'}})", 0).to_json_data()
        assert alone == paired
    texts = [s["value"][1] for s in alone["result"]]
    assert "-0" not in texts  # Prometheus' zero compensation turns -0 into 0
    assert len(texts) == len(values)


_sum_values = (st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e100, -1e100, 1e-300, 3.0, -0.0])
               | st.integers(-10**6, 10**6).map(float))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.lists(st.none() | _sum_values, min_size=3, max_size=3)),
                min_size=1, max_size=12), st.sampled_from(["sum", "avg"]))
def test_sum_and_avg_in_numpy_equal_the_rank_by_rank_steps(rows: list[tuple[int, list[float | None]]],
                                                           op: str) -> None:
    from metricsflow.promql import aggregate as agg
    from metricsflow.promql.values import InstantVec

    fast, steps = (agg._sum, agg._sum_by_rank) if op == "sum" else (agg._avg, agg._avg_by_rank)

    labels = [(("g", str(g)), ("i", str(i))) for i, (g, _) in enumerate(rows)]
    values = np.array([[0.0 if v is None else v for v in row] for _, row in rows])
    present = np.array([[v is not None for v in row] for _, row in rows])
    vec = InstantVec(labels, values, present)
    gr = agg.group_rows(vec.labels, ["g"], None)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        got, got_seen = fast(vec, gr, len(gr.labels))
        want, want_seen = steps(vec, gr, len(gr.labels))
    np.testing.assert_array_equal(got_seen, want_seen)
    # Bit for bit where present (NaN payloads aside), including the sign of zero.
    got, want = got[want_seen], want[want_seen]
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    assert got[ok].tobytes() == want[ok].tobytes()
