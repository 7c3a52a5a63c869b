"""Engine behaviour the promqltest scripts do not cover: API shapes, errors, prefetch."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metricsflow.model import STALE_NAN
from metricsflow.promql import (
    Engine,
    Matcher,
    MemorySource,
    PromQLError,
    PromQLExecutionError,
    PromQLParseError,
    PromQLTimeout,
    PromQLUnsupported,
    SelectionSource,
    SeriesSource,
    selections,
)
from metricsflow.promql.format import format_go_f, format_timestamp, format_value, format_values
from metricsflow.promql.result import QueryResult, ResultSeries

MIN = 60_000


def _source() -> MemorySource:
    src = MemorySource()
    ts = np.arange(0, 60 * MIN, 15_000, dtype=np.int64)
    for job in ("api", "web"):
        for inst in ("0", "1", "2"):
            k = int(inst) + 1
            src.add(
                {"__name__": "http_requests_total", "job": job, "instance": inst}, ts, np.arange(ts.size) * k
            )
            src.add({"__name__": "temp", "job": job, "instance": inst}, ts, np.sin(ts / 1e6 + k) * 10 + k)
            for le, frac in (("0.1", 0.3), ("0.5", 0.7), ("+Inf", 1.0)):
                src.add(
                    {"__name__": "lat_bucket", "job": job, "instance": inst, "le": le},
                    ts,
                    np.floor(np.arange(ts.size) * k * frac),
                )
    return src


# -- JSON formatting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.0, "0"),
        (-0.0, "-0"),
        (0.1, "0.1"),
        (100.0, "100"),
        (1e-5, "0.00001"),
        (1e-6, "0.000001"),
        (1.5e-7, "1.5e-07"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1.2345678901234568e17, "123456789012345680"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
        (0.30000000000000004, "0.30000000000000004"),
        (-2.5e-300, "-2.5e-300"),
        (9.98846567431158e307, "9.98846567431158e+307"),
    ],
)
def test_value_formatting_matches_prometheus(value: float, text: str) -> None:
    assert format_value(value) == text


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**18, 10**18).map(float)
                | st.floats(min_value=-1e6, max_value=1e6).map(lambda v: round(v, 3)), max_size=60))
def test_array_formatting_equals_one_by_one(values: list[float]) -> None:
    assert format_values(np.array(values, dtype=np.float64)) == [format_value(v) for v in values]


@given(st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=8), max_size=5),
       st.integers(0, 7))
def test_matrix_bytes_equal_matrix_data(columns: list[list[float]], skip: int) -> None:
    import json

    series = []
    for i, vals in enumerate(columns):
        ts = np.arange(len(vals), dtype=np.int64) * 60_000 + 1_050 + (i == 2) * 7  # series 2 off the grid
        keep = np.arange(len(vals)) != skip  # a gap in the step grid
        series.append(ResultSeries({"i": str(i), "ü": 'q"\\'}, ts[keep], np.array(vals, dtype=np.float64)[keep]))
    res = QueryResult("matrix", series)
    assert json.loads(res.to_json_bytes()) == res.to_json_data()


@given(st.lists(st.lists(st.integers(-3, 40), max_size=12), max_size=5), st.sampled_from([1, 7, 60_000]),
       st.integers(-10**12, 10**12), st.booleans())
def test_step_grid_equals_unique(runs: list[list[int]], step: int, origin: int, jitter: bool) -> None:
    """Grids with gaps, repeats, several series, negative times; one off-grid time forces the sort."""
    from metricsflow.promql.result import step_grid

    ts = np.array([origin + k * step for run in runs for k in sorted(run)], dtype=np.int64)
    if jitter and ts.size:
        ts[-1] += 1
    grid, inverse = step_grid(ts)
    want_grid, want_inverse = np.unique(ts, return_inverse=True)
    assert grid[inverse].tolist() == ts.tolist()
    assert set(want_grid.tolist()) <= set(grid.tolist()) and len(grid) <= 2 * ts.size + 1025
    assert np.all(np.diff(grid) > 0)
    if not (np.diff(grid) == (grid[1] - grid[0] if grid.size > 1 else 0)).all():  # the sorted path
        assert grid.tolist() == want_grid.tolist() and inverse.tolist() == want_inverse.ravel().tolist()


def test_matrix_bytes_are_prometheus_bytes() -> None:
    series = [ResultSeries({"a": "x"}, np.array([1_050, 61_050]), np.array([1.0, 0.5])),
              ResultSeries({"a": "y"}, np.zeros(0, np.int64), np.zeros(0)),
              ResultSeries({"a": "z"}, np.array([61_050]), np.array([np.nan]))]
    assert QueryResult("matrix", series).to_json_bytes() == (
        b'{"resultType":"matrix","result":[{"metric":{"a":"x"},"values":[[1.050,"1"],[61.050,"0.5"]]},'
        b'{"metric":{"a":"y"},"values":[]},{"metric":{"a":"z"},"values":[[61.050,"NaN"]]}]}')
    assert QueryResult("matrix", []).to_json_bytes() == b'{"resultType":"matrix","result":[]}'


def test_matrix_bytes_on_a_whole_second_grid() -> None:
    """Whole-second grids take the joined separators; negative and zero times as Prometheus writes them."""
    series = [ResultSeries({"a": "x"}, np.array([-60_000, 0, 60_000]), np.array([1.0, 2.5, 3.0])),
              ResultSeries({"a": "y"}, np.array([60_000, 1_795_000_020_000]), np.array([4.0, 5.0]))]
    assert QueryResult("matrix", series).to_json_bytes() == (
        b'{"resultType":"matrix","result":[{"metric":{"a":"x"},"values":[[-60,"1"],[0,"2.5"],[60,"3"]]},'
        b'{"metric":{"a":"y"},"values":[[60,"4"],[1795000020,"5"]]}]}')


def test_parsed_queries_are_kept_and_errors_raised_each_time() -> None:
    from metricsflow.promql.astutil import PARSED_KEPT_MAX_CHARS, parse

    assert parse("sum by (a) (rate(x[5m]))") is parse("sum by (a) (rate(x[5m]))")
    long_query = " + ".join(["x"] * (PARSED_KEPT_MAX_CHARS // 4 + 1))
    assert parse(long_query) is not parse(long_query)
    for _ in range(2):
        with pytest.raises(PromQLParseError):
            parse("sum(")


def test_count_values_label_uses_plain_f_format() -> None:
    assert format_go_f(1e21) == "1000000000000000000000"
    assert format_go_f(1.5e-7) == "0.00000015"


def test_timestamps_are_unix_seconds() -> None:
    assert format_timestamp(1435781451781) == 1435781451.781
    assert format_timestamp(1435781451000) == 1435781451
    assert isinstance(format_timestamp(1435781451000), int)
    assert format_timestamp(-1500) == -1.5


def test_result_shapes() -> None:
    eng = Engine(_source())
    vec = eng.instant('http_requests_total{job="api",instance="0"}', 30 * MIN + 500)
    assert vec.result_type == "vector"
    assert vec.to_json_data() == {
        "resultType": "vector",
        "result": [
            {
                "metric": {"__name__": "http_requests_total", "job": "api", "instance": "0"},
                "value": [1800.5, "120"],
            }
        ],
    }
    sc = eng.instant("1 / 3", 1000)
    assert sc.to_json_data() == {"resultType": "scalar", "result": [1, "0.3333333333333333"]}
    s = eng.instant('"hello"', 1000)
    assert s.to_json_data() == {"resultType": "string", "result": [1, "hello"]}
    mat = eng.range("sum by (job) (http_requests_total)", 0, 2 * MIN, MIN)
    data = mat.to_json_data()
    assert data["resultType"] == "matrix"
    assert data["result"][0] == {"metric": {"job": "api"}, "values": [[0, "0"], [60, "24"], [120, "48"]]}
    raw = eng.instant('http_requests_total{job="web"}[1m]', 30 * MIN)
    assert raw.result_type == "matrix"
    labels, ts, vals = raw.series[0]
    assert labels["job"] == "web" and ts.tolist() == [1755000, 1770000, 1785000, 1800000]
    assert vals.tolist() == [117, 118, 119, 120]


def test_range_scalar_is_a_matrix_series() -> None:
    res = Engine(MemorySource()).range("time()", 0, 2 * MIN, MIN)
    assert res.to_json_data() == {
        "resultType": "matrix",
        "result": [{"metric": {}, "values": [[0, "0"], [60, "60"], [120, "120"]]}],
    }


# -- semantics not exercised by the scripts ----------------------------------------------------


def test_staleness_marker_ends_series_and_lookback() -> None:
    src = MemorySource()
    src.add({"__name__": "up"}, [0, 15_000, 30_000], [1, 1, STALE_NAN])
    eng = Engine(src)
    assert len(eng.instant("up", 20_000).series) == 1
    assert eng.instant("up", 30_000).series == []
    assert eng.instant("count_over_time(up[1m])", 59_000).series[0].values[0] == 2
    src2 = MemorySource()
    src2.add({"__name__": "g"}, [0], [5])
    eng2 = Engine(src2, lookback_ms=MIN)
    assert len(eng2.instant("g", 59_999).series) == 1
    assert eng2.instant("g", 60_000).series == []


def test_histogram_quantile_classic_buckets() -> None:
    eng = Engine(_source())
    res = eng.instant("histogram_quantile(0.5, sum by (le) (rate(lat_bucket[5m])))", 30 * MIN)
    assert res.result_type == "vector"
    ((labels, _, vals),) = res.series
    assert labels == {}
    assert 0.1 < vals[0] < 0.5


def test_label_replace_go_expansion() -> None:
    eng = Engine(_source())
    res = eng.instant(
        'label_replace(temp{instance="1",job="api"}, "dst", "$1-${2}x$2x", "job", "(a)(p)i")', 0
    )
    assert res.series[0].labels["dst"] == "a-px"


def test_duplicate_labelset_is_an_execution_error() -> None:
    eng = Engine(_source())
    with pytest.raises(PromQLExecutionError, match="same labelset"):
        eng.instant('abs({job="api",instance="0",le=""})', 30 * MIN)


# -- errors -------------------------------------------------------------------------------------


def test_error_classes_map_to_prometheus_api_errors() -> None:
    eng = Engine(_source())
    with pytest.raises(PromQLParseError) as parse_err:
        eng.instant("sum(", 0)
    assert (parse_err.value.error_type, parse_err.value.http_status) == ("bad_data", 400)
    with pytest.raises(PromQLUnsupported, match="histogram_count") as unsup:
        eng.instant("histogram_count(temp)", 0)
    assert (unsup.value.error_type, unsup.value.http_status) == ("execution", 422)
    with pytest.raises(PromQLExecutionError, match="many-to-many") as ex:
        eng.instant("temp + on(job) temp", 10 * MIN)
    assert (ex.value.error_type, ex.value.http_status) == ("execution", 422)
    assert (PromQLTimeout.error_type, PromQLTimeout.http_status) == ("timeout", 503)


@pytest.mark.parametrize(
    ("query", "construct"),
    [
        ("limit_ratio(0.5, temp)", "limit_ratio"),
        ('temp{job="api" or job="web"}', "'or'"),
        ("temp + on() group_left fill(0) temp", "fill"),
        ('temp{job=~"\\\\p{L}+"}', "unicode class"),
        ("holt_winters(temp[5m], 0.5, 0.5)", "holt_winters"),
    ],
)
def test_unsupported_constructs_are_named(query: str, construct: str) -> None:
    with pytest.raises(PromQLUnsupported, match=construct):
        Engine(_source()).instant(query, 10 * MIN)


def test_negative_at_timestamp_is_read_exactly() -> None:
    src = MemorySource()
    src.add({"__name__": "m"}, [-120_000, -60_000], [1, 2])
    res = Engine(src).instant("m @ -61", 0)
    assert res.series[0].values[0] == 1


def test_timeout() -> None:
    eng = Engine(_source(), timeout_s=0.0)
    with pytest.raises(PromQLTimeout):
        eng.range("sum(rate(http_requests_total[5m]))", 0, 60 * MIN, 15_000)


@pytest.mark.parametrize(("start", "end", "step"), [(0, 10, 0), (10, 0, 1), (0, 10**9, 1)])
def test_bad_range_parameters(start: int, end: int, step: int) -> None:
    with pytest.raises(PromQLParseError):
        Engine(MemorySource()).range("1", start, end, step)


def test_range_query_rejects_range_vector_and_string() -> None:
    eng = Engine(_source())
    for q in ("temp[5m]", '"x"'):
        with pytest.raises(PromQLParseError):
            eng.range(q, 0, MIN, MIN)


_TOKENS = [
    "sum",
    "rate",
    "(",
    ")",
    "temp",
    "http_requests_total",
    "[5m]",
    "[1m:15s]",
    "by",
    "(job)",
    "+",
    "-",
    "*",
    "/",
    "^",
    "%",
    "==",
    "bool",
    "and",
    "or",
    "unless",
    "on(job)",
    "ignoring(instance)",
    "group_left",
    "offset 1m",
    "@ 100",
    "topk(2,",
    "quantile(0.5,",
    "histogram_quantile(0.9,",
    "lat_bucket",
    "1",
    "0",
    "NaN",
    "Inf",
    '"s"',
    ",",
    '{job="api"}',
    "abs(",
    "absent(",
    'count_values("v",',
    "label_replace(",
    "scalar(",
    "vector(",
    "time()",
    "sort_desc(",
    "-1",
    "avg_over_time(",
    "deriv(",
    "predict_linear(",
    "irate(",
    "increase(",
    "resets(",
    "changes(",
    "clamp(",
    "round(",
    "timestamp(",
    "stddev",
    "stdvar",
    "group",
    "bottomk(1,",
    "@ start()",
    "[5m:]",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=40))
def test_fuzz_random_strings_raise_only_promql_errors(query: str) -> None:
    eng = Engine(_source())
    for call in (lambda: eng.instant(query, 30 * MIN), lambda: eng.range(query, 0, 10 * MIN, MIN)):
        try:
            call()
        except PromQLError as exc:
            assert "internal error" not in str(exc), f"{query!r}: {exc}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=12).map(" ".join))
def test_fuzz_token_soup_raises_only_promql_errors(query: str) -> None:
    eng = Engine(_source())
    for call in (lambda: eng.instant(query, 30 * MIN), lambda: eng.range(query, 0, 10 * MIN, MIN)):
        try:
            call()
        except PromQLError as exc:
            assert "internal error" not in str(exc), f"{query!r}: {exc}"


# -- prefetch windows -----------------------------------------------------------------------------

_PREFETCH_QUERIES = [
    "http_requests_total",
    "rate(http_requests_total[5m])",
    "sum by (job) (rate(http_requests_total[2m] offset 3m))",
    "temp @ 900",
    "temp offset -2m",
    "max_over_time(temp[10m] @ end())",
    "avg_over_time(rate(http_requests_total[1m])[7m:45s])",
    "min_over_time((temp @ start())[5m:1m] offset 2m)",
    "sum_over_time(sum(temp)[3m:] @ 1200)",
    "temp > on(job, instance) group_left temp * 0",
    "histogram_quantile(0.9, sum by (le) (increase(lat_bucket[3m])))",
    "absent_over_time(nope[1m]) or timestamp(temp)",
]


def _prefetched(kind: str, full: MemorySource, query: str, start: int, end: int, step: int) -> SeriesSource:
    """``full`` read through the planned selections, as a worker reads its storage."""
    windows = selections(query, start, end, step)
    if kind == "memory":
        part = MemorySource()
        for matchers, a, b in windows:
            part.add_series(full.select(matchers, a, b))
        return part
    sel = SelectionSource()
    for matchers, a, b in windows:
        sel.add(matchers, full.select(matchers, a, b))
    return sel


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    query=st.sampled_from(_PREFETCH_QUERIES + ["temp - temp offset 5m", "sum(temp) / count(temp{job=~'.+'})"]),
    start=st.integers(0, 60 * MIN),
    span=st.integers(0, 20 * MIN),
    step=st.sampled_from([15_000, MIN, 7 * MIN]),
    kind=st.sampled_from(["memory", "selection"]),
)
def test_prefetched_windows_answer_like_the_full_source(query: str, start: int, span: int, step: int,
                                                       kind: str) -> None:
    full = _source()
    end = start + span
    part = _prefetched(kind, full, query, start, end, step)
    want = Engine(full).range(query, start, end, step).to_json_data()
    got = Engine(part).range(query, start, end, step).to_json_data()
    assert got == want
    # An instant query is a one-step range query: start() and end() are both its time.
    part_instant = _prefetched(kind, full, query, end, end, 0)
    assert (
        Engine(part_instant).instant(query, end).to_json_data()
        == Engine(full).instant(query, end).to_json_data()
    )


def test_planned_windows_end_at_the_last_evaluation_time() -> None:
    # An end off the step grid is never evaluated: reading up to it would make every series a clip.
    (_, lo, hi), = selections("rate(temp[5m])", 0, 10 * MIN + 10_000, MIN)
    assert (lo, hi) == (-5 * MIN + 1, 10 * MIN)
    (_, lo, hi), = selections("temp @ end()", 0, 10 * MIN + 10_000, MIN)
    assert hi == 10 * MIN + 10_000  # end() is the query's end, on the grid or not


def test_selection_source_answers_unplanned_matchers_from_every_read() -> None:
    full = _source()
    sel = SelectionSource()
    sel.add([Matcher("__name__", "=", "temp")], full.select([Matcher("__name__", "=", "temp")], 0, 10 * MIN))
    got = sel.select([Matcher("job", "=", "api"), Matcher("__name__", "=", "temp")], 0, MIN)
    want = full.select([Matcher("job", "=", "api"), Matcher("__name__", "=", "temp")], 0, MIN)
    assert [(s.labels, s.timestamps_ms.tolist()) for s in got] == [(s.labels, s.timestamps_ms.tolist()) for s in want]
    assert got and all(s.timestamps_ms.max() <= MIN for s in got)


# -- MemorySource -------------------------------------------------------------------------------


def test_memory_source_matchers() -> None:
    src = _source()
    got = src.select(
        [Matcher("__name__", "=", "temp"), Matcher("instance", "=~", "1|2"), Matcher("zone", "=", "")],
        0,
        15_000,
    )
    assert {(s.labels["job"], s.labels["instance"]) for s in got} == {
        ("api", "1"),
        ("api", "2"),
        ("web", "1"),
        ("web", "2"),
    }
    assert all(s.timestamps_ms.tolist() == [0, 15_000] for s in got)
    assert src.select([Matcher("__name__", "=~", "tem")], 0, 10) == []  # regexes are anchored
    assert len(src.select([Matcher("job", "!~", "api"), Matcher("__name__", "=", "temp")], 0, 0)) == 3


def test_memory_source_keyed_adds_answer_as_labelled_ones() -> None:
    # The alerting reads pass the index's kept key; a series then merges with one added by its labels.
    by_labels, keyed = MemorySource(), MemorySource()
    labels = {"job": "api", "__name__": "temp", "zone": ""}
    by_labels.add(labels, [0, 10], [1.0, 2.0])
    by_labels.add(labels, [20], [3.0])
    keyed.add_keyed((("__name__", "temp"), ("job", "api")), [0, 10], [1.0, 2.0])
    keyed.add({"__name__": "temp", "job": "api"}, [20], [3.0])
    for src in (by_labels, keyed):
        (got,) = src.select([Matcher("job", "=", "api"), Matcher("zone", "=", "")], 0, 30)
        assert got.labels == {"__name__": "temp", "job": "api"}
        assert got.timestamps_ms.tolist() == [0, 10, 20] and got.values.tolist() == [1.0, 2.0, 3.0]


class _ReplicatedSource:
    """A source that returns every series twice, like two replicas answering a fan-out."""

    def __init__(self, inner: MemorySource) -> None:
        self.inner = inner

    def select(self, matchers, start_ms, end_ms):  # type: ignore[no-untyped-def]
        got = self.inner.select(matchers, start_ms, end_ms)
        return got + got


def test_duplicate_series_from_a_source_are_merged() -> None:
    src = _source()
    q = "sum by (job) (rate(http_requests_total[5m]))"
    want = Engine(src).range(q, 0, 30 * MIN, MIN).to_json_data()
    assert Engine(_ReplicatedSource(src)).range(q, 0, 30 * MIN, MIN).to_json_data() == want


# -- function table (values worked out by hand from Prometheus' definitions) -------------------


def _small() -> MemorySource:
    src = MemorySource()
    t = [0, 15_000, 30_000, 45_000, 60_000]
    src.add({"__name__": "c_total", "a": "1"}, t, [0, 10, 20, 30, 40])
    src.add({"__name__": "r_total", "a": "1"}, t[:4], [5, 10, 2, 6])
    src.add({"__name__": "g", "a": "1"}, t[:4], [1, 3, 2, 5])
    src.add({"__name__": "g", "a": "2"}, t[:4], [7, 7, 7, 7])
    for le, v in (("0.1", 1), ("0.5", 3), ("+Inf", 4)):
        src.add({"__name__": "h_bucket", "le": le}, [0], [v])
    return src


@pytest.mark.parametrize(
    ("query", "at_ms", "expected"),
    [
        # rate: extrapolated to the window start (15 s, capped by the counter's zero point), /60 s.
        ("rate(c_total[1m])", 60_000, {(("a", "1"),): 40 / 60}),
        ("increase(c_total[1m])", 60_000, {(("a", "1"),): 40.0}),
        ("resets(r_total[1m])", 45_000, {(("a", "1"),): 1.0}),
        ("changes(r_total[1m])", 45_000, {(("a", "1"),): 3.0}),
        ("idelta(g{a='1'}[1m])", 45_000, {(("a", "1"),): 3.0}),
        ("irate(r_total[1m])", 45_000, {(("a", "1"),): 4 / 15}),
        ("deriv(g{a='1'}[1m])", 45_000, {(("a", "1"),): 82.5 / 1125}),
        ("predict_linear(g{a='2'}[1m], 100)", 45_000, {(("a", "2"),): 7.0}),
        ("quantile_over_time(0.5, g{a='1'}[1m])", 45_000, {(("a", "1"),): 2.5}),
        ("stddev_over_time(g{a='1'}[1m])", 45_000, {(("a", "1"),): math.sqrt(2.1875)}),
        ("stdvar_over_time(g{a='2'}[1m])", 45_000, {(("a", "2"),): 0.0}),
        ("last_over_time(g{a='1'}[1m])", 45_000, {(("__name__", "g"), ("a", "1")): 5.0}),
        ("histogram_quantile(0.5, h_bucket)", 0, {(): 0.3}),
        ("histogram_quantile(1, h_bucket)", 0, {(): 0.5}),
        ("hour(vector(18420))", 0, {(): 5.0}),
        ("minute(vector(18420))", 0, {(): 7.0}),
        ("day_of_week(vector(0))", 0, {(): 4.0}),
        ("days_in_month(vector(2678400))", 0, {(): 28.0}),
        ("day_of_year(vector(2678400))", 0, {(): 32.0}),
        ("month(vector(2678400))", 0, {(): 2.0}),
        ("year()", 0, {(): 1970.0}),
        ('label_join(g{a="1"}, "x", "-", "a", "a")', 0, {(("__name__", "g"), ("a", "1"), ("x", "1-1")): 1.0}),
        ("clamp(g, 2, 4)", 45_000, {(("a", "1"),): 4.0, (("a", "2"),): 4.0}),
        ("round(vector(2.5))", 0, {(): 3.0}),
        ("round(vector(-2.5))", 0, {(): -2.0}),
        ('absent(nope{a="x", b=~"y"})', 0, {(("a", "x"),): 1.0}),
        ("absent_over_time(nope[1m])", 0, {(): 1.0}),
        ('count_values("v", g)', 45_000, {(("v", "5"),): 1.0, (("v", "7"),): 1.0}),
        ("limitk(1, g)", 0, {(("__name__", "g"), ("a", "1")): 1.0}),
        ("timestamp(g offset 10s)", 50_000, {(("a", "1"),): 30.0, (("a", "2"),): 30.0}),
        ('g{a="1"} @ 15', 1_000_000, {(("__name__", "g"), ("a", "1")): 3.0}),
    ],
)
def test_function_table(query: str, at_ms: int, expected: dict[tuple[tuple[str, str], ...], float]) -> None:
    res = Engine(_small()).instant(query, at_ms)
    got = {tuple(sorted(s.labels.items())): float(s.values[0]) for s in res.series}
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k


def test_sort_orders_instant_results() -> None:
    res = Engine(_small()).instant("sort_desc(g)", 45_000)
    assert [s.labels["a"] for s in res.series] == ["2", "1"]
    res = Engine(_small()).instant("sort(g)", 45_000)
    assert [s.labels["a"] for s in res.series] == ["1", "2"]


def test_variance_by_windowed_sums_matches_welford(monkeypatch: pytest.MonkeyPatch) -> None:
    from metricsflow.promql import rangefuncs

    src = MemorySource()
    rng = np.random.default_rng(0)
    ts = np.arange(0, 2 * 3_600_000, 10_000)
    for i in range(5):
        vals = 1e6 + np.cumsum(rng.normal(0, 1, ts.size))
        if i == 3:
            vals[100] = np.nan
        if i == 4:
            vals[:] = 13.3
        src.add({"__name__": "m", "i": str(i)}, ts, vals)
    query = "stdvar_over_time(m[1h])"
    welford = Engine(src).range(query, 3_600_000, 7_190_000, 60_000)
    monkeypatch.setattr(rangefuncs, "WELFORD_MAX_CELLS", 0)
    sums = Engine(src).range(query, 3_600_000, 7_190_000, 60_000)
    for a, b in zip(welford.series, sums.series, strict=True):
        assert a.labels == b.labels
        np.testing.assert_allclose(b.values, a.values, rtol=1e-9, equal_nan=True)
    assert (sums.series[4].values == 0).all()


@settings(max_examples=100, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 6), min_size=1, max_size=5),
    queries=st.lists(st.integers(-50, 1_100), min_size=1, max_size=6),
    aligned=st.booleans(),
    huge=st.booleans(),
    side=st.sampled_from(["left", "right"]),
)
def test_window_search_matches_per_series_searchsorted(
    lengths: list[int], queries: list[int], aligned: bool, huge: bool, side: str
) -> None:
    from metricsflow.promql.windows import common_grid, search

    rng = np.random.default_rng(len(lengths) * 7 + sum(lengths))
    if aligned:
        lengths = [lengths[0]] * len(lengths)
        grid = np.sort(rng.choice(1_000, lengths[0], replace=False))
        parts = [grid for _ in lengths]
    else:
        parts = [np.sort(rng.choice(1_000, n, replace=False)) for n in lengths]
    ts = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.intp)
    offsets[1:] = np.cumsum(lengths)
    q = np.array(queries + ([2**61] if huge else []), dtype=np.int64)  # huge forces the per-series path
    got = search(ts, offsets, q, side)
    for i in range(len(lengths)):
        want = np.searchsorted(ts[offsets[i] : offsets[i + 1]], q, side) + offsets[i]  # type: ignore[call-overload]
        assert got[i].tolist() == want.tolist()
    # The grid a RangeVec finds once gives the same answer, and exists exactly when every series has the same stamps.
    grid = common_grid(ts, offsets)
    shared = lengths[0] > 0 and all(np.array_equal(p, parts[0]) for p in parts)
    assert (grid is not None) == shared
    assert search(ts, offsets, q, side, grid).tolist() == got.tolist()


@pytest.mark.parametrize(
    ("query", "is_range"),
    [
        ("sum by (job) (rate(http_requests_total[5m]))", True),
        ("temp / 3", False),
        ("1 / 3", False),
        ('"a \\"quoted\\" string"', False),
        ("temp[1m]", False),
        ("absent(nope)", True),
        ("nope", False),
    ],
)
def test_json_bytes_equal_json_data(query: str, is_range: bool) -> None:
    import json

    eng = Engine(_source())
    res = eng.range(query, 0, 10 * MIN + 1_050, MIN) if is_range else eng.instant(query, 10 * MIN + 1_050)
    assert json.loads(res.to_json_bytes()) == res.to_json_data()


def test_json_bytes_timestamp_text_is_prometheus_form() -> None:
    res = Engine(MemorySource()).instant("1", 1_050)
    assert res.to_json_bytes() == b'{"resultType":"scalar","result":[1.050,"1"]}'


def test_stale_markers_leave_series_without_samples_in_place() -> None:
    # Series at the end of the columns with no samples have their offset at the end: the filter
    # once failed on them (reduceat past the end) whenever any series held a stale marker.
    from metricsflow.model import is_stale_marker
    from metricsflow.promql.engine import _filter_samples
    from metricsflow.promql.values import RangeVec

    labels = [(("a", "1"),), (("a", "2"),), (("a", "3"),), (("a", "4"),)]
    rv = RangeVec(labels, np.array([1, 2, 3, 5]), np.array([1.0, STALE_NAN, 3.0, 4.0]), np.array([0, 0, 3, 4, 4]))
    out = _filter_samples(rv, ~is_stale_marker(rv.vals))
    assert out.offsets.tolist() == [0, 0, 2, 3, 3]
    assert out.ts.tolist() == [1, 3, 5] and out.vals.tolist() == [1.0, 3.0, 4.0]
