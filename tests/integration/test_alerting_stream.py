"""Rules evaluated in the workers: webhook notifications, API shapes, write-back, failover with the same activeAt."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from tests.support import Stack, free_port, get_json, http, query_raw, wait_for

pytestmark = pytest.mark.integration

RULES = """
groups:
  - name: stream
    interval: 1s
    rules:
      - record: job:alert_m:sum
        expr: sum(alert_m)
      - alert: HighValue
        expr: alert_m > 10
        for: 0s
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.host }} is at {{ $value }}"
"""


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every payload."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.payloads.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, status: str) -> list[dict]:
        return [a for p in self.payloads for a in p["alerts"] if a["status"] == status]

    def close(self) -> None:
        self.server.shutdown()


def post(stack: Stack, value: float) -> None:
    body = orjson.dumps({"metrics": [{"metric_name": "alert_m", "value": value, "tags": {"host": "a"}}]})
    assert http("POST", stack.collector_url + "/v1/metrics", body, {"Content-Type": "application/json"})[0] == 202


def test_alert_fires_notifies_writes_back_and_survives_failover(stack: Stack, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    receiver = Receiver()
    try:
        stack.start_collector()
        env = {"MF_RULES_FILES": str(rules), "MF_WEBHOOK_URLS": f"http://127.0.0.1:{receiver.port}/hook"}
        proc, worker = stack.start_worker("w1", **env)
        post(stack, 5.0)
        wait_for(lambda: query_raw(worker, "job:alert_m:sum", time.time() - 60, time.time() + 5), 60,
                 "recording rule written back")
        assert receiver.alerts("firing") == []

        acked = time.monotonic()
        post(stack, 20.0)
        fired = wait_for(lambda: receiver.alerts("firing"), 30, "firing notification on the webhook")
        print(f"alert latency (ack → webhook): {time.monotonic() - acked:.2f}s")
        assert fired[0]["labels"] == {"alertname": "HighValue", "host": "a", "severity": "page"}
        assert fired[0]["annotations"]["summary"] == "a is at 20"

        status, doc = get_json(f"{worker}/api/v1/alerts")
        assert status == 200
        [alert] = doc["data"]["alerts"]
        assert alert["state"] == "firing" and alert["value"] == "2e+01"
        active_at = alert["activeAt"]
        status, doc = get_json(f"{worker}/api/v1/rules")
        rules_json = doc["data"]["groups"][0]["rules"]
        assert [r["type"] for r in rules_json] == ["recording", "alerting"]
        assert rules_json[1]["state"] == "firing" and rules_json[0]["health"] == "ok"

        # One semantics: the recorded value equals the query engine's answer at the same time.
        recorded = wait_for(lambda: [v for r in query_raw(worker, "job:alert_m:sum", time.time() - 30, time.time())
                                     for _, v in r["values"] if v == "20"], 30, "recorded sum of 20")
        t = query_raw(worker, "job:alert_m:sum", time.time() - 30, time.time())[0]["values"][-1][0]
        _, q = get_json(f"{worker}/api/v1/query?query=sum(alert_m)&time={t}")
        assert q["data"]["result"][0]["value"][1] == recorded[-1]
        alerts_series = wait_for(lambda: query_raw(worker, 'ALERTS{alertstate="firing"}', time.time() - 30,
                                                   time.time() + 5), 30, "ALERTS written back")
        assert alerts_series[0]["metric"]["alertname"] == "HighValue"

        # kill -9 the owner and restore from the changelogs alone: the same alert goes on.
        proc.kill9()
        shutil.rmtree(stack.workdir / "data")
        proc, worker = stack.start_worker("w1", **env)
        wait_for(lambda: get_json(f"{worker}/api/v1/alerts")[1]["data"]["alerts"], 60, "alert state restored")
        evaluated_after_restart = wait_for(
            lambda: get_json(f"{worker}/api/v1/rules")[1]["data"]["groups"][0]["rules"][1].get("lastEvaluation"),
            30, "the successor evaluates the group")
        assert evaluated_after_restart
        [again] = get_json(f"{worker}/api/v1/alerts")[1]["data"]["alerts"]
        assert again["activeAt"] == active_at and again["state"] == "firing"
        assert receiver.alerts("resolved") == [], "no resolve/fire pair across the failover"

        post(stack, 1.0)
        resolved = wait_for(lambda: receiver.alerts("resolved"), 30, "resolved notification")
        assert resolved[0]["labels"]["alertname"] == "HighValue"
    finally:
        receiver.close()


SPREAD_RULES = """
groups:
  - name: spread
    interval: 1s
    rules:
      - record: spread:x:sum
        expr: sum(spread_x)
      - alert: SumHigh
        expr: sum(spread_x) > 100
        annotations:
          summary: "sum is {{ $value }}"
      - alert: RecordedHigh
        expr: spread:x:sum > 100
