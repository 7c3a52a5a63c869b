"""StatsD → sidecar process → real collector → Kafka → worker: aggregated series come back."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support import REPO, Stack, query_raw, wait_for

pytestmark = pytest.mark.integration


def test_statsd_lines_come_back_aggregated(stack: Stack) -> None:
    stack.start_collector()
    _, worker = stack.start_worker()
    start_s = time.time() - 5
    log = open(stack.workdir / "sidecar.log", "wb")  # kept open for the child's lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", "metricsflow.sidecar", "--listen", "127.0.0.1:0", "--metrics-port", "0",
         "--collector", f"127.0.0.1:{stack.grpc_port}", "--flush-interval", "0.5", "--tenant", "statsd"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        ready = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        host, port = ready["listening"].rsplit(":", 1)
        lines = [b"checkout.orders:1|c|@0.1|#env:prod"] * 5 + [
            b"checkout.cart_size:7|g|#env:prod", b"checkout.cart_size:+3|g|#env:prod",
            b"checkout.users:alice|s", b"checkout.users:bob|s", b"checkout.users:alice|s",
            b"checkout.latency:" + b":".join(b"%d" % v for v in range(1, 101)) + b"|ms|#env:prod",
        ]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"\n".join(lines), (host, int(port)))  # one datagram: all in the same interval

        def query(selector: str) -> list[dict]:
            return query_raw(worker, selector, start_s, time.time() + 60, tenant="statsd")

        def last(selector: str) -> float | None:
            result = query(selector)
            return float(result[0]["values"][-1][1]) if result else None

        assert wait_for(lambda: last('checkout_orders{env="prod"}'), 60, "counter") == pytest.approx(50.0)
        assert wait_for(lambda: last("checkout_cart_size"), 30, "gauge") == 10.0
        assert wait_for(lambda: last("checkout_users"), 30, "set") == 2.0
        assert wait_for(lambda: last('checkout_latency{quantile="0.99"}'), 30, "p99") == pytest.approx(99.01)
        assert wait_for(lambda: last('checkout_latency{quantile="0.5"}'), 30, "p50") == pytest.approx(50.5)
        assert wait_for(lambda: last("checkout_latency_count"), 30, "count") == 100.0
        assert wait_for(lambda: last("checkout_latency_sum"), 30, "sum") == 5050.0
        assert wait_for(lambda: last("checkout_latency_max"), 30, "max") == 100.0
        # The counter is re-sent each flush as a running total: still 50, never 100.
        wait_for(lambda: len(query("checkout_orders")[0]["values"]) >= 3, 30, "several flushes")
        assert {float(v) for _, v in query("checkout_orders")[0]["values"]} == {50.0}

        text = urllib.request.urlopen(f"http://{ready['metrics']}/metrics", timeout=5).read().decode()
        assert "mf_sidecar_packets_received_total 1.0" in text
        assert "mf_sidecar_kernel_drops_total 0.0" in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        log.close()
