"""Helpers for integration tests: real processes on 127.0.0.1, waits with deadlines."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metricsflow.stack.process import stop_pid

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def serve_app(app: Any) -> tuple[Any, str]:
    """An aiohttp ``app`` on a free port of 127.0.0.1: its runner (clean it up) and base URL."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    """Poll until ``check()`` is truthy; fail the test with ``what`` past the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the service may not be up yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; last: {last!r}")


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout_s: float = 30) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, body = http("GET", url, headers=headers)
    return status, json.loads(body) if body else None


def metric_samples(url: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of metric ``name`` in a component's /metrics: (its labels, its value)."""
    status, _, body = http("GET", url + "/metrics")
    assert status == 200, status
    samples = []
    for line in body.decode().splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        got = dict(kv.split("=", 1) for kv in rest.rstrip("}").split(",") if kv) if rest else {}
        if metric == name:
            samples.append(({k: v.strip('"') for k, v in got.items()}, float(value)))
    return samples


def metric_value(url: str, name: str, **labels: str) -> float | None:
    """One sample of a component's /metrics (labels given in any order), or None when it is absent."""
    want = {k: str(v) for k, v in labels.items()}
    return next((value for got, value in metric_samples(url, name) if got == want), None)


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.log, "ab")  # kept open for the child's lifetime
        self.popen = subprocess.Popen(self.argv, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=REPO)
        return self

    def stop(self, timeout_s: float = 30) -> None:
        if self.popen is not None and self.popen.poll() is None:
            stop_pid(self.popen.pid, timeout_s)
            self.popen.wait(5)

    def kill9(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class Stack:
    """One isolated metricsflow deployment (own topics, group, ports, data) on a shared broker."""

    bootstrap: str
    workdir: Path
    partitions: int = 4
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}.")
    procs: list[Proc] = field(default_factory=list)
    collector_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def collector_url(self) -> str:
        return f"http://127.0.0.1:{self.collector_port}"

    @property
    def app_id(self) -> str:
        return f"{self.prefix}app"

    def changelog_topic(self, table: str) -> str:
        """The Kafka topic of a worker table's changelog (Faust names it ``<app id>-<table>-changelog``)."""
        return f"{self.app_id}-{table}-changelog"

    def env(self, **more: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MF_")}
        env.update({"MF_KAFKA_BOOTSTRAP": self.bootstrap, "MF_TOPIC_PREFIX": self.prefix,
                    "MF_APP_ID": self.app_id, "MF_PARTITIONS": str(self.partitions),
                    "MF_LOG_LEVEL": "info"})
        env.update(self.extra_env)
        env.update(more)
        return env

    def start_collector(self, **env: str) -> Proc:
        proc = Proc("collector", [sys.executable, "-m", "metricsflow", "collector",
                                  "--http-port", str(self.collector_port), "--grpc-port", str(self.grpc_port)],
                    self.env(**env), self.workdir / "collector.log").start()
        self.procs.append(proc)
        wait_for(lambda: http("GET", self.collector_url + "/healthz", timeout_s=2)[0] == 200, 30,
                 f"collector on {self.collector_port}\n{proc.tail()}")
        return proc

    def start_worker(self, worker_id: str = "w1", web_port: int | None = None, wait_ready: bool = True,
                     **env: str) -> tuple[Proc, str]:
        port = web_port or free_port()
        proc = Proc(f"worker {worker_id}", [sys.executable, "-m", "metricsflow", "worker", "--worker-id", worker_id,
                                            "--web-port", str(port),
                                            "--data-dir", str(self.workdir / "data")],
                    self.env(**env), self.workdir / f"worker-{worker_id}.log").start()
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        if wait_ready:
            wait_for(lambda: http("GET", url + "/readyz", timeout_s=2)[0] == 200, 90,
                     f"worker {worker_id} ready\n{proc.tail()}")
        return proc, url

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def query_raw(worker_url: str, selector: str, start_s: float, end_s: float,
              tenant: str | None = None) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": selector, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}"})
    headers = {"X-Scope-OrgID": tenant} if tenant else None
    status, doc = get_json(f"{worker_url}/v1/query?{params}", headers)
    assert status == 200, doc
    assert doc["status"] == "success"
    return doc["data"]["result"]
