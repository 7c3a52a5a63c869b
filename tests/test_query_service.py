"""Where a query is evaluated: small ones on the loop, large ones on the pool, with the same answer."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import web.query_api as query_api
from metricsflow import series_batch
from metricsflow.pb import metricsflow_pb2 as pb
from metricsflow.series_id import series_id
from tables.storage import StorageTables
from tests.test_storage_segments import HOUR_MS, T0, Feed, P, make, tables  # noqa: F401
from web.cluster import Cluster
from web.query_api import QueryService


class CountingPool(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


async def test_small_queries_run_on_the_loop_and_large_ones_on_the_pool(
        tables: StorageTables, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    storage, feed = make(tables), Feed()
    ts = np.arange(T0, T0 + HOUR_MS, 10_000, dtype=np.int64)
    sids = []
    for i in range(20):
        labels = {"__name__": "requests_total", "instance": f"i{i}"}
        sids.append(series_id("default", labels))
        info = pb.SeriesInfo(tenant="default", labels=[pb.Label(name=k, value=v) for k, v in sorted(labels.items())])
        for key, value in series_batch.encode_batches([sids[-1]], [info]):
            storage.ingest_series(P, key, value)
        feed.send(storage, sids[-1], ts, np.arange(ts.size, dtype=np.float64) * (i + 1))
    service = QueryService(Cluster(storage, "http://127.0.0.1:1", lambda: set()))
    service.pool.shutdown()
    service.pool = pool = CountingPool()
    evaluated_on: list[int] = []
    run = service.evaluate

    async def evaluate(fn, small):  # type: ignore[no-untyped-def]
        def recorded():  # type: ignore[no-untyped-def]
            evaluated_on.append(threading.get_ident())
            return fn()
        return await run(recorded, small)

    service.evaluate = evaluate  # type: ignore[method-assign]
    query = "sum(rate(requests_total[5m]))"
    try:
        small = await service.run("default", query, int(ts[30]), int(ts[-1]), 60_000, 10.0)
        assert pool.submitted == 0 and evaluated_on == [threading.get_ident()]
        # A subquery's inner steps are not in what it reads: always the pool.
        await service.run("default", "max_over_time(rate(requests_total[5m])[10m:1m])", int(ts[30]), int(ts[-1]),
                          60_000, 10.0)
        assert pool.submitted == 1 and evaluated_on[1] != threading.get_ident()
        monkeypatch.setattr(query_api, "INLINE_MAX_SAMPLES", 100)  # the query reads ~6,000
        large = await service.run("default", query, int(ts[30]), int(ts[-1]), 60_000, 10.0)
        assert pool.submitted == 2 and evaluated_on[2] != threading.get_ident()
    finally:
        pool.shutdown()
    assert small.to_json_bytes() == large.to_json_bytes()
    assert len(small.series) == 1 and small.series[0].values.size > 50


def test_many_steps_or_a_subquery_are_never_small() -> None:
    assert query_api._small("sum(rate(x[5m]))", 1_000, 0, 3_600_000, 60_000)
    assert not query_api._small("sum(rate(x[5m]))", 1_000, 0, 30 * 86_400_000, 60_000)  # 43,201 steps
    assert not query_api._small("sum(rate(x[5m]))", 10**6, 0, 3_600_000, 60_000)
    assert not query_api._small("-(max_over_time(x[1h:10s]))", 10, 0, 0, 0)
    assert not query_api._small("sum by (a) (x) / on (a) count by (a) (max_over_time(x[5m:] offset 1m))", 10, 0, 0, 0)
