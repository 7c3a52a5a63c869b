"""The client SDK against a real collector, Kafka and worker: what it writes comes back, and
with the collector gone recording stays fast, bounded and silent."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from metricsflow.client import AsyncClient, Client
from tests.support import Stack, query_raw, wait_for

pytestmark = pytest.mark.integration


def _query_tenant(worker: str, selector: str, start_s: float, n_series: int, n_points: int = 1
                  ) -> dict[str, list[float]] | None:
    """{via: values} once ``n_series`` series with ``n_points`` points each are queryable."""
    # One second of slack: the query start is rounded to ms, the points were truncated to ms.
    result = query_raw(worker, selector, start_s - 1, time.time() + 60, tenant="sdk")
    got = {r["metric"]["via"]: [float(v) for _, v in r["values"]] for r in result}
    if len(got) < n_series or any(len(v) < n_points for v in got.values()):
        return None
    return got


def test_points_from_both_clients_and_both_transports_are_queryable(stack: Stack) -> None:
    stack.start_collector()
    _, worker = stack.start_worker()
    start_s = time.time() - 5
    ts0 = int(start_s * 1000)

    with Client(f"127.0.0.1:{stack.grpc_port}", tenant="sdk", flush_interval_s=0.2) as grpc_client, \
            Client(stack.collector_url, transport="http", tenant="sdk", flush_interval_s=0.2) as http_client:
        for via, client in (("grpc", grpc_client), ("http", http_client)):
            for i in range(100):
                client.write("sdk_gauge", float(i), timestamp_ms=ts0 + i, tags={"via": via})
            for _ in range(10):
                client.counter("sdk_requests", 2, via=via)
            client.timer("sdk_latency_seconds", 0.25, via=via)
            assert client.flush(30), client.stats
        for client in (grpc_client, http_client):
            st = client.stats
            assert (st.accepted, st.rejected, st.dropped) == (111, 0, 0), st

    async def async_writes() -> None:
        async with AsyncClient(f"127.0.0.1:{stack.grpc_port}", tenant="sdk", flush_interval_s=0.2) as client:
            for i in range(100):
                client.write("sdk_gauge", float(i), timestamp_ms=ts0 + i, tags={"via": "async"})
            client.counter("sdk_requests", 5, via="async")
            assert await client.flush(30)
            assert client.stats.accepted == 101

    asyncio.run(async_writes())

    gauges = wait_for(lambda: _query_tenant(worker, "sdk_gauge", start_s, 3, 100), 60, "gauges of all clients")
    assert sorted(gauges) == ["async", "grpc", "http"]
    assert all(v == [float(i) for i in range(100)] for v in gauges.values()), gauges
    counters = wait_for(lambda: _query_tenant(worker, "sdk_requests", start_s, 3), 60, "counters")
    assert counters["grpc"][-1] == counters["http"][-1] == 20.0  # running totals
    assert counters["async"] == [5.0]
    assert all(np.all(np.diff(v) >= 0) for v in counters.values())
    latency = wait_for(lambda: _query_tenant(worker, "sdk_latency_seconds", start_s, 2), 60, "timers")
    assert latency == {"grpc": [0.25], "http": [0.25]}


def test_collector_down_100k_calls_stay_within_bound_then_recover(stack: Stack) -> None:
    collector = stack.start_collector()
    _, worker = stack.start_worker()
    client = Client(f"127.0.0.1:{stack.grpc_port}", max_buffered_points=50_000, flush_interval_s=0.2,
                    backoff_max_s=1.0)
    try:
        client.gauge("sdk_outage", -1.0)
        assert client.flush(30) and client.stats.accepted == 1
        collector.stop()

        durations = np.empty(100_000)
        clock = time.perf_counter
        started = clock()
        for i in range(100_000):
            t0 = clock()
            client.gauge("sdk_outage", float(i), worker="w1")
            durations[i] = clock() - t0
        total_s = clock() - started
        st = client.stats
        p50, p99, p999 = np.percentile(durations, [50, 99, 99.9]) * 1e6
        print(f"100k gauge() with the collector down: total {total_s:.3f} s, p50 {p50:.1f} µs, "
              f"p99 {p99:.1f} µs, p99.9 {p999:.1f} µs, max {durations.max() * 1e3:.2f} ms; "
              f"dropped {st.dropped}, retries {st.retries}")
        assert total_s < 5.0
        assert p50 < 50.0  # µs; p99/max include OS preemption on a busy machine, so they are reported
        assert st.dropped_by_reason.get("buffer_full", 0) >= 45_000
        assert st.buffered <= 50_000

        stack.start_collector()  # same ports: the client's retries reach it again
        assert client.flush(60), client.stats
        st = client.stats
        assert st.accepted == st.sent >= 50_000 and st.rejected == 0, st
    finally:
        client.close(2.0)
    got = wait_for(lambda: (r := query_raw(worker, 'sdk_outage{worker="w1"}', time.time() - 300, time.time() + 60))
                   and sum(len(x["values"]) for x in r) >= 1 and r, 60, "points sent after the outage")
    assert got[0]["metric"]["__name__"] == "sdk_outage"