"""
HOSTS = 40  # over 4 partitions: every partition holds some


def post_spread(stack: Stack, value: float) -> None:
    body = orjson.dumps({"metrics": [{"metric_name": "spread_x", "value": value, "tags": {"host": f"h{i}"}}
                                     for i in range(HOSTS)]})
    assert http("POST", stack.collector_url + "/v1/metrics", body, {"Content-Type": "application/json"})[0] == 202


def partials_sent(worker: str) -> dict[int, float]:
    """mf_worker_rule_partials_sent_total by partition, from the worker's /metrics."""
    _, _, body = http("GET", f"{worker}/metrics")
    out = {}
    for m in re.finditer(r'^mf_worker_rule_partials_sent_total\{partition="(\d+)"\} (\S+)$', body.decode(), re.M):
        out[int(m.group(1))] = float(m.group(2))
    return out


def steady_split(workers: list[str]) -> list[set[int]]:
    """Partitions each worker sent partials for over the last 2 s; once stable, they split the partitions."""
    before = [partials_sent(w) for w in workers]
    time.sleep(2)
    after = [partials_sent(w) for w in workers]
    return [{p for p, v in a.items() if v > b.get(p, 0)} for a, b in zip(after, before, strict=True)]


def owner_of(workers: list[str]) -> int:
    [owner] = [i for i, w in enumerate(workers) if get_json(f"{w}/internal/v1/alert_states")[1]]
    return owner


