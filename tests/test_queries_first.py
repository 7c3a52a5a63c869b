"""Cuts and seals give way to requests being answered: a query never waits behind a seal backlog."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import numpy as np
from aiohttp import web

from tables.storage import (
    CUT_SLICE_S,
    QUERY_FIRST_MAX_S,
    QueriesInFlight,
    SealBudget,
    StorageTables,
    _Slicer,
)
from tests.support import free_port
from tests.test_storage_segments import BLOCK_MS, HOUR_MS, T0, Feed, P, make, tables  # noqa: F401
from web.cluster import Cluster
from web.server import build_web_app


async def _until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


async def test_a_slice_waits_until_the_queries_in_flight_are_done() -> None:
    queries = QueriesInFlight()
    slicer = _Slicer(queries)
    with queries.running():
        tick = asyncio.create_task(slicer.tick())
        await _until(lambda: queries._idle is not None and not queries._idle.is_set())  # the tick waits
        assert not tick.done()
    await asyncio.wait_for(tick, 1.0)
    assert queries.count == 0


async def test_a_slice_waits_no_longer_than_its_bound() -> None:
    queries = QueriesInFlight()
    with queries.running():
        started = time.perf_counter()
        await asyncio.wait_for(_Slicer(queries).tick(), 5.0)  # a query that never ends
        assert time.perf_counter() - started >= QUERY_FIRST_MAX_S * 0.9
    started = time.perf_counter()
    await _Slicer(queries).tick()  # nothing in flight, slice not used up: no wait at all
    assert time.perf_counter() - started < QUERY_FIRST_MAX_S / 2


async def test_a_cut_makes_no_progress_while_a_query_is_answered(tables: StorageTables) -> None:  # noqa: F811
    storage, feed = make(tables), Feed()
    for sid in range(1, 201):
        feed.send(storage, sid, T0 + np.arange(10, dtype=np.int64) * 1000, np.ones(10))
    with storage.queries.running():
        cut = asyncio.create_task(storage.cut(P))
        await _until(lambda: storage.queries._idle is not None and not storage.queries._idle.is_set())
        assert not cut.done()
        assert storage.state(P).cutting is not None  # the head is still being written out
    stats = await asyncio.wait_for(cut, 10.0)
    assert stats.segments == 200


async def test_every_request_to_the_worker_counts_as_in_flight(tables: StorageTables) -> None:  # noqa: F811
    storage = make(tables)
    seen: list[int] = []

    async def probe(request: web.Request) -> web.Response:
        seen.append(storage.queries.count)
        return web.Response(text="ok")

    cluster = Cluster(storage, "http://127.0.0.1:1", lambda: set())
    app = build_web_app(storage, lambda: True, cluster)
    app.router.add_get("/probe", probe)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/probe") as r:
            assert r.status == 200
    finally:
        await runner.cleanup()
        await cluster.close()
    assert seen == [1]
    assert storage.queries.count == 0



async def test_seals_hand_the_loop_back_in_short_slices(tables: StorageTables) -> None:  # noqa: F811
    """A request cannot even be read while a slice runs: seal slices are SEAL_SLICE_S, not the cut's 20 ms."""
    storage, feed = make(tables), Feed()
    storage._seal_budget = SealBudget(share=1.0, burst_s=60.0)
    ts = T0 + np.arange(0, BLOCK_MS, 10_000, dtype=np.int64)
    sids = list(range(1, 401))
    for sid in sids:
        feed.send(storage, sid, ts, np.ones(ts.size))
    await storage.cut(P)
    feed.send(storage, 1, [T0 + BLOCK_MS + HOUR_MS], [1.0])  # every block of the first cut may seal now
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    watch = asyncio.create_task(ticker())
    stats = await storage.cut(P)
    watch.cancel()
    assert stats.sealed == len(sids) and not stats.deferred
    long_gaps = sorted(gaps)[-20:]  # the slices, not the many quick turns between them
    assert len(gaps) > 40
    assert np.median(long_gaps) < 0.6 * CUT_SLICE_S, long_gaps  # a cut-sized slice would be ≥ CUT_SLICE_S
