"""The seal backlog between cuts: the budget's pace while points arrive, unbounded while none do."""

from __future__ import annotations

import numpy as np
import pytest

import tables.storage as storage_module
from metricsflow import codecs, rollup
from tables import keys
from tables.seal_budget import IDLE_POINTS_PER_S, RateMeter, SealBudget
from tables.storage import StorageTables, WorkerStorage
from tests.test_storage_segments import BLOCK_MS, HOUR_MS, T0, Clock, Feed, Flush, P, every_10s, make, seg_keys, tables  # noqa: F401  (tables: the fixture)


def test_rate_meter_counts_the_last_one_to_two_windows() -> None:
    clock = Clock()
    meter = RateMeter(window_s=1.0, clock=clock)
    assert meter.rate() == 0.0
    meter.add(3_000)
    clock.now = 0.5
    assert meter.rate() == 3_000 / 1.5  # one window before the current half window counted as empty
    clock.now = 1.5  # the 3,000 now lie in the previous window
    meter.add(1_000)
    assert meter.rate() == 4_000 / 1.5
    clock.now = 2.2  # the window of the 3,000 is gone
    assert abs(meter.rate() - 1_000 / 1.2) < 1e-9
    clock.now = 10.0
    assert meter.rate() == 0.0


def test_an_idle_budget_is_neither_bounded_nor_charged() -> None:
    clock, idle = Clock(), [False]
    budget = SealBudget(share=0.1, burst_s=0.5, clock=clock, idle=lambda: idle[0])
    budget.spend(0.6)
    assert not budget.available()
    idle[0] = True
    assert budget.available()
    budget.spend(100.0)
    idle[0] = False
    clock.now += 2.0  # +0.2 s: back above zero, the idle spending was not charged
    assert budget.available()


def _backlog(storage: WorkerStorage, feed: Feed, n: int) -> None:
    ts = every_10s(T0, T0 + BLOCK_MS)
    for sid in range(1, n + 1):
        feed.send(storage, sid, ts, ts / 1000.0 + sid)


async def test_the_backlog_drains_between_cuts_at_the_budget_pace(tables: StorageTables) -> None:  # noqa: F811
    flush = Flush()
    storage, feed, clock = make(tables, flush), Feed(), Clock()
    storage._seal_budget = SealBudget(share=0.1, burst_s=1e-9, clock=clock)
    n = 30
    _backlog(storage, feed, n)
    await storage.cut(P)
    feed.send(storage, 1, [T0 + BLOCK_MS + HOUR_MS], [1.0])  # every block of the first cut may seal now
    stats = await storage.cut(P)
    assert stats.deferred and storage.seal_backlog(P) == n - storage_module.SEAL_BATCH_FIRST  # one batch
    assert await storage.maybe_seal(P) is None  # the burst is spent: nothing until the budget refills
    passes, flushes = 0, flush.calls
    while storage.seal_backlog(P):
        clock.now += 10.0  # one second of seal time
        stats = await storage.maybe_seal(P)
        assert stats is not None and stats.sealed >= 1
        passes += 1
        assert passes < n
    # Every pass flushed its chunks before its segments went, and no cut ran meanwhile.
    assert flush.calls - flushes == passes
    assert [blk for _, blk, _ in seg_keys(tables)] == [T0 + BLOCK_MS]
    assert len(tables.chunks.items()) == n  # type: ignore[attr-defined]
    for sid in (2, n):
        ts, vals = storage.read(P, sid, T0, T0 + BLOCK_MS - 1)
        assert ts.size == 720 and vals[0] == T0 / 1000.0 + sid
        assert tables.rollups["1h"].get(P, keys.chunk_key(sid, T0)) is not None


