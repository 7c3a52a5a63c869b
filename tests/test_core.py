"""Unit tests of the pure core: series ids, point batches, wire encoding, validation, head, index, params."""

from __future__ import annotations

import gc
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricsflow import series_id as series_id_module
from metricsflow.collector.validation import Limits, check_labels, validate
from metricsflow.errors import InvalidInput
from metricsflow.model import SeriesSamples
from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.pointbatch import decode_batch, encode_batches
from metricsflow.promql.labels import from_mapping
from metricsflow.promql.source import Matcher
from metricsflow.samples import merge, sort_and_dedup
from metricsflow.series_id import canonical_bytes, partition_for, series_id, uvarint
from metricsflow.wire import encode_labels, encode_series, encode_write_request
from tables.head import Head, _sorted_latest, sorted_by_runs, stable_order
from tables.index import SeriesIndex
from web.params import parse_duration_ms, parse_selector, parse_time_ms

LIMITS = Limits(max_labels=30, max_label_name_bytes=256, max_label_value_bytes=4096,
                max_past_ms=86_400_000, max_future_ms=600_000)


def test_series_id_ignores_label_order_and_empty_values_but_not_tenant() -> None:
    a = series_id("t", {"__name__": "cpu", "host": "a", "dc": "x"})
    assert a == series_id("t", {"dc": "x", "host": "a", "__name__": "cpu", "empty": ""})
    assert a != series_id("u", {"__name__": "cpu", "host": "a", "dc": "x"})
    assert canonical_bytes("t", {"__name__": "m"}) == b"\x01t\x08__name__\x01m"
    assert 0 <= partition_for(a, 7) < 7


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=300), min_size=1, max_size=6),
       st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=300), min_size=1, max_size=6))
def test_series_id_distinguishes_label_sets(a: dict[str, str], b: dict[str, str]) -> None:
    a = {k: v for k, v in a.items() if v}
    b = {k: v for k, v in b.items() if v}
    assert (canonical_bytes("t", a) == canonical_bytes("t", b)) == (a == b)


def _canonical_by_the_spec(tenant: str, labels: dict[str, str]) -> bytes:
    """series_id's docstring, word for word: labels by name bytewise, empty values dropped."""
    out = bytearray(uvarint(len(tenant.encode())) + tenant.encode())
    for name, value in sorted((k.encode(), v.encode()) for k, v in labels.items() if v != ""):
        out += uvarint(len(name)) + name + uvarint(len(value)) + value
    return bytes(out)


@settings(max_examples=200)
@given(st.text(max_size=6), st.dictionaries(st.text(max_size=8), st.text(max_size=200), max_size=8),
       st.sampled_from([2, series_id_module.LABELS_KEPT]))
