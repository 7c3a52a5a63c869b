"""Reads of many series at once: the head's batched search and the cache of folded blocks stay exact."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricsflow import rollup, series_batch
from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.promql.source import Matcher
from tables.block_cache import block_size
from tables.head import Head
from tables.storage import FOLDED_BLOCKS_MAX, StorageTables
from tests.test_storage_segments import BLOCK_MS, HOUR_MS, T0, Feed, P, make, tables  # noqa: F401

_appends = st.lists(
    st.lists(st.tuples(st.integers(1, 6), st.integers(0, 40), st.integers(-5, 5)), max_size=12),
    max_size=8,
)


@given(_appends, st.integers(0, 8), st.integers(0, 3), st.integers(0, 40), st.integers(0, 40))
@settings(max_examples=300, deadline=None)
def test_series_many_equals_series_one_by_one(batches: list[list[tuple[int, int, int]]], view_after: int,
                                              extra: int, a: int, b: int) -> None:
    head = Head()
    for i, batch in enumerate(batches):
        if batch:
            sids, ts, vals = (np.array(c) for c in zip(*batch, strict=True))
            head.append(sids.astype(np.uint64), ts.astype(np.int64), vals.astype(np.float64), i)
        if i == view_after:
            head.view()  # some points sorted, the rest in the tail
    wanted = [1, 2, 3, 4, 5, 6, 7][: 4 + extra]  # 7 never appears
    start, end = min(a, b), max(a, b)
    many = head.series_many(wanted, start, end)
    for sid, (ts, vals) in zip(wanted, many, strict=True):
        want_ts, want_vals = head.series(sid, start, end)
        assert ts.tolist() == want_ts.tolist() and vals.tolist() == want_vals.tolist()


def _model_read(model: dict[int, dict[int, float]], sid: int, start: int, end: int) -> tuple[list[int], list[float]]:
    items = sorted((t, v) for t, v in model.get(sid, {}).items() if start <= t <= end)
    return [t for t, _ in items], [v for _, v in items]


@pytest.mark.parametrize("aligned", [False, True], ids=["own-stamps", "shared-stamps"])
@pytest.mark.parametrize("cache_bytes", [64 << 20, 20_000], ids=["default-caches", "caches-of-a-few-blocks"])
async def test_reads_between_writes_always_see_every_write(tables: StorageTables,  # noqa: F811
                                                           cache_bytes: int, aligned: bool) -> None:
    """Reads fill the caches of decoded blocks; every later cut, seal and out-of-order fold must show,
    also while small caches evict (MF_BLOCK_CACHE_BYTES, MF_ROLLUP_CACHE_BYTES). ``aligned``: the
    series written together get the same timestamps, so their cached blocks share one column
    (tables/shared_stamps.py) and reads clip it once for all of them."""
    rng = np.random.default_rng(11)
    storage, feed = make(tables, block_cache_bytes=cache_bytes, rollup_cache_bytes=cache_bytes), Feed()
    model: dict[int, dict[int, float]] = {}
    sids = [3, 5, 8, 13, 21]
    for sid in sids:  # "i" orders them 13, 21, 3, 5, 8: the flat read's label order is not the ids'
        info = pb.SeriesInfo(tenant="default", labels=[pb.Label(name="__name__", value="m"),
                                                       pb.Label(name="i", value=str(sid))])
        for key, value in series_batch.encode_batches([sid], [info]):
            storage.ingest_series(P, key, value)
    by_name = [Matcher("__name__", "=", "m")]
    now = T0
    for step in range(120):
        now += int(rng.integers(1, 12)) * 60_000  # crosses a block boundary every ~20 steps, so blocks seal
        together = np.unique(now - rng.integers(0, 50, size=int(rng.integers(1, 6))) * 60_000)
        writers = len(sids) if aligned else int(rng.integers(1, len(sids) + 1))
        for sid in rng.choice(sids, size=writers, replace=False).tolist():
            # Up to 50 minutes back (inside the one-hour window): out of order, repeats, sealed blocks.
            ts = together if aligned else np.unique(now - rng.integers(0, 50, size=int(rng.integers(1, 6))) * 60_000)
            vals = np.round(rng.normal(size=ts.size), 3)
            feed.send(storage, sid, ts, vals)
            model.setdefault(sid, {}).update(zip(ts.tolist(), vals.tolist(), strict=True))
        if rng.random() < 0.4:
            await storage.cut(P)
        for _ in range(3):
            wide = rng.random() < 0.2  # past FOLDED_BLOCKS_MAX blocks: the uncached scan
            span = (FOLDED_BLOCKS_MAX + 2) * BLOCK_MS if wide else int(rng.integers(1, 4 * HOUR_MS))
            end = now - int(rng.integers(0, 3 * HOUR_MS))
            start = end - span
            pick = sids if rng.random() < 0.5 else sids[:2]
            for sid, (ts, vals) in zip(pick, storage.read_many(P, pick, start, end), strict=True):
                assert (ts.tolist(), vals.tolist()) == _model_read(model, sid, start, end), (step, sid, start, end)
            flat = storage.select_range("default", by_name, start, end)
            want = sorted((str(sid), _model_read(model, sid, start, end)) for sid in sids)
            want = [(i, read) for i, read in want if read[0]]
            assert flat.labels == [(("__name__", "m"), ("i", i)) for i, _ in want]
            bounds = flat.offsets.tolist()
            got = [(flat.ts[a:b].tolist(), flat.vals[a:b].tolist()) for a, b in pairwise(bounds)]
            assert got == [read for _, read in want], (step, start, end)
            # Rollups (decoded blocks cached too): every window whole, as computed from every sample.
            sid = pick[0]
            w_start, w_end = start // 60_000 * 60_000, (end // 60_000 + 1) * 60_000 - 1
            want_ts, want_vals = _model_read(model, sid, w_start, w_end)
            expected = rollup.compute(np.array(want_ts, np.int64), np.array(want_vals), 60_000).clip(start, end)
            stored = storage.rollup_with_head(P, sid, "1m", start, end)
            assert stored.starts.tolist() == expected.starts.tolist(), (step, sid, start, end)
            assert stored.count.tolist() == expected.count.tolist() and stored.max.tolist() == expected.max.tolist()
            np.testing.assert_allclose(stored.sum, expected.sum, rtol=1e-12, atol=1e-12)
    sealed = storage.state(P).pending
    assert len(sealed) < 3, "the run should have sealed most blocks"
    if aligned:  # the cached blocks did share columns: some entries were counted without their stamps
        assert storage._blocks.bytes < sum(block_size(b) for b in storage._blocks._blocks.values())


async def test_series_with_the_same_stamps_share_one_cached_column(tables: StorageTables) -> None:  # noqa: F811
    storage, feed = make(tables), Feed()
    ts = T0 + np.arange(0, HOUR_MS, 10_000, dtype=np.int64)
    for sid in (3, 5, 8):
        info = pb.SeriesInfo(tenant="default", labels=[pb.Label(name="__name__", value="m"),
                                                       pb.Label(name="i", value=str(sid))])
        for key, value in series_batch.encode_batches([sid], [info]):
            storage.ingest_series(P, key, value)
        # 8 is sampled at other times: it keeps a column of its own.
        feed.send(storage, sid, ts + (5_000 if sid == 8 else 0), np.full(ts.size, float(sid)))
    await storage.cut(P)
    flat = storage.select_range("default", [Matcher("__name__", "=", "m")], T0, T0 + HOUR_MS)  # one block
    assert flat.offsets.tolist() == [0, ts.size, 2 * ts.size, 3 * ts.size]
    blocks = {sid: storage._stored(P, sid, T0 // BLOCK_MS * BLOCK_MS) for sid in (3, 5, 8)}
    assert blocks[3][0] is blocks[5][0] and blocks[8][0] is not blocks[3][0]
    assert not blocks[3][0].flags.writeable  # shared: no reader may change it
    # The cache counts a shared column once: three blocks of 360 samples, two columns of stamps.
    values, stamps, entry = 3 * 360 * 8, 2 * 360 * 8, 256
    assert storage._blocks.bytes == values + stamps + 3 * entry
