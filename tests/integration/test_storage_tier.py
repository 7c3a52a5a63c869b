"""Storage tier on the real stack: rollups, retention, late data."""

from __future__ import annotations

import asyncio
import time
import urllib.parse

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from metricsflow.codecs import raw_decimal
from tests.support import Stack, get_json, http, wait_for

pytestmark = pytest.mark.integration
HOUR_MS = 3_600_000


def post(stack: Stack, metric: str, ts: list[int], vals: list[float], kind: str | None = None) -> dict:
    pts = [{"metric_name": metric, "timestamp": t, "value": v, "tags": {"s": "1"}}
           for t, v in zip(ts, vals, strict=True)]
    if kind:
        for p in pts:
            p["kind"] = kind
    status, _, body = http("POST", stack.collector_url + "/v1/metrics", orjson.dumps({"metrics": pts}),
                           {"Content-Type": "application/json"})
    assert status == 202, body
    return orjson.loads(body)


def tier_query(worker: str, selector: str, start_ms: int, end_ms: int, tier: str, agg: str = "avg") -> dict:
    q = urllib.parse.urlencode({"query": selector, "start": start_ms / 1000, "end": end_ms / 1000, "tier": tier,
                                "agg": agg})
    status, doc = get_json(f"{worker}/v1/query?{q}")
    assert status == 200, doc
    assert doc["tier"] == tier
    return doc


def values(doc: dict) -> list[tuple[float, float]]:
    res = doc["data"]["result"]
    return [(t, float(v)) for t, v in res[0]["values"]] if res else []


def metric_value(worker: str, prefix: str) -> float:
    _, _, text = http("GET", worker + "/metrics")
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith(prefix):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_retention_drops_raw_blocks_and_keeps_rollups(stack: Stack) -> None:
    stack.start_collector()
    _, worker = stack.start_worker(MF_RAW_RETENTION_MS=str(4 * HOUR_MS), MF_RETENTION_CHECK_INTERVAL_S="1",
                                   MF_HEAD_CUT_INTERVAL_S="0.5")
    now = int(time.time() * 1000)
    old_start = (now - 10 * HOUR_MS) // HOUR_MS * HOUR_MS
    old_ts = [old_start + k * 10_000 for k in range(360)]  # one hour at 10 s
    old_vals = [float(k % 60) for k in range(360)]
    recent_ts = [now - 60_000 + k * 10_000 for k in range(6)]
    post(stack, "ret_m", old_ts, old_vals)
    post(stack, "ret_m", recent_ts, [1.0] * 6)

    # The old raw block goes once retention runs; its rollups stay.
    wait_for(lambda: not values(tier_query(worker, "ret_m", old_start, old_start + HOUR_MS, "raw")), 60,
             "old raw samples expired")
    wait_for(lambda: metric_value(worker, 'mf_worker_blocks_expired_total{tier="raw"}') >= 1, 30, "expiry counted")
    minute = values(tier_query(worker, "ret_m", old_start, old_start + HOUR_MS - 1, "1m"))
    assert len(minute) == 60
    np.testing.assert_allclose([v for _, v in minute], [np.mean(old_vals[i * 6:(i + 1) * 6]) for i in range(60)])
    hour = values(tier_query(worker, "ret_m", old_start, old_start + HOUR_MS - 1, "1h", "count"))
    assert hour == [(old_start / 1000, 360.0)]
    assert len(values(tier_query(worker, "ret_m", now - 120_000, now + 60_000, "raw"))) == 6
    # auto picks 1m for a range that starts before raw retention
    doc = tier_query(worker, "ret_m", old_start, now, "1m")
    auto = get_json(f"{worker}/v1/query?" + urllib.parse.urlencode(
        {"query": "ret_m", "start": old_start / 1000, "end": now / 1000}))[1]
    assert auto["tier"] == "1m" and auto["data"] == doc["data"]