def test_two_workers_evaluate_partials_and_survive_owner_kill(stack: Stack, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(SPREAD_RULES)
    receiver = Receiver()
    try:
        stack.start_collector()
        env = {"MF_RULES_FILES": str(rules), "MF_WEBHOOK_URLS": f"http://127.0.0.1:{receiver.port}/hook"}
        procs, workers = {}, []
        for wid in ("w1", "w2"):
            procs[wid], url = stack.start_worker(wid, **env)
            workers.append(url)

        # Each worker sends partials for its own partitions only; together, every partition once.
        def split_ok() -> list[set[int]] | None:
            split = steady_split(workers)
            ok = all(split) and not (split[0] & split[1]) and split[0] | split[1] == set(range(stack.partitions))
            return split if ok else None

        split = wait_for(split_ok, 90, "both workers sending partials for disjoint halves")
        print(f"partials by worker: {split}")
        post_spread(stack, 1.0)  # once the assignment is stable: this test is about rules, not ingest in a rebalance
        for w in workers:
            wait_for(lambda w=w: get_json(f"{w}/healthz")[1]["series"] > 0, 30, f"series stored on {w}")
        wait_for(lambda: [v for r in query_raw(workers[0], "spread:x:sum", time.time() - 30, time.time() + 5)
                          for _, v in r["values"] if v == str(HOSTS)], 60, "recorded sum over all partitions")
        assert receiver.alerts("firing") == []

        post_spread(stack, 5.0)
        acked_5 = time.time()
        fired = wait_for(lambda: {a["labels"]["alertname"]: a for a in receiver.alerts("firing")}
                         if len({a["labels"]["alertname"] for a in receiver.alerts("firing")}) == 2 else None,
                         30, "SumHigh and RecordedHigh firing")
        assert fired["SumHigh"]["annotations"]["summary"] == f"sum is {5 * HOSTS}"
        assert fired["SumHigh"]["labels"] == {"alertname": "SumHigh"}
        assert fired["RecordedHigh"]["labels"] == {"alertname": "RecordedHigh"}

        # One semantics: the alert's value and every recorded sample equal /api/v1/query at the same time.
        doc = get_json(f"{workers[1]}/api/v1/rules")[1]
        [sum_rule] = [r for r in doc["data"]["groups"][0]["rules"] if r["name"] == "SumHigh"]
        [alert] = sum_rule["alerts"]
        assert alert["state"] == "firing" and float(alert["value"]) == 5 * HOSTS
        active_at = alert["activeAt"]
        t_eval = datetime.fromisoformat(sum_rule["lastEvaluation"].replace("Z", "+00:00")).timestamp()
        _, q = get_json(f"{workers[0]}/api/v1/query?query=sum(spread_x)&time={t_eval:.3f}")
        assert float(q["data"]["result"][0]["value"][1]) == float(alert["value"])
        # Event time: a partial for t waits until its partitions consumed what mf.points held at t,
        # so every evaluation after the acknowledgement sees all 40 fives (never a part of them).
        def five_after_ack() -> list | None:
            after = [(t, v) for t, v in query_raw(workers[0], "spread:x:sum", acked_5 - 5, time.time())[0]["values"]
                     if t > acked_5]
            return after if len(after) >= 5 else None

        recorded = wait_for(five_after_ack, 30, "five evaluations after the acknowledgement")
        assert [v for _, v in recorded] == [str(5 * HOSTS)] * len(recorded), recorded
        for w in workers:  # the gate ran on both, and each worker reports its event loop's lag
            body = http("GET", f"{w}/metrics")[2].decode()
            for name in ("mf_worker_rule_watermark_wait_seconds_count", "mf_worker_event_loop_lag_seconds_count"):
                m = re.search(rf"^{name} (\S+)$", body, re.M)
                assert m and float(m.group(1)) > 0, f"{name} on {w}"
        for t, v in recorded:
            _, q = get_json(f"{workers[1]}/api/v1/query?query=sum(spread_x)&time={t}")
            assert q["data"]["result"][0]["value"][1] == v, f"recorded {v} at {t}"

        # kill -9 the owner: the survivor restores the state and goes on with the same activeAt.
        owner = owner_of(workers)
        survivor = workers[1 - owner]
        killed_id = ("w1", "w2")[owner]
        procs[killed_id].kill9()
        shutil.rmtree(stack.workdir / "data" / killed_id, ignore_errors=True)

        def survivor_evaluates() -> dict | None:
            doc = get_json(f"{survivor}/internal/v1/alert_states")[1]
            if not doc:
                return None
            [rule] = [r for r in get_json(f"{survivor}/api/v1/rules")[1]["data"]["groups"][0]["rules"]
                      if r["name"] == "SumHigh"]
            last = datetime.fromisoformat(rule["lastEvaluation"].replace("Z", "+00:00")).timestamp()
            return rule if last > time.time() - 5 and rule["alerts"] else None

        rule = wait_for(survivor_evaluates, 90, "the survivor evaluates the group")
        assert rule["alerts"][0]["state"] == "firing"
        # The survivor must not evaluate in the gap between its new assignment and the restore
        # (it once did, about 1 run in 4, on heads not yet replayed: a resolve, then a new activeAt).
        assert rule["alerts"][0]["activeAt"] == active_at, "the same alert goes on"
        assert receiver.alerts("resolved") == [], "no resolve/fire pair across the failover"
        firing_names = [a["labels"]["alertname"] for a in receiver.alerts("firing")]
        assert firing_names.count("SumHigh") == 1, "no second firing notification within the resend delay"

        post_spread(stack, 1.0)
        resolved = wait_for(lambda: {a["labels"]["alertname"] for a in receiver.alerts("resolved")} == {
            "SumHigh", "RecordedHigh"}, 30, "both resolved")
        assert resolved
    finally:
        receiver.close()
