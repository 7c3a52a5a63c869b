"""Label matchers select exactly the right series, and tenants never see each other."""

from __future__ import annotations

import itertools
import re
import time

import orjson
import pytest

from tests.support import Stack, get_json, http, query_raw, wait_for

pytestmark = pytest.mark.integration

ENVS = ("prod", "staging", "dev")
REGIONS = ("eu-west-1", "us-east-1")


def post(stack: Stack, points: list[dict], tenant: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    status, _, body = http("POST", stack.collector_url + "/v1/metrics", orjson.dumps({"metrics": points}), headers)
    assert status == 202, body
    return orjson.loads(body)


def test_label_matchers_select_exactly(stack: Stack) -> None:
    stack.start_collector()
    _, worker = stack.start_worker()
    now = int(time.time() * 1000)
    label_sets = [{"env": e, "region": r, "host": f"h{i}_{k}"}
                  for i, (e, r) in enumerate(itertools.product(ENVS, REGIONS)) for k in range(10)]
    label_sets += [{"region": "eu-west-1", "host": "noenv"}]  # a series without the env label
    post(stack, [{"metric_name": "sel_m", "timestamp": now, "value": 1, "tags": t} for t in label_sets])
    post(stack, [{"metric_name": "sel_other", "timestamp": now, "value": 1, "tags": {"env": "prod"}}])
    post(stack, [{"metric_name": "sel_m", "timestamp": now, "value": 1, "tags": {"env": "prod", "host": "x"}}],
         tenant="tenant-b")
    wait_for(lambda: len(query_raw(worker, "sel_m", now / 1000 - 60, now / 1000 + 60)) == len(label_sets), 60,
             "all series indexed")
    # Tenant-b's one series too, so the selections below would show it if tenants leaked into each other.
    wait_for(lambda: query_raw(worker, "sel_m", now / 1000 - 60, now / 1000 + 60, tenant="tenant-b"), 60,
             "tenant-b's series indexed")

    cases = {
        'sel_m{env="prod"}': lambda t: t.get("env", "") == "prod",
        'sel_m{env!="prod"}': lambda t: t.get("env", "") != "prod",
        'sel_m{env=~"prod|dev"}': lambda t: re.fullmatch("prod|dev", t.get("env", "")) is not None,
        'sel_m{env!~"prod|dev"}': lambda t: re.fullmatch("prod|dev", t.get("env", "")) is None,
        'sel_m{env=~"p.*",region!="us-east-1"}': lambda t: t.get("env", "").startswith("p")
        and t["region"] != "us-east-1",
        'sel_m{env=""}': lambda t: "env" not in t,
        '{__name__=~"sel_.*",env="prod"}': None,
    }
    for selector, want in cases.items():
        got = query_raw(worker, selector, now / 1000 - 60, now / 1000 + 60)
        got_hosts = sorted(r["metric"].get("host", "?") for r in got)
        if want is None:  # the cross-metric case: both metrics' prod series
            assert len(got) == 1 + sum(1 for t in label_sets if t.get("env") == "prod"), selector
            continue
        assert got_hosts == sorted(t["host"] for t in label_sets if want(t)), selector

    # Tenancy: tenant-b sees its one series only, default never sees tenant-b's.
    theirs = query_raw(worker, 'sel_m{env="prod"}', now / 1000 - 60, now / 1000 + 60, tenant="tenant-b")
    assert [r["metric"]["host"] for r in theirs] == ["x"]
    ours = query_raw(worker, 'sel_m{host="x"}', now / 1000 - 60, now / 1000 + 60)
    assert ours == []

    status, doc = get_json(f"{worker}/api/v1/label/env/values")
    assert status == 200 and doc["data"] == sorted(ENVS)
    status, doc = get_json(f"{worker}/api/v1/labels")
    assert doc["data"] == ["__name__", "env", "host", "region"]
    status, doc = get_json(f"{worker}/api/v1/series?match[]=sel_m%7Bhost%3D%22noenv%22%7D")
    assert doc["data"] == [{"__name__": "sel_m", "host": "noenv", "region": "eu-west-1"}]
    status, doc = get_json(f"{worker}/api/v1/series")
    assert status == 400 and doc["errorType"] == "bad_data"
    status, doc = get_json(f"{worker}/v1/query?query=sel_m%7B")
    assert status == 400 and doc["status"] == "error"
