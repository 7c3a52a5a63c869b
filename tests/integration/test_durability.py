"""kill -9 under load loses no acknowledged point, stores none twice, and rollups match the raw data."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse

import numpy as np
import pytest

from tests.support import REPO, Stack, get_json, http, metric_samples, wait_for

pytestmark = pytest.mark.integration
SELECTOR = '{__name__=~"cpu_usage_.*"}'


def start_load(stack: Stack, seconds: float, rate: int = 4000, hosts: int = 20) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "metricsflow", "load", "--protocol", "grpc", "--rate", str(rate), "--duration",
         str(seconds), "--hosts", str(hosts), "--series-per-request", "100", "--samples-per-series", "2",
         "--grpc", f"127.0.0.1:{stack.grpc_port}", "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def load_summary(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["errors"] == 0 and summary["points_accepted"] == summary["points_sent"], summary
    return summary


def raw_series(worker: str) -> list[dict]:
    q = urllib.parse.urlencode({"query": SELECTOR, "start": 0, "end": time.time() + 600, "tier": "raw"})
    status, doc = get_json(f"{worker}/v1/query?{q}")
    assert status == 200, doc
    return doc["data"]["result"]


def stored_points(worker: str) -> int:
    return sum(len(r["values"]) for r in raw_series(worker))


def consumption(worker: str) -> str:
    """What a worker's /metrics says of its consumption: to tell points never consumed from points refused."""
    parts = [f"stored {stored_points(worker)}"]
    for name in ("mf_worker_points_consumed_total", "mf_worker_batches_consumed_total",
                 "mf_worker_points_refused_total", "mf_worker_consumer_lag"):
        parts += [f"{name}{labels or ''} {value:g}" for labels, value in metric_samples(worker, name)]
    return ", ".join(parts)


def assert_rollups_match_raw(worker: str) -> None:
    for series in raw_series(worker)[:5]:
        ts = np.array([round(t * 1000) for t, _ in series["values"]], dtype=np.int64)
        vals = np.array([float(v) for _, v in series["values"]])
        sel = "{" + ",".join(f'{k}="{v}"' for k, v in series["metric"].items()) + "}"
        for agg, fn in (("count", len), ("sum", np.sum), ("max", np.max)):
            first_minute = ts[0] // 60_000 * 60_000  # rollup windows are selected by their start
            q = urllib.parse.urlencode({"query": sel, "start": first_minute / 1000, "end": ts[-1] / 1000,
                                        "tier": "1m", "agg": agg})
            _, doc = get_json(f"{worker}/v1/query?{q}")
            got = {t: float(v) for t, v in doc["data"]["result"][0]["values"]}
            minutes = ts // 60_000 * 60_000
            want = {m / 1000 if m % 1000 else m // 1000: float(fn(vals[minutes == m])) for m in np.unique(minutes)}
            assert got.keys() == want.keys(), agg
            np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-12, err_msg=agg)


def test_kill9_single_worker_under_load(stack: Stack) -> None:
    stack.start_collector()
    proc, worker = stack.start_worker("w1", MF_HEAD_CUT_INTERVAL_S="2")
    port = int(worker.rsplit(":", 1)[1])
    load = start_load(stack, 20)
    wait_for(lambda: stored_points(worker) > 20_000, 30, "data flowing")
    proc.kill9()
    killed_at = time.monotonic()
    proc, worker = stack.start_worker("w1", web_port=port, MF_HEAD_CUT_INTERVAL_S="2")
    print(f"recovery: kill -9 → ready in {time.monotonic() - killed_at:.1f}s")
    summary = load_summary(load)
    accepted = summary["points_accepted"]
    wait_for(lambda: stored_points(worker) >= accepted, 90, f"all {accepted} acknowledged points stored")
    assert stored_points(worker) == accepted, "every acknowledged point exactly once, nothing extra"
    assert_rollups_match_raw(worker)


def test_kill9_one_of_two_workers_the_other_takes_over(stack: Stack) -> None:
    stack.start_collector()
    w1, url1 = stack.start_worker("w1", MF_STANDBY_REPLICAS="1", MF_HEAD_CUT_INTERVAL_S="2")
    _w2, url2 = stack.start_worker("w2", MF_STANDBY_REPLICAS="1", MF_HEAD_CUT_INTERVAL_S="2")
    wait_for(lambda: http("GET", url1 + "/readyz")[0] == 200 and http("GET", url2 + "/readyz")[0] == 200, 60,
             "both workers own partitions")
    load = start_load(stack, 25)
    wait_for(lambda: stored_points(url1) + stored_points(url2) > 20_000, 30, "data flowing to both")
    w1.kill9()
    killed_at = time.monotonic()
    # The survivor keeps answering while it takes over.
    while load.poll() is None:
        assert http("GET", url2 + "/v1/query?query=cpu_usage_user")[0] == 200
        time.sleep(0.5)
    summary = load_summary(load)
    accepted = summary["points_accepted"]
    try:
        wait_for(lambda: stored_points(url2) >= accepted, 120, f"w2 serves all {accepted} acknowledged points")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; w2: {consumption(url2)}") from None
    print(f"failover: kill -9 → survivor has everything in {time.monotonic() - killed_at:.1f}s")
    assert stored_points(url2) == accepted
    assert_rollups_match_raw(url2)
