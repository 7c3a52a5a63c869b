"""Split evaluation: merge(partials of a disjoint split) answers like one engine over the union."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metricsflow.model import STALE_NAN
from metricsflow.promql import Engine, MemorySource, PromQLError, PromQLExecutionError, PromQLParseError, QueryResult
from metricsflow.promql.pushdown import plan

MIN = 60_000
T0 = 3_600_000  # data covers [0, 1 h)

# (query, exact): exact means bit-equal values, not only within float tolerance.
QUERIES: list[tuple[str, bool]] = [
    ("sum(rate(x[5m]))", False),
    ("sum by (a) (rate(x[5m]))", False),
    ("avg by (a) (irate(x[2m]))", False),
    ("sum without (b) (increase(x[10m]))", False),
    ("min by (a) (y)", True),
    ("max without (b) (max_over_time(y[5m]))", True),
    ("count by (a) (y > 0.5)", True),
    ("group by (a) (y)", True),
    ("count(count_over_time(y[3m]))", True),
    ("stddev by (a) (y)", False),
    ("stdvar(avg_over_time(y[5m]))", False),
    ("topk(2, y)", True),
    ("bottomk by (a) (1, rate(x[5m]))", True),
    ("topk(3, sum by (a) (y))", False),
    ("avg(y * 2 + 1)", False),
    ("sum(abs(y - 0.5) > bool 0.2)", False),
    ("max(sum by (a) (x))", False),
    ("sum(rate(x[5m])) / sum(rate(x[10m]))", False),
    ("sum by (a) (y) - on (a) max by (a) (y)", False),
    ("sum(min_over_time(y[5m] offset 2m))", False),
    ("sum(y @ start())", False),
    ("rate(x[5m])", True),
    ("clamp_max(y, 0.7)", True),
    ("round(y, 0.1) >= 0.5", True),
    ("last_over_time(y[5m])", True),
    ("y", True),
    ("-y", True),
    ("quantile(0.9, rate(x[5m]))", True),
    ("quantile by (a) (0.5, y)", True),
    ("count_values(\"v\", round(y))", True),
    ("rate(x[5m]) / on (a, b) y", True),
    ("y and on (a) (y > 0.5)", True),
    ("absent(nope)", True),
    ("absent_over_time(y[5m])", True),
    ("timestamp(y)", True),
    ("label_replace(y, \"c\", \"$1\", \"b\", \"(.).*\")", True),
    ("sort_desc(sum by (a) (y))", False),
    ("scalar(sum(y))", False),
    ("vector(1) + sum(y)", False),
    ("max_over_time(sum(y)[10m:1m])", False),
    ("sum({__name__=~\"x|y\"})", False),
    ("rate({__name__=~\"x|y\"}[5m])", True),
    ("sum(rate({__name__=~\"x|y\"}[5m]))", False),
    ("histogram_quantile(0.9, sum by (le) (rate(h[5m])))", False),
    ("time()", True),
]


def _build(seed: int, n_series: int, shards: int) -> tuple[MemorySource, list[MemorySource]]:
    rng = np.random.default_rng(seed)
    full = MemorySource()
    parts = [MemorySource() for _ in range(shards)]
    grid = np.arange(0, T0, 15_000, dtype=np.int64)
    for i in range(n_series):
        name = ("x", "y", "h")[i % 3]
        labels = {"__name__": name, "a": str(rng.integers(0, 3)), "b": str(i)}
        if name == "h":
            labels["le"] = ("0.1", "1", "+Inf")[i % 3]
        keep = rng.random(grid.size) < rng.uniform(0.3, 1.0)
        ts = grid[keep]
        if name in ("x", "h"):
            vals = np.cumsum(rng.exponential(2.0, ts.size))
            resets = rng.random(ts.size) < 0.02
            vals = np.where(resets, rng.random(ts.size), vals)
        else:
            vals = rng.random(ts.size)
            vals[rng.random(ts.size) < 0.01] = STALE_NAN
        full.add(labels, ts, vals)
        parts[int(rng.integers(0, shards))].add(labels, ts, vals)
    return full, parts


def _engine(full: MemorySource, query: str, start: int, end: int, step: int) -> QueryResult | PromQLError:
    try:
        if step == 0:
            return Engine(full).instant(query, start)
        return Engine(full).range(query, start, end, step)
    except PromQLError as exc:
        return exc


def _split(parts: list[MemorySource], query: str, start: int, end: int, step: int) -> QueryResult | PromQLError:
    try:
        p = plan(query)
        return p.merge([p.evaluate_partial(s, start, end, step) for s in parts], start, end, step)
    except PromQLError as exc:
        return exc


def _assert_same(got: QueryResult | PromQLError, want: QueryResult | PromQLError, exact: bool) -> None:
    if isinstance(want, PromQLError) or isinstance(got, PromQLError):
        assert type(got) is type(want) and str(got) == str(want), (got, want)
        return
    assert got.result_type == want.result_type
    if want.result_type == "scalar":
        np.testing.assert_allclose(got.scalar, want.scalar, rtol=1e-9, equal_nan=True)
        return
    key = lambda s: sorted(s.labels.items())  # noqa: E731 - row order is only defined for sort/topk
    g, w = sorted(got.series, key=key), sorted(want.series, key=key)
    assert [s.labels for s in g] == [s.labels for s in w]
    for a, b in zip(g, w, strict=True):
        np.testing.assert_array_equal(a.timestamps_ms, b.timestamps_ms)
        if exact:
            np.testing.assert_array_equal(a.values, b.values)
        else:
            np.testing.assert_allclose(a.values, b.values, rtol=1e-9, atol=1e-9, equal_nan=True)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_series=st.integers(0, 30),
    shards=st.integers(1, 4),
    case=st.sampled_from(QUERIES),
    instant=st.booleans(),
    start_min=st.integers(0, 60),
    span_min=st.integers(0, 30),
    step_s=st.sampled_from([15, 30, 60, 300]),
)
def test_merge_of_partials_equals_engine_over_union(
    seed: int, n_series: int, shards: int, case: tuple[str, bool], instant: bool, start_min: int, span_min: int,
    step_s: int,
) -> None:
    query, exact = case
    full, parts = _build(seed, n_series, shards)
    start = start_min * MIN
    end, step = (start, 0) if instant else (start + span_min * MIN, step_s * 1000)
    _assert_same(_split(parts, query, start, end, step), _engine(full, query, start, end, step), exact)


@pytest.mark.parametrize(("query", "exact"), QUERIES)
def test_every_query_on_a_fixed_split(query: str, exact: bool) -> None:
    full, parts = _build(7, 30, 3)
    for start, end, step in ((40 * MIN, 40 * MIN, 0), (20 * MIN, 59 * MIN, 60_000)):
        _assert_same(_split(parts, query, start, end, step), _engine(full, query, start, end, step), exact)


@pytest.mark.parametrize(
    ("query", "pushed"),
    [
        ("sum(rate(x[5m]))", 1),
        ("max(sum by (a) (x))", 1),
        ("sum(x) / count(x)", 2),
        ("quantile(0.9, rate(x[5m]))", 1),  # the rate rows are pushed, the quantile is merged
        ("rate({__name__=~\"x|y\"}[5m])", 0),  # rate may make names collide: raw samples
        ("max_over_time(sum(x)[10m:1m])", 0),  # subqueries read raw samples
        ("x[5m]", 0),
        ("timestamp({__name__=~\"x|y\"})", 0),
        ("vector(1)", 0),
    ],
)
def test_what_is_pushed(query: str, pushed: int) -> None:
    assert plan(query).pushed == pushed


def test_partial_of_an_aggregate_is_much_smaller_than_the_raw_selection() -> None:
    src = MemorySource()
    ts = np.arange(0, 6 * 3_600_000, 15_000, dtype=np.int64)
    for i in range(100):
        src.add({"__name__": "x", "host": f"h{i}"}, ts, np.arange(ts.size, dtype=np.float64) * (i + 1))
    p = plan("sum(rate(x[5m]))")
    start, end, step = 3_600_000, 6 * 3_600_000 - 1, 60_000
    partial = p.evaluate_partial(src, start, end, step)
    sels = p.selections(start, end, step)
    raw_bytes = sum(16 * s.timestamps_ms.size for m, lo, hi in sels for s in src.select(m, lo, hi))
    assert len(partial) * 100 < raw_bytes, (len(partial), raw_bytes)
    got = p.merge([partial], start, end, step)
    want = Engine(src).range("sum(rate(x[5m]))", start, end, step)
    np.testing.assert_allclose(got.series[0].values, want.series[0].values, rtol=1e-12)


def test_a_series_answered_by_two_owners_counts_once_in_series_local_results() -> None:
    full, parts = _build(3, 12, 2)
    p = plan("y")
    partials = [p.evaluate_partial(s, 30 * MIN, 30 * MIN, 0) for s in (*parts, parts[0])]
    _assert_same(p.merge(partials, 30 * MIN, 30 * MIN, 0), Engine(full).instant("y", 30 * MIN), True)


def test_selections_cover_what_the_engine_reads() -> None:
    p = plan("sum(rate(x[5m] offset 1m)) + max_over_time(y[10m:1m])")
    sels = p.selections(10 * MIN, 20 * MIN, MIN)
    by_name = {m[0].value: (lo, hi) for m, lo, hi in sels}
    assert by_name["x"] == (10 * MIN - MIN - 5 * MIN + 1, 20 * MIN - MIN)
    assert by_name["y"][1] == 20 * MIN


def test_unreadable_or_mismatched_partials_are_errors() -> None:
    p = plan("sum(y)")
    with pytest.raises(PromQLExecutionError, match="cannot read query partial"):
        p.merge([b"nonsense"], 0, 0, 0)
    other = plan("sum(y) + sum(x)").evaluate_partial(MemorySource(), 0, 0, 0)
    with pytest.raises(PromQLExecutionError, match="parts"):
        p.merge([other], 0, 0, 0)


def test_plan_raises_the_engines_parse_error() -> None:
    with pytest.raises(PromQLParseError):
        plan("sum(")


def test_range_checks_apply_to_partials() -> None:
    with pytest.raises(PromQLParseError, match="end timestamp"):
        plan("y").evaluate_partial(MemorySource(), 10, 0, 1)


def test_avg_whose_sum_overflows_matches_the_engines_incremental_mean() -> None:
    full, parts = MemorySource(), [MemorySource(), MemorySource()]
    for i, v in enumerate((1.5e308, 1.7e308, 1.6e308)):
        labels = {"__name__": "big", "i": str(i)}
        full.add(labels, [0], [v])
        parts[i % 2].add(labels, [0], [v])
    _assert_same(_split(parts, "avg(big)", 0, 0, 0), _engine(full, "avg(big)", 0, 0, 0), False)
