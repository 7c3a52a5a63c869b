"""PromQL over the rollup tiers: long or old ranges read the 1m/1h aggregates with the right stand-in."""

from __future__ import annotations

import time
import urllib.parse

import orjson
import pytest

from tests.support import Stack, get_json, http, wait_for

pytestmark = pytest.mark.integration
HOUR_MS = 3_600_000


def query_range(worker: str, q: str, start_ms: int, end_ms: int, step: str, tier: str | None = None) -> dict:
    params = {"query": q, "start": start_ms / 1000, "end": end_ms / 1000, "step": step}
    if tier:
        params["tier"] = tier
    status, doc = get_json(f"{worker}/api/v1/query_range?{urllib.parse.urlencode(params)}")
    assert status == 200, doc
    return doc


def test_rate_and_max_over_time_from_rollups_after_raw_expired(stack: Stack) -> None:
    stack.start_collector()
    _, worker = stack.start_worker(MF_RAW_RETENTION_MS=str(2 * HOUR_MS), MF_RETENTION_CHECK_INTERVAL_S="1",
                                   MF_HEAD_CUT_INTERVAL_S="0.5")
    now = int(time.time() * 1000)
    start = (now - 8 * HOUR_MS) // HOUR_MS * HOUR_MS  # 3 hours of data, 5-8 h ago
    ts = [start + k * 10_000 for k in range(3 * 360)]
    counter, value = [], 0.0
    for k in range(len(ts)):
        value = 0.0 if k == 500 else value + 1.0  # one reset
        counter.append(value)
    gauge = [float((k * 7) % 100) for k in range(len(ts))]
    pts = [{"metric_name": "req_total", "timestamp": t, "value": c, "kind": "counter"}
           for t, c in zip(ts, counter, strict=True)]
    pts += [{"metric_name": "temp", "timestamp": t, "value": g} for t, g in zip(ts, gauge, strict=True)]
    status, _, body = http("POST", stack.collector_url + "/v1/metrics", orjson.dumps({"metrics": pts}),
                           {"Content-Type": "application/json"})
    assert status == 202, body

    # Raw samples expire; the rollups answer the same PromQL.
    wait_for(lambda: query_range(worker, "temp", start, start + 3 * HOUR_MS, "10m", tier="1m")["data"]["result"],
             60, "data stored")
    wait_for(lambda: not query_range(worker, "temp", start, start + 3 * HOUR_MS, "10m", tier="raw")["data"]["result"],
             60, "raw samples expired")
    doc = query_range(worker, "rate(req_total[10m])", start + HOUR_MS, start + 2 * HOUR_MS, "10m")
    assert doc["tier"] == "1m"
    rates = [float(v) for _, v in doc["data"]["result"][0]["values"]]
    assert len(rates) == 7 and all(abs(r - 0.1) < 0.01 for r in rates), rates  # 1 per 10 s, reset absorbed

    doc = query_range(worker, "max_over_time(temp[30m])", start + HOUR_MS, start + 2 * HOUR_MS, "30m")
    assert [float(v) for _, v in doc["data"]["result"][0]["values"]] == [99.0, 99.0, 99.0]

    # The 1h tier has one sample per hour: ranges must span two windows to see two samples.
    doc = query_range(worker, "min_over_time(temp[2h])", start + 3 * HOUR_MS, start + 3 * HOUR_MS, "1h", tier="1h")
    assert doc["tier"] == "1h" and doc["data"]["result"][0]["values"] == [[(start + 3 * HOUR_MS) // 1000, "0"]]
    doc = query_range(worker, "increase(req_total[2h])", start + 3 * HOUR_MS, start + 3 * HOUR_MS, "1h", tier="1h")
    [(_, inc)] = doc["data"]["result"][0]["values"]
    assert float(inc) >= 360, inc  # one hour's 360 increments between the two samples, extrapolated