def test_canonical_bytes_follow_the_spec_from_its_label_cache(tenant: str, labels: dict[str, str],
                                                             kept: int) -> None:
    """Names sorted as str sort as their UTF-8 bytes (any code point, astral included); each label's bytes
    come from a bounded cache the second time (2: it empties itself as it goes)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(series_id_module, "LABELS_KEPT", kept)
        mp.setattr(series_id_module, "_encoded", {})
        for _ in range(2):
            assert canonical_bytes(tenant, labels) == _canonical_by_the_spec(tenant, labels)
        assert len(series_id_module._encoded) <= kept


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(1, 50)), min_size=1, max_size=20),
       st.integers(1, 100))
def test_point_batches_round_trip_and_respect_the_size_limit(runs_spec: list[tuple[int, int]], limit: int) -> None:
    rng = np.random.default_rng(0)
    runs = [(sid, np.arange(n, dtype=np.int64) * 1000, rng.normal(size=n)) for sid, n in runs_spec]
    messages = encode_batches(runs, limit, 123)
    sids, ts, vals = [], [], []
    for m in messages:
        b = decode_batch(m)
        assert len(b) <= limit and b.produced_at_ms == 123
        sids.append(b.point_series_ids())
        ts.append(b.timestamps_ms)
        vals.append(b.values)
    want_sids = np.repeat(np.array([s for s, _ in runs_spec], dtype=np.uint64), [n for _, n in runs_spec])
    np.testing.assert_array_equal(np.concatenate(sids), want_sids)
    np.testing.assert_array_equal(np.concatenate(ts), np.concatenate([r[1] for r in runs]))
    np.testing.assert_array_equal(np.concatenate(vals), np.concatenate([r[2] for r in runs]))


@pytest.mark.parametrize("data", [b"\xff\xff", pb.PointBatch(format_version=9).SerializeToString(),
                                  pb.PointBatch(format_version=1, series_ids=b"\x01" * 8, run_lengths=b"\x02\0\0\0",
                                                timestamps_ms=b"\0" * 8, values=b"\0" * 8).SerializeToString()])
def test_malformed_point_batches_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        decode_batch(data)


def test_hand_written_wire_encoding_equals_generated_protobuf() -> None:
    labels = {"__name__": "cpu", "host": "ä" * 200}
    ts = np.array([1, 2, 3], dtype=np.int64)
    vals = np.array([1.5, math.nan, -0.0])
    body = encode_write_request([encode_series(encode_labels(labels), ts, vals)])
    msg = pb.WriteRequest(series=[pb.Series(labels=[pb.Label(name=k, value=v) for k, v in sorted(labels.items())],
                                            timestamps_ms_le=ts.tobytes(), values_le=vals.tobytes())])
    assert body == msg.SerializeToString()


@pytest.mark.parametrize(("labels", "reason"), [
    ({"host": "a"}, "missing_metric_name"),
    ({"__name__": "a-b"}, "invalid_metric_name"),
    ({"__name__": "m", "1x": "v"}, "invalid_label_name"),
    ({"__name__": "m", "__reserved": "v"}, "invalid_label_name"),
    ({"__name__": "m", **{f"l{i}": "v" for i in range(30)}}, "too_many_labels"),
    ({"__name__": "m", "v": "é" * 2049}, "label_value_too_long"),
    ({"__name__": "m", "n" * 257: "v"}, "label_name_too_long"),
])
def test_label_checks_name_the_reason(labels: dict[str, str], reason: str) -> None:
    bad = check_labels(labels, LIMITS)
    assert bad is not None and bad.reason == reason and len(bad.detail) < 400


def test_a_name_found_valid_is_checked_again_under_a_smaller_limit() -> None:
    """check_labels remembers the names it found valid, by the length limit they passed."""
    labels = {"__name__": "m", "datacenter_name": "v"}
    assert check_labels(labels, LIMITS) is None
    assert check_labels(labels, LIMITS) is None  # the name is known now
    tight = Limits(max_labels=30, max_label_name_bytes=8, max_label_value_bytes=4096,
                   max_past_ms=LIMITS.max_past_ms, max_future_ms=LIMITS.max_future_ms)
    bad = check_labels(labels, tight)
    assert bad is not None and bad.reason == "label_name_too_long"
    assert check_labels({"__name__": "m", "datacenter-name": "v"}, LIMITS).reason == "invalid_label_name"


def test_validate_keeps_the_good_points_of_a_series() -> None:
    now = 10 * 86_400_000
    s = SeriesSamples({"__name__": "m"}, [now - 2 * 86_400_000, now, now + 3_600_000], [1.0, 2.0, 3.0])
    ok, rej = validate([s], LIMITS, now)
    assert [o.values.tolist() for o in ok] == [[2.0]]
    assert sorted((r.reason, r.points) for r in rej) == [("too_far_in_future", 1), ("too_old", 1)]


def test_sort_and_dedup_keeps_the_last_value_sent() -> None:
    ts, vals = sort_and_dedup(np.array([3, 1, 3, 2]), np.array([30.0, 10.0, 31.0, 20.0]))
    assert ts.tolist() == [1, 2, 3] and vals.tolist() == [10.0, 20.0, 31.0]


def test_merge_is_idempotent_and_new_values_win() -> None:
    a_ts, a_v = np.array([1, 2, 3]), np.array([1.0, 2.0, 3.0])
    b_ts, b_v = np.array([3, 4]), np.array([30.0, 4.0])
    ts, v = merge(a_ts, a_v, b_ts, b_v)
    assert ts.tolist() == [1, 2, 3, 4] and v.tolist() == [1.0, 2.0, 30.0, 4.0]
    ts2, v2 = merge(ts, v, b_ts, b_v)
    assert ts2.tolist() == ts.tolist() and v2.tolist() == v.tolist()


def test_head_dedups_replayed_batches_and_answers_per_series() -> None:
    head = Head()
    sids = np.array([5, 5, 9], dtype=np.uint64)
    head.append(sids, np.array([10, 20, 10]), np.array([1.0, 2.0, 3.0]), 1)
    head.append(sids, np.array([10, 20, 10]), np.array([1.0, 2.5, 3.0]), 2)  # replay, one value changed
    ts, vals = head.series(5, 0, 100)
    assert ts.tolist() == [10, 20] and vals.tolist() == [1.0, 2.5]
    assert head.series_count() == 2 and (head.first_offset, head.next_offset) == (1, 3)
    assert head.series(7, 0, 100)[0].size == 0


def test_index_selects_within_a_tenant() -> None:
    idx = SeriesIndex()
    idx.add(1, "a", {"__name__": "m", "env": "prod"})
    idx.add(2, "a", {"__name__": "m", "env": "dev"})
    idx.add(3, "a", {"__name__": "m"})
    idx.add(4, "b", {"__name__": "m", "env": "prod"})
    sel = lambda *ms: idx.select("a", [Matcher(*m) for m in ms])  # noqa: E731
    assert sel(("__name__", "=", "m")) == [1, 2, 3]
    assert sel(("env", "=", "prod")) == [1]
    assert sel(("__name__", "=", "m"), ("env", "!=", "prod")) == [2, 3]
    assert sel(("__name__", "=", "m"), ("env", "=~", "pr.*|dev")) == [1, 2]
    assert sel(("__name__", "=", "m"), ("env", "!~", "pr.*")) == [2, 3]
    assert sel(("__name__", "=", "m"), ("env", "=", "")) == [3]
    assert idx.label_values("a", "env") == {"prod", "dev"}
    assert idx.label_values("b", "env") == {"prod"}


def test_index_keeps_one_copy_of_each_label_string() -> None:
    idx = SeriesIndex()
    # Strings as the worker gets them: parsed per record, equal but not the same objects.
    fresh = lambda text: text.encode().decode()  # noqa: E731
    idx.add(1, "a", {fresh("__name__"): fresh("cpu"), fresh("host"): fresh("h1")})
    idx.add(2, "a", {fresh("__name__"): fresh("mem"), fresh("host"): fresh("h1")})
    (n1, v1), host1 = idx.label_key(1)
    (n2, v2), host2 = idx.label_key(2)
    assert n1 is n2 and host1 is host2  # one pair for both
    assert v1 == "cpu" and v2 == "mem"
    idx.remove(1)
    assert idx.label_values("a", "__name__") == {"mem"} and idx.label_values("a", "host") == {"h1"}
    assert idx.select("a", [Matcher("host", "=", "h1")]) == [2]
    idx.remove(2)
    assert len(idx) == 0 and idx.select("a", [Matcher("host", "=", "h1")]) == []
    assert not idx._postings and not idx._pairs and not idx._names and not idx._by_tenant  # nothing kept


_INDEX_NAMES = ["__name__", "host", "env"]
_INDEX_VALUES = ["", "x", "y", "z", "xy", "w"]
_INDEX_OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 40), st.sampled_from("ab"),
              st.dictionaries(st.sampled_from(_INDEX_NAMES), st.sampled_from(_INDEX_VALUES), min_size=1, max_size=3)),
    st.tuples(st.just("remove"), st.integers(0, 40))), min_size=30, max_size=150)
_INDEX_MATCHERS = [(op, v) for op in ("=", "!=") for v in _INDEX_VALUES] + [
    (op, rx) for op in ("=~", "!~") for rx in ("", ".*", ".+", "x.*", "x|y", "xy|z", "z", "w|")]


@settings(max_examples=150, deadline=None)
@given(_INDEX_OPS, st.sampled_from(_INDEX_VALUES[1:]))
def test_index_answers_as_a_model_through_adds_and_removes(ops: list[tuple], narrow: str) -> None:
    # Postings move from tuples to dicts past SMALL_POSTING ids and shrink again on removes; a
    # matcher other than a non-empty "=" is applied by the label's values or, after a narrowing
    # matcher left fewer candidates than values, by each candidate's value.
    idx, model = SeriesIndex(), {}
    for op in ops:
        if op[0] == "add":
            _, sid, tenant, labels = op
            idx.add(sid, tenant, labels)
            model.setdefault(sid, (tenant, {k: v for k, v in labels.items() if v}))  # "" is an absent label
        else:
            idx.remove(op[1])
            model.pop(op[1], None)
    assert len(idx) == len(model)
    for tenant in "ab":
        mine = {sid: lb for sid, (t, lb) in model.items() if t == tenant}
        assert idx.label_names(tenant) == {k for lb in mine.values() for k in lb}
        for name in _INDEX_NAMES:
            assert idx.label_values(tenant, name) == {lb[name] for lb in mine.values() if name in lb}
            for op, value in _INDEX_MATCHERS:
                m = Matcher(name, op, value)
                want = sorted(s for s, lb in mine.items() if m.matches(lb.get(name, "")))
                assert idx.select(tenant, [m]) == want
                first = Matcher("host", "=", narrow)
                want = sorted(s for s, lb in mine.items() if lb.get("host") == narrow and m.matches(lb.get(name, "")))
                assert idx.select(tenant, [first, m]) == want


def test_index_leaves_nothing_for_the_garbage_collector_to_walk() -> None:
    # A set is tracked and walked entry by entry in every full collection: 0.5 s at 1 M series.
    idx = SeriesIndex()
    for sid in range(50):
        idx.add(sid, "t", {"__name__": "cpu", "host": f"h{sid}", "region": f"r{sid % 2}"})
    gc.collect()  # a collection untracks the label tuples, the next one the maps that hold only those
    gc.collect()
    large = idx._postings["__name__"]["cpu"]
    assert len(large) == 50 and not gc.is_tracked(large) and not gc.is_tracked(idx._by_tenant["t"])
    assert not any(gc.is_tracked(v) for values in idx._postings.values() for v in values.values())
    # The maps with an entry per series or per host: nothing in them needs a walk either.
    assert not gc.is_tracked(idx._labels) and not gc.is_tracked(idx._postings["host"])


def test_index_postings_grow_past_small_and_shrink() -> None:
    idx = SeriesIndex()
    for sid in range(20):
        idx.add(sid, "t", {"job": "j", "i": str(sid % 2)})
    sel = lambda *ms: idx.select("t", [Matcher(*m) for m in ms])  # noqa: E731
    assert sel(("job", "=", "j")) == list(range(20)) and sel(("i", "=", "1")) == list(range(1, 20, 2))
    for sid in range(0, 20, 3):
        idx.remove(sid)
    left = [s for s in range(20) if s % 3]
    assert sel(("job", "=", "j")) == left and sel(("job", "=", "j"), ("i", "=", "0")) == [s for s in left if s % 2 == 0]
    for sid in left:
        idx.remove(sid)
    assert sel(("job", "=", "j")) == [] and idx.label_values("t", "job") == set()


def test_query_parameters_parse_like_prometheus() -> None:
    assert parse_time_ms("1700000000.5", 0, "t") == 1_700_000_000_500
    assert parse_time_ms("2023-11-14T22:13:20Z", 0, "t") == 1_700_000_000_000
    assert parse_duration_ms("1m30s", "step") == 90_000 and parse_duration_ms("15", "step") == 15_000
    with pytest.raises(InvalidInput):
        parse_time_ms("yesterday", 0, "t")
    with pytest.raises(InvalidInput):
        parse_selector('{env=~".*"}')
    assert set(parse_selector('cpu{host!="a"}')) == {Matcher("host", "!=", "a"), Matcher("__name__", "=", "cpu")}
    # Parsed selectors are cached: a caller's list is its own, and a refused one is refused again.
    parse_selector('cpu{host!="a"}').append(Matcher("x", "=", "y"))
    assert len(parse_selector('cpu{host!="a"}')) == 2
    with pytest.raises(InvalidInput):
        parse_selector('{env=~".*"}')


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(st.one_of(
    st.tuples(st.just("append"), st.lists(st.tuples(st.integers(0, 3), st.integers(0, 30), st.integers(-5, 5)),
                                          max_size=12)),
    st.tuples(st.just("read"), st.integers(0, 3), st.integers(0, 30), st.integers(0, 30)),
    st.tuples(st.just("view"))), max_size=30), scan_min=st.sampled_from([0, 8, 16_384]))
def test_head_reads_with_an_unsorted_tail_equal_a_rebuilt_view(ops: list, scan_min: int) -> None:
    """Reads that scan the tail (or rebuild the view part-way) answer as a dict of latest writes."""
    import tables.head

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tables.head, "TAIL_SCAN_MIN", scan_min)
        _check_head_ops(ops)


def _check_head_ops(ops: list) -> None:
    head, latest = Head(), {}
    for op in ops:
        if op[0] == "append":
            rows = op[1]
            head.append(np.array([r[0] for r in rows], dtype=np.uint64), np.array([r[1] for r in rows], dtype=np.int64),
                        np.array([float(r[2]) for r in rows]), None)
            latest.update({(r[0], r[1]): float(r[2]) for r in rows})
        elif op[0] == "read":
            _, sid, a, b = op
            want = sorted((t, v) for (s, t), v in latest.items() if s == sid and a <= t <= b)
            ts, vals = head.series(sid, a, b)
            assert list(zip(ts.tolist(), vals.tolist(), strict=True)) == want
        else:
            sids, ts, vals = head.view()
            assert list(zip(sids.tolist(), ts.tolist(), vals.tolist(), strict=True)) == sorted(
                (s, t, v) for (s, t), v in latest.items())
    assert head.points >= len(latest)


def _columns(points: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sids = np.array([p[0] for p in points], dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # unsorted ids
    ts = np.array([p[1] for p in points], dtype=np.int64)
    return sids, ts, np.arange(len(points), dtype=np.float64)


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 4)), max_size=6), min_size=1,
                        max_size=12))
def test_a_head_of_rising_runs_is_sorted_by_its_runs_as_the_points_sort_would(batches: list) -> None:
    """Batches of runs, each series rising from run to run: ``sorted_by_runs`` takes them, with the exact answer."""
    nxt: dict[int, int] = {}
    points = []
    for batch in batches:
        for series, length in batch:
            start = nxt.get(series, 0) + 1
            points += [(series, t) for t in range(start, start + length)]
            nxt[series] = start + length - 1
    sids, ts, vals = _columns(points)
    got = sorted_by_runs(sids, ts, vals)
    if not points:
        assert got is None
        return
    assert got is not None  # the cut's fast path: fails if rising runs fell back to the point sort
    want = _sorted_latest(sids, ts, vals)
    assert [g.tolist() for g in got] == [w.tolist() for w in want]
    assert [g.dtype for g in got] == [w.dtype for w in want]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), series=st.sampled_from([3, 700, 5000]), run_max=st.sampled_from([1, 2, 12, 40]),
       one_length=st.booleans(), late=st.booleans())
def test_large_heads_sorted_by_runs_equal_the_point_sort(seed: int, series: int, run_max: int, one_length: bool,
                                                         late: bool) -> None:
    """Heads past the sizes where ranks replace the ids in the sort, with runs of one length (moved whole)
    or of many (moved by length, or by a gather past RUN_LENGTHS_MOVED lengths): the same answer as the
    exact sort, or None when a point came late."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 2**63, series, dtype=np.int64).astype(np.uint64)
    nxt = np.zeros(series, dtype=np.int64)
    sid_parts, ts_parts = [], []
    while sum(p.size for p in ts_parts) < 9000:
        pick = rng.choice(series, min(series, 50), replace=False)
        lengths = np.full(pick.size, run_max) if one_length else rng.integers(1, run_max + 1, pick.size)
        for i, n in zip(pick.tolist(), lengths.tolist(), strict=True):
            ts_parts.append(nxt[i] + 1 + np.arange(n, dtype=np.int64) * rng.integers(1, 3))
            nxt[i] = ts_parts[-1][-1]
            sid_parts.append(np.full(n, ids[i], dtype=np.uint64))
    sids, ts = np.concatenate(sid_parts), np.concatenate(ts_parts)
    if late:  # a point of a series that came before: repeated, or older than the one before it
        again = np.setdiff1d(np.arange(ts.size), np.unique(sids, return_index=True)[1])
        at = int(rng.choice(again))
        before = int(np.flatnonzero(sids[:at] == sids[at])[-1])
        ts[at] = ts[before] - int(rng.integers(0, 2))
    vals = rng.random(ts.size)
    got = sorted_by_runs(sids, ts, vals)
    want = _sorted_latest(sids, ts, vals)
    if late:
        assert got is None
    else:
        assert got is not None
        assert [g.tobytes() for g in got] == [w.tobytes() for w in want]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.sampled_from([10, 5000, 70_000]),
       distinct=st.sampled_from([1, 3, 2000, 70_000]))
