"""Query pushdown on the real stack: two workers answer like one, and peers ship partials, not samples."""

from __future__ import annotations

import time
import urllib.parse

import orjson
import pytest

from tests.support import Stack, get_json, http, metric_samples, metric_value, wait_for

pytestmark = pytest.mark.integration

N_SERIES = 40
# Integer-valued aggregations are exact whatever the summation order; rate() values are
# fractional, so adding per-partition sums may differ in the last bit (checked to 1e-12).
EXACT = [
    "sum by (grp) (pd_m)",
    "avg by (grp) (pd_m)",
    "max without (i) (pd_m)",
    "count(pd_m > 10)",
    "topk(3, pd_m)",
    "max(sum by (grp) (pd_m))",
    "sum(pd_m) / count(pd_m)",
    "quantile(0.5, pd_m)",
]
CLOSE = ["sum by (grp) (rate(pd_c[2m]))", "stddev(pd_m)"]


def write(stack: Stack, now_ms: int) -> None:
    pts = []
    for i in range(N_SERIES):
        tags = {"i": str(i), "grp": ("a", "b", "c")[i % 3]}
        for k in range(40):
            ts = now_ms - k * 15_000
            pts.append({"metric_name": "pd_m", "timestamp": ts, "value": float((i * 7 + k) % 23), "tags": tags})
            pts.append({"metric_name": "pd_c", "timestamp": ts, "value": float((40 - k) * (i + 1)), "tags": tags})
    status, _, body = http("POST", stack.collector_url + "/v1/metrics", orjson.dumps({"metrics": pts}),
                           {"Content-Type": "application/json"})
    assert status == 202, body


def query_range(url: str, query: str, now_ms: int) -> list[dict]:
    params = {"query": query, "start": now_ms / 1000 - 480, "end": now_ms / 1000, "step": "30s"}
    status, doc = get_json(f"{url}/api/v1/query_range?{urllib.parse.urlencode(params)}")
    assert status == 200 and doc["status"] == "success" and "warnings" not in doc, doc
    return doc["data"]["result"]


def counter(url: str, name: str, **labels: str) -> float:
    return metric_value(url, name, **labels) or 0.0


def series_count(url: str) -> int:
    return int(orjson.loads(http("GET", url + "/healthz")[2])["series"])


def fetches_no_own_changelog(url: str, standbys: bool) -> bool:
    """The worker's consumer fetches no changelog of its own tables (Faust pauses those only in its own
    bookkeeping, agents/consumer_fetch.py in the client), and goes on fetching its standby replicas."""
    def n(kind: str, state: str) -> float:
        return metric_value(url, "mf_worker_consumer_partitions", kind=kind, state=state) or 0.0
    return (n("changelog", "fetched") == 0 and n("changelog", "paused") > 0 and n("stream", "fetched") > 0
            and n("standby", "paused") == 0 and (n("standby", "fetched") > 0) == standbys)


def test_two_workers_answer_like_one_with_partials(stack: Stack) -> None:
    stack.partitions = 8
    stack.start_collector()
    # Faust's livelock check after 5 s instead of 5 minutes: the paused changelogs must not set it off.
    w1, url1 = stack.start_worker("w1", STREAM_PROCESSING_TIMEOUT="5")
    now = int(time.time() * 1000) // 1000 * 1000
    write(stack, now)

    def complete(url: str) -> bool:
        result = query_range(url, "count(pd_m)", now)
        return bool(result) and result[0]["values"][-1][1] == str(N_SERIES)

    wait_for(lambda: complete(url1), 90, "worker 1 holds every series")
    wait_for(lambda: fetches_no_own_changelog(url1, standbys=False), 10, "worker 1 stopped fetching its changelogs")
    single = {q: query_range(url1, q, now) for q in EXACT + CLOSE}
    assert all(single.values()), single

    _, url2 = stack.start_worker("w2")

    def split() -> bool:
        # Counting reads every partition, so /healthz then shows each worker's share of the series.
        return (complete(url1) and complete(url2)
                and 0 < series_count(url1) < 2 * N_SERIES and 0 < series_count(url2) < 2 * N_SERIES)

    wait_for(split, 120, "the group rebalanced: each worker holds some partitions, both count every series")

    def lag_partitions(url: str) -> set[str]:
        return {labels["partition"] for labels, _ in metric_samples(url, "mf_worker_consumer_lag")}

    # Worker 1 consumed all 8 partitions; it keeps reporting the lag of those it still has and drops the
    # others (worker 2 reports a partition's lag once it consumes a message of it).
    wait_for(lambda: 0 < len(a := lag_partitions(url1)) < 8 and not a & lag_partitions(url2), 15,
             "worker 1 reports the consumer lag of its own partitions only")
    for url in (url1, url2):  # the new assignment gave the client fresh partitions: paused again after recovery
        wait_for(lambda u=url: fetches_no_own_changelog(u, standbys=True), 10,
                 f"{url} fetches its standby changelogs and none of its own after the rebalance")

    for url in (url1, url2):
        partials_before = counter(url, "mf_worker_query_partials_total", source="peer")
        partial_bytes_before = counter(url, "mf_worker_query_peer_bytes_total", kind="partial")
        select_bytes_before = counter(url, "mf_worker_query_peer_bytes_total", kind="select")
        channel_before = counter(url, "mf_worker_query_peer_requests_total", transport="channel")
        http_before = counter(url, "mf_worker_query_peer_requests_total", transport="http")
        for q in EXACT:
            assert query_range(url, q, now) == single[q], q
        for q in CLOSE:
            got, want = query_range(url, q, now), single[q]
            assert [s["metric"] for s in got] == [s["metric"] for s in want], q
            for gs, ws in zip(got, want, strict=True):
                assert [t for t, _ in gs["values"]] == [t for t, _ in ws["values"]], q
                for (_, g), (_, w) in zip(gs["values"], ws["values"], strict=True):
                    assert float(g) == pytest.approx(float(w), rel=1e-12), q
        n = len(EXACT) + len(CLOSE)
        assert counter(url, "mf_worker_query_partials_total", source="peer") - partials_before == n
        received = counter(url, "mf_worker_query_peer_bytes_total", kind="partial") - partial_bytes_before
        assert received > 0
        # No raw samples crossed: queries went through /internal/v1/partial only.
        assert counter(url, "mf_worker_query_peer_bytes_total", kind="select") == select_bytes_before
        # Every partial came over the peer's channel (web/peer_channel.py), none by POST.
        assert counter(url, "mf_worker_query_peer_requests_total", transport="channel") - channel_before == n
        assert counter(url, "mf_worker_query_peer_requests_total", transport="http") == http_before
    complaints = [line for line in w1.log.read_text(errors="replace").splitlines()
                  if "Aiokafka has not sent fetch request" in line or "Aiokafka stopped fetching" in line]
    assert not complaints, complaints[:3]