async def test_without_points_arriving_the_whole_backlog_seals_at_once(tables: StorageTables) -> None:  # noqa: F811
    storage, feed = make(tables, seal_share=0.1, seal_burst_s=1e-9), Feed()
    clock = Clock()
    storage._points_stored = RateMeter(clock=clock)  # the worker's own idle test, on a clock of the test's
    n = 30
    _backlog(storage, feed, n)
    await storage.cut(P)
    feed.send(storage, 1, [T0 + BLOCK_MS + HOUR_MS], [1.0])
    storage._points_stored.add(10 * IDLE_POINTS_PER_S)  # points arriving
    await storage.cut(P)
    left = storage.seal_backlog(P)
    assert 0 < left < n
    stats = await storage.maybe_seal(P)
    assert stats is None or stats.sealed < left  # still bounded while busy
    clock.now += 3.0  # no points for two windows
    left = storage.seal_backlog(P)
    stats = await storage.maybe_seal(P)
    assert stats is not None and stats.sealed == left and storage.seal_backlog(P) == 0
    assert len(tables.chunks.items()) == n  # type: ignore[attr-defined]
    np.testing.assert_array_equal(storage.read(P, n, T0, T0 + BLOCK_MS - 1)[0], every_10s(T0, T0 + BLOCK_MS))


async def test_cuts_and_passes_seal_for_a_bounded_time_each_flushed(
        tables: StorageTables, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr(storage_module, "SEAL_PASS_S", 0.0)  # every cut and pass: one batch, then stop
    monkeypatch.setattr(storage_module, "SEAL_BATCH_FIRST", 1)  # of one block
    flush = Flush()
    storage, feed = make(tables, flush), Feed()
    storage._seal_budget = SealBudget(share=0.1, burst_s=3600.0)  # the budget never stops it
    n = 5
    _backlog(storage, feed, n)
    await storage.cut(P)
    feed.send(storage, 1, [T0 + BLOCK_MS + HOUR_MS], [1.0])
    stats = await storage.cut(P)
    assert stats.sealed == 1 and storage.seal_backlog(P) == n - 1
    flushes = flush.calls
    stats = await storage.maybe_seal(P)
    assert stats is not None and stats.sealed == n - 1 and storage.seal_backlog(P) == 0
    assert flush.calls - flushes == n - 1  # one flush per pass, before its segments went
    assert len(tables.chunks.items()) == n  # type: ignore[attr-defined]


async def test_series_sealed_in_one_batch_get_their_own_chunks_and_rollups(
        tables: StorageTables, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr(storage_module, "SEAL_BATCH_FIRST", 64)
    storage, feed = make(tables), Feed()
    storage._seal_budget = SealBudget(share=1.0, burst_s=3600.0)
    rng = np.random.default_rng(5)
    ts = every_10s(T0, T0 + BLOCK_MS)
    written = {}
    for sid in range(1, 13):
        keep = np.sort(rng.choice(ts.size, int(rng.integers(1, ts.size)), replace=False))  # lengths differ
        vals = np.round(rng.normal(0, 10 ** int(rng.integers(0, 4)), keep.size).cumsum(), int(rng.integers(0, 4)))
        written[sid] = (ts[keep], vals)
        feed.send(storage, sid, *written[sid])
    await storage.cut(P)
    feed.send(storage, 1, [T0 + BLOCK_MS + HOUR_MS], [1.0])
    stats = await storage.cut(P)
    assert stats.sealed == len(written) and storage.seal_backlog(P) == 0
    _assert_sealed_as_written(tables, written)

    # Late points for the sealed blocks of many series (a backfill's shape) are folded in batches too.
    for sid, (w_ts, w_vals) in written.items():
        if sid == 1:
            continue
        late_ts = int(w_ts[-1]) - 5_000  # between two samples, within the series' out-of-order window
        feed.send(storage, sid, [late_ts], [-float(sid)])
        order = np.argsort(np.append(w_ts, late_ts))
        written[sid] = (np.append(w_ts, late_ts)[order], np.append(w_vals, -float(sid))[order])
    stats = await storage.cut(P)
    assert stats.sealed == len(written) - 1 and stats.segments == 0
    _assert_sealed_as_written(tables, written)


def _assert_sealed_as_written(tables: StorageTables, written: dict) -> None:  # noqa: F811
    for sid, (w_ts, w_vals) in written.items():
        key = keys.chunk_key(sid, T0)
        assert tables.chunks.get(P, key) == codecs.encode(w_ts, w_vals), sid
        for tier, window_ms in rollup.TIERS_MS.items():
            assert tables.rollups[tier].get(P, key) == rollup.encode(rollup.compute(w_ts, w_vals, window_ms)), sid