def test_stable_order_is_numpys_stable_argsort(seed: int, n: int, distinct: int) -> None:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 2**64, distinct, dtype=np.uint64)[rng.integers(0, distinct, n)]
    assert np.array_equal(stable_order(keys), np.argsort(keys, kind="stable"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 6)), max_size=30))
def test_sorted_by_runs_answers_only_when_it_equals_the_point_sort(points: list) -> None:
    """Late or repeated points leave ``sorted_by_runs`` to the exact sort (None); any answer it gives is that sort's."""
    sids, ts, vals = _columns(points)
    got = sorted_by_runs(sids, ts, vals)
    want = _sorted_latest(sids, ts, vals)
    if got is None:
        keyed = [(int(s), int(t)) for s, t in zip(sids, ts, strict=True)]
        by_series: dict[int, list[int]] = {}
        for s, t in keyed:
            by_series.setdefault(s, []).append(t)
        assert not points or any(a >= b for tl in by_series.values() for a, b in itertools.pairwise(tl))
    else:
        assert [g.tolist() for g in got] == [w.tolist() for w in want]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=4), st.text(max_size=3), max_size=8))
def test_the_index_keys_a_series_as_the_engine_does(labels: dict[str, str]) -> None:
    index = SeriesIndex()
    index.add(7, "t", labels)
    assert index.label_key(7) == from_mapping(labels)
    assert index.labels_of(7) == {k: v for k, v in labels.items() if v}  # an empty value is an absent label
    assert list(index.labels_of(7)) == sorted(index.labels_of(7))  # in name order
