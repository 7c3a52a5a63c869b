"""Start and stop a private metricsflow stack (Kafka + collectors + workers) for a benchmark.

Every process is started here and stopped here by its PID (SIGTERM, then SIGKILL);
nothing is looked up by name. Ports and data dirs are private (defaults under /tmp/mfperf).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PY = os.environ.get("MF_PERF_PY", sys.executable)


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except Exception:
        return False


def wait_for(check, timeout: float, what: str, interval: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def _stop_pid(pid: int, timeout: float = 30.0) -> float | None:
    """SIGTERM, then SIGKILL after ``timeout``; the CPU seconds (user + system, all threads) the
    process took in its life when it was our child and we reaped it, else None."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _, usage = os.wait4(pid, os.WNOHANG)
            if done:
                return usage.ru_utime + usage.ru_stime
        except ChildProcessError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
        _, _, usage = os.wait4(pid, 0)
        return usage.ru_utime + usage.ru_stime
    except (ProcessLookupError, ChildProcessError):
        return None


@dataclass
class Proc:
    name: str
    pid: int
    popen: subprocess.Popen | None
    url: str = ""  # HTTP base (collector http / worker web)
    grpc: str = ""


@dataclass
class Stack:
    root: Path
    kafka_port: int = 29092
    collector_http_base: int = 28080
    collector_grpc_base: int = 25051
    worker_web_base: int = 26066
    partitions: int = 8
    cut_interval_s: float = 15.0
    standby_replicas: int = 0
    app_id: str = "mfperf"
    topic_prefix: str = "mfperf."
    extra_env: dict[str, str] = field(default_factory=dict)
    kafka_pid: int | None = None
    collectors: list[Proc] = field(default_factory=list)
    workers: list[Proc] = field(default_factory=list)

    # -- environment -----------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MF_")}
        env.update({
            "MF_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.kafka_port}",
            "MF_PARTITIONS": str(self.partitions),
            "MF_TOPIC_PREFIX": self.topic_prefix,
            "MF_APP_ID": self.app_id,
            "MF_HEAD_CUT_INTERVAL_S": str(self.cut_interval_s),
            "MF_STANDBY_REPLICAS": str(self.standby_replicas),
            "MF_HOME": str(self.root / "home"),
            "MF_DATA_DIR": str(self.root / "workers"),
            "MF_LOG_LEVEL": "warning",
            "PYTHONPATH": str(REPO),
        })
        env.update(self.extra_env)
        return env

    @property
    def kafka_dir(self) -> Path:
        return self.root / "kafka"

    # -- kafka -----------------------------------------------------------------
    def start_kafka(self) -> int:
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        out = subprocess.run([PY, "-m", "metricsflow", "kafka", "start", "--data-dir", str(self.kafka_dir),
                              "--port", str(self.kafka_port)], capture_output=True, text=True, env=self.env(),
                             cwd=REPO, timeout=180)
        if out.returncode != 0:
            raise RuntimeError(f"kafka start failed: {out.stdout}{out.stderr}")
        self.kafka_pid = int(json.loads(out.stdout.strip().splitlines()[-1])["pid"])
        return self.kafka_pid

    def stop_kafka(self) -> None:
        if self.kafka_pid is None:
            return
        subprocess.run([PY, "-m", "metricsflow", "kafka", "stop", "--data-dir", str(self.kafka_dir),
                        "--port", str(self.kafka_port)], capture_output=True, text=True, env=self.env(),
                       cwd=REPO, timeout=90)
        _stop_pid(self.kafka_pid)  # in case the pid file route did not stop it
        self.kafka_pid = None

    # -- collectors and workers ------------------------------------------------
    def start_collector(self, i: int = 0) -> Proc:
        http_port, grpc_port = self.collector_http_base + i, self.collector_grpc_base + i
        log = open(self.root / f"collector{i}.log", "ab")
        p = subprocess.Popen([PY, "-m", "metricsflow", "collector", "--http-port", str(http_port),
                              "--grpc-port", str(grpc_port)], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=self.env(), cwd=REPO, start_new_session=True)
        proc = Proc(f"collector{i}", p.pid, p, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}")
        self.collectors.append(proc)
        wait_for(lambda: p.poll() is None and _http_ok(proc.url + "/healthz")
              and b'"kafka_connected":true' in urllib.request.urlopen(proc.url + "/healthz").read().replace(b" ", b""),
              90, f"collector {i}")
        return proc

    def start_worker(self, i: int = 0, wait_ready: bool = True) -> Proc:
        port = self.worker_web_base + i
        wid = f"w{i + 1}"
        log = open(self.root / f"worker{i}.log", "ab")
        p = subprocess.Popen([PY, "-m", "metricsflow", "worker", "--worker-id", wid, "--web-port", str(port),
                              "--data-dir", str(self.root / "workers")], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=self.env(), cwd=REPO, start_new_session=True)
        proc = Proc(wid, p.pid, p, f"http://127.0.0.1:{port}")
        self.workers.append(proc)
        if wait_ready:
            self.wait_worker_ready(proc)
        return proc

    def wait_worker_ready(self, proc: Proc, timeout: float = 180) -> None:
        def ok() -> bool:
            if proc.popen is not None and proc.popen.poll() is not None:
                raise RuntimeError(f"worker {proc.name} exited rc={proc.popen.returncode}; see {self.root}")
            return _http_ok(proc.url + "/readyz")
        wait_for(ok, timeout, f"worker {proc.name} ready")

    def worker_dir(self, proc: Proc) -> Path:
        return self.root / "workers" / proc.name

    def pids(self) -> dict[str, int]:
        out = {p.name: p.pid for p in self.collectors}
        out.update({p.name: p.pid for p in self.workers})
        if self.kafka_pid:
            out["kafka"] = self.kafka_pid
        return out

    def stop_all(self) -> dict[str, float]:
        """Stop every process; the lifetime CPU seconds of the collectors and workers reaped."""
        cpu: dict[str, float] = {}
        for p in self.collectors + self.workers:
            took = _stop_pid(p.pid)
            if took is not None:
                cpu[p.name] = took
        self.collectors.clear()
        self.workers.clear()
        self.stop_kafka()
        return cpu


def _env_setting(item: str) -> str:
    name, sep, _ = item.partition("=")
    if not sep or not name.startswith("MF_"):
        raise argparse.ArgumentTypeError(f"{item!r}: expected MF_NAME=VALUE")
    return item


def add_env_argument(ap: argparse.ArgumentParser) -> None:
    """``--env MF_NAME=VALUE`` (repeatable): settings for every process of the stack, to compare two
    settings without a code change; checked when the arguments are parsed, read with ``env_settings``."""
    ap.add_argument("--env", action="append", default=[], metavar="MF_NAME=VALUE", type=_env_setting,
                    help="a setting for every process of the stack (repeatable), e.g. MF_FETCH_FILL_MS=0")


def env_settings(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def python_version() -> str:
    return subprocess.run([PY, "-c", "import sys;print(sys.version.split()[0])"], capture_output=True,
                          text=True).stdout.strip() or sys.version.split()[0]


def git_state() -> dict[str, object]:
    """Commit of the checkout the servers run from, and whether runtime code differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO).stdout.strip()
    dirty = [ln for ln in git("status", "--porcelain", "--", "metricsflow", "agents", "tables", "web").splitlines()
             if ln and not ln.startswith("??")]
    return {"commit": git("rev-parse", "--short", "HEAD"), "commit_time": git("log", "-1", "--format=%cI"),
            "runtime_code_modified": dirty}
