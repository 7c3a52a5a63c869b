"""The partition's newest timestamps per series (tables/newest.py) against a dict."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tables.newest
from tables.newest import NEVER, NewestTimes

SIDS = st.sampled_from([1, 2, 3, 7, 2**40 + 5, 2**63 + 1, 2**64 - 1])
TIMES = st.integers(-(2**40), 2**40)
OPS = st.lists(st.one_of(
    st.tuples(st.just("batch"), st.lists(st.tuples(SIDS, TIMES), max_size=6)),
    st.tuples(st.just("defer"), st.lists(st.tuples(SIDS, TIMES), max_size=6)),
    st.tuples(st.just("set"), SIDS, TIMES),
    st.tuples(st.just("get"), SIDS),
    st.tuples(st.just("update"), st.lists(st.tuples(SIDS, TIMES), max_size=4)),
    st.tuples(st.just("top"),)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(ops=OPS, merge_min=st.sampled_from([1, 2, 1024]), defer_min=st.sampled_from([1, 3, 4096]))
def test_newest_times_answer_as_a_dict_does(ops: list, merge_min: int, defer_min: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tables.newest, "MERGE_MIN", merge_min)
        mp.setattr(tables.newest, "DEFER_MIN", defer_min)
        newest, model = NewestTimes(), {}
        for op in ops:
            if op[0] == "defer":  # raised later, repeats allowed: each series to the newest of its times
                newest.defer(np.array([s for s, _ in op[1]], dtype=np.uint64),
                             np.array([t for _, t in op[1]], dtype=np.int64))
                for sid, t in op[1]:
                    model[sid] = max(model.get(sid, t), t)
            elif op[0] == "batch":
                sids = np.array([s for s, _ in op[1]], dtype=np.uint64)
                highs = np.array([t for _, t in op[1]], dtype=np.int64)
                got = newest.lookup(sids)
                if len(set(sids.tolist())) != sids.size:
                    assert got is None  # a repeated series: the caller goes run by run
                    continue
                assert got is not None
                known, where = got
                assert known.tolist() == [model.get(s, NEVER) for s in sids.tolist()]
                newer = highs > known
                newest.raise_to(where, newer, sids, highs)
                model.update((s, t) for s, t, n in zip(sids.tolist(), highs.tolist(), newer.tolist(), strict=True) if n)
            elif op[0] == "set":
                newest[op[1]] = op[2]
                model[op[1]] = op[2]
            elif op[0] == "get":
                assert newest.get(op[1]) == model.get(op[1])
            elif op[0] == "update":
                newest.update(op[1])
                model.update(op[1])
            else:
                assert newest.top() == (max(model.values()) if model else None)
        assert len(newest) == len(model)
        for sid, t in model.items():
            assert newest[sid] == t


def test_known_series_are_kept_in_columns_not_a_dict() -> None:
    """After the merge a message's lookup finds every series in the sorted columns."""
    newest = NewestTimes()
    sids = np.arange(1, 5001, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    known, where = newest.lookup(sids)
    times = np.arange(5000, dtype=np.int64) * 7
    newest.raise_to(where, np.ones(sids.size, dtype=bool), sids, times)
    assert len(newest._new) == 0 and newest._keys.size == 5000  # merged: 5,000 >= MERGE_MIN
    shuffled = np.random.default_rng(3).permutation(5000)  # a message's order is not the columns'
    known, where = newest.lookup(sids[shuffled])
    assert bool(where.found.all()) and known.tolist() == times[shuffled].tolist()
    assert newest.lookup(np.concatenate([sids[:300], sids[299:300]])) is None  # a repeat among many known
    assert newest.lookup(sids[:300]) is not None


def test_series_left_in_the_dict_join_the_columns_once_probed_again() -> None:
    """A partition's last new series, fewer than a merge takes, still move to the columns once
    messages keep probing them (else every message probed them one by one, for good)."""
    newest = NewestTimes()
    sids = np.arange(1, 1075, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)

    def message(of: np.ndarray, t: int) -> None:
        _, where = newest.lookup(of)
        newest.raise_to(where, np.ones(of.size, dtype=bool), of, np.full(of.size, t, dtype=np.int64))

    message(sids[:1024], 1)  # merged: 1,024 reach MERGE_MIN
    message(sids[1024:], 1)  # 50 more wait in the dict
    assert newest._keys.size == 1024 and len(newest._new) == 50
    for t in range(2, 8):
        message(sids, t)
    assert newest._keys.size == 1074 and not newest._new
    assert newest.lookup(sids)[0].tolist() == [7] * 1074
