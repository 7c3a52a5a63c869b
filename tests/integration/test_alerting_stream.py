"""Rules evaluated in the workers: webhook notifications, API shapes, write-back, failover with the same activeAt."""

from __future__ import annotations

import json
import shutil
import threading
import time
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
