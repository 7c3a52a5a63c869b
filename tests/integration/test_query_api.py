"""The Prometheus query API on the real stack, and scatter-gather across two workers."""

from __future__ import annotations

import time
import urllib.parse

import orjson
import pytest

from tests.support import Stack, get_json, http, query_raw, wait_for

pytestmark = pytest.mark.integration


def write(stack: Stack, n_series: int, now_ms: int) -> None:
    pts = [{"metric_name": "api_m", "timestamp": now_ms - k * 15_000, "value": float(i + k),
            "tags": {"i": str(i), "grp": "even" if i % 2 == 0 else "odd"}}
           for i in range(n_series) for k in range(20)]
    status, _, body = http("POST", stack.collector_url + "/v1/metrics", orjson.dumps({"metrics": pts}),
                           {"Content-Type": "application/json"})
    assert status == 202, body


def api(worker: str, path: str, **params: object) -> tuple[int, dict]:
    return get_json(f"{worker}{path}?{urllib.parse.urlencode(params)}")


def test_prometheus_api_shapes_and_errors(stack: Stack) -> None:
    stack.start_collector()
    _, worker = stack.start_worker()
    now = int(time.time() * 1000) // 1000 * 1000
    write(stack, 10, now)
    wait_for(lambda: len(query_raw(worker, "api_m", now / 1000 - 600, now / 1000)) == 10, 60, "series stored")

    status, doc = api(worker, "/api/v1/query", query="sum by (grp) (api_m)", time=now / 1000)
    assert status == 200 and doc["data"]["resultType"] == "vector"
    got = {r["metric"]["grp"]: r["value"] for r in doc["data"]["result"]}
    assert got == {"even": [now // 1000, "20"], "odd": [now // 1000, "25"]}  # 0+2+4+6+8, 1+3+5+7+9

    status, doc = api(worker, "/api/v1/query_range", query='api_m{i="3"} * 2', start=now / 1000 - 60,
                      end=now / 1000, step="30s")
    assert status == 200 and doc["data"]["resultType"] == "matrix"
    assert doc["data"]["result"][0]["values"] == [[now // 1000 - 60, "14"], [now // 1000 - 30, "10"],
                                                  [now // 1000, "6"]]
    assert doc["data"]["result"][0]["metric"] == {"grp": "odd", "i": "3"}

    status, doc = api(worker, "/v1/query", query="count(api_m)", start=now / 1000 - 30, end=now / 1000, step=30)
    assert status == 200 and [v for _, v in doc["data"]["result"][0]["values"]] == ["10", "10"]

    status, doc = api(worker, "/api/v1/query", query="scalar(vector(2)) + 1", time=now / 1000)
    assert doc["data"] == {"resultType": "scalar", "result": [now // 1000, "3"]}

    for params, code, etype in [
        ({"query": "sum(api_m"}, 400, "bad_data"),
        ({"query": "api_m", "time": "yesterday"}, 400, "bad_data"),
        ({"query": "no_such_function(api_m)"}, 400, "bad_data"),
        ({"query": 'label_replace(api_m, "i", "same", "", "")'}, 422, "execution"),
    ]:
        status, doc = api(worker, "/api/v1/query", **params)
        assert (status, doc["status"], doc.get("errorType")) == (code, "error", etype), (params, doc)
        assert doc["error"]
    status, doc = api(worker, "/api/v1/query_range", query="api_m", start=now / 1000, end=now / 1000)
    assert status == 400 and "step" in doc["error"]
    status, doc = api(worker, "/api/v1/status/buildinfo")
    assert status == 200 and doc["data"]["version"]
    status, doc = api(worker, "/api/v1/metadata")
    assert status == 200 and "api_m" in doc["data"]


def test_any_worker_answers_for_the_whole_cluster(stack: Stack) -> None:
    stack.partitions = 8
    stack.start_collector()
    _, url1 = stack.start_worker("w1")
    _, url2 = stack.start_worker("w2")
    wait_for(lambda: http("GET", url1 + "/readyz")[0] == 200 and http("GET", url2 + "/readyz")[0] == 200, 90,
             "both workers own partitions")
    now = int(time.time() * 1000) // 1000 * 1000
    write(stack, 40, now)

    def counted(url: str) -> bool:
        status, doc = api(url, "/api/v1/query", query="count(api_m)", time=now / 1000)
        return status == 200 and doc["data"]["result"] and doc["data"]["result"][0]["value"][1] == "40"

    wait_for(lambda: counted(url1) and counted(url2), 90, "both workers count all 40 series")
    local1 = orjson.loads(http("GET", url1 + "/healthz")[2])["series"]
    local2 = orjson.loads(http("GET", url2 + "/healthz")[2])["series"]
    assert 0 < local1 < 40 and 0 < local2 < 40, (local1, local2)  # each holds only its partitions
    assert len(query_raw(url1, "api_m", now / 1000 - 600, now / 1000)) == 40
    status, doc = api(url2, "/v1/query", query="api_m", start=now / 1000 - 600, end=now / 1000, tier="1m",
                      agg="max")
    assert status == 200 and doc["tier"] == "1m" and len(doc["data"]["result"]) == 40
    _, doc = api(url2, "/api/v1/query", query='sum(api_m{grp="odd"})', time=now / 1000)
    assert doc["data"]["result"][0]["value"][1] == str(sum(range(1, 40, 2)))