def test_late_data_inside_the_window_is_merged_and_older_is_refused(stack: Stack) -> None:
    stack.start_collector()
    _, worker = stack.start_worker(MF_HEAD_CUT_INTERVAL_S="0.5")
    now = int(time.time() * 1000)
    base = (now - 2 * HOUR_MS) // 60_000 * 60_000
    ts = [base + HOUR_MS + k * 10_000 for k in range(60)]  # 10 minutes, one hour ago
    post(stack, "late_m", ts, [10.0] * 60)
    wait_for(lambda: len(values(tier_query(worker, "late_m", base, now, "raw"))) == 60, 60, "first points")
    refused_before = metric_value(worker, 'mf_worker_points_refused_total{reason="out_of_order_too_old"}')

    post(stack, "late_m", [ts[10] + 5_000], [99.0])  # out of order by 8 minutes: accepted
    post(stack, "late_m", [base], [7.0])  # an hour before the newest sample minus the window: refused
    wait_for(lambda: len(values(tier_query(worker, "late_m", base, now, "raw"))) == 61, 60, "late point merged")
    wait_for(lambda: metric_value(worker, 'mf_worker_points_refused_total{reason="out_of_order_too_old"}')
             == refused_before + 1, 30, "too-old point counted")
    raw = values(tier_query(worker, "late_m", base, now, "raw"))
    assert (ts[10] + 5_000) / 1000 in [t for t, _ in raw] and base / 1000 not in [t for t, _ in raw]
    # The minute holding the late point was recomputed: 7 samples, one of them 99.
    minute_start = (ts[10] + 5_000) // 60_000 * 60_000
    counts = dict(values(tier_query(worker, "late_m", minute_start, minute_start, "1m", "count")))
    maxes = dict(values(tier_query(worker, "late_m", minute_start, minute_start, "1m", "max")))
    assert counts == {minute_start / 1000: 7.0} and maxes == {minute_start / 1000: 99.0}


def test_distribution_quantiles_from_rollups(stack: Stack) -> None:
    stack.start_collector()
    _, worker = stack.start_worker(MF_HEAD_CUT_INTERVAL_S="0.5")
    now = int(time.time() * 1000)
    start = (now - HOUR_MS) // HOUR_MS * HOUR_MS
    rng = np.random.default_rng(5)
    obs = rng.exponential(100, 3000)
    ts = [start + k * 1000 + 1 for k in range(3000)]  # 50 minutes, one observation per second
    post(stack, "latency_ms", ts, obs.tolist(), kind="distribution")
    wait_for(lambda: len(values(tier_query(worker, "latency_ms", start, now, "raw"))) == 3000, 60, "observations")
    p99 = values(tier_query(worker, "latency_ms", start, start, "1h", "p99"))
    assert len(p99) == 1
    rank = (obs < p99[0][1]).mean()
    assert abs(rank - 0.99) / 0.99 < 0.01, (p99, np.quantile(obs, 0.99))


def latest_values(stack: Stack, table: str) -> dict[bytes, bytes | None]:
    """Every key of a table's changelog with its last record's value (None: a tombstone)."""
    async def read() -> dict[bytes, bytes | None]:
        topic = stack.changelog_topic(table)
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(stack.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: dict[bytes, bytes | None] = {}
            async def behind() -> bool:
                return any([await consumer.position(tp) < end for tp, end in ends.items()])

            while await behind():
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    out.update((r.key, r.value) for r in records if not r.key.startswith(b"__faust"))
            return out
        finally:
            await consumer.stop()
    return asyncio.run(read())


def test_sealed_segments_leave_the_changelog(stack: Stack) -> None:
    """A seal deletes the block's segments locally and with tombstones in their changelog, or a
    worker restored from the changelogs would read them (and seal them) again."""
    stack.start_collector()
    _, worker = stack.start_worker(MF_HEAD_CUT_INTERVAL_S="0.5")
    old_start = (int(time.time() * 1000) - 10 * HOUR_MS) // HOUR_MS * HOUR_MS
    def health() -> dict:
        return get_json(f"{worker}/healthz")[1]

    for first in (0, 60):  # two cuts: two segments of the one block
        post(stack, "seal_m", [old_start + k * 10_000 for k in range(first, first + 60)], [1.0] * 60)
        wait_for(lambda first=first: health()["head_points"] == 0 and health()["unsealed_blocks"] == 1
                 and len(values(tier_query(worker, "seal_m", old_start, old_start + HOUR_MS, "raw"))) == first + 60,
                 60, "points cut into a segment")
    wait_for(lambda: sum(v is not None for v in latest_values(stack, "segments").values()) == 2, 60,
             "both segments in the changelog")  # the cut's flush sends them after the head is swapped
    # 1.0 is a decimal: both went to the changelog with their values as mantissas (chunk tag 5).
    assert {v[0] for v in latest_values(stack, "segments").values() if v is not None} == {raw_decimal.TAG}
    assert metric_value(worker, "mf_worker_decimal_segments_written_total") == 2
    post(stack, "seal_m", [int(time.time() * 1000)], [1.0])  # the newest sample puts the old block past the horizon
    wait_for(lambda: any(v is not None for v in latest_values(stack, "chunks").values()), 60,
             "the old block sealed into a chunk")
    # Its two segments are tombstoned in the changelog; the newest sample's block keeps its one.
    wait_for(lambda: sorted(v is None for v in latest_values(stack, "segments").values()) == [False, True, True],
             60, "the sealed block's segments tombstoned in the changelog")
