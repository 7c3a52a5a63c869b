"""``metricsflow up``: the whole stack on this machine, stopped together on Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

from metricsflow.config import Settings
from metricsflow.stack import kafka, redis
from metricsflow.stack.process import pid_alive, spawn, stop_pid, wait_until


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def _component_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"MF_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "MF_PARTITIONS": str(settings.partitions),
                "MF_DATA_DIR": settings.data_dir, "MF_WEB_PORT": str(settings.web_port),
                "MF_COLLECTOR_HTTP_PORT": str(settings.collector_http_port),
                "MF_COLLECTOR_GRPC_PORT": str(settings.collector_grpc_port),
                "MF_RULES_FILES": ",".join(str(Path(f).resolve()) for f in settings.rules_files),
                "MF_ALERTMANAGER_URLS": ",".join(settings.alertmanager_urls),
                "MF_WEBHOOK_URLS": ",".join(settings.webhook_urls)})
    return env


def run_up(settings: Settings, home: Path, demo: bool, demo_rate: int, demo_hosts: int) -> int:
    home.mkdir(parents=True, exist_ok=True)
    logs = home / "logs"
    started: list[tuple[str, int]] = []
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave processes behind
        print("\nstopping ...", flush=True)
        for name, pid in reversed(started):
            stop_pid(pid, timeout_s=30)
            print(f"  stopped {name} (pid {pid})", flush=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        _host, port = settings.kafka_bootstrap.rsplit(":", 1)
        node = kafka.KafkaNode(home / "kafka", port=int(port), controller_port=int(port) + 1)
        print(f"kafka: starting on {node.bootstrap} (first run fetches the jars with Maven) ...", flush=True)
        pid = kafka.start(node)
        started.append(("kafka", pid))
        rnode = redis.RedisNode(home / "redis")
        rpid = redis.start(rnode)
        if rpid is not None:
            started.append(("redis", rpid))
        where = f"127.0.0.1:{rnode.port}" if rpid else "not started (redis-server missing or port taken)"
        print(f"redis: {where}", flush=True)
        env = _component_env(settings)
        exe = [sys.executable, "-m", "metricsflow"]
        wpid = spawn(exe + ["worker"], logs / "worker.log", home / "worker.pid", env=env)
        started.append(("worker", wpid))
        cpid = spawn(exe + ["collector"], logs / "collector.log", home / "collector.pid", env=env)
        started.append(("collector", cpid))
        worker_url = f"http://{settings.web_host}:{settings.web_port}"
        collector_url = f"http://{settings.collector_host}:{settings.collector_http_port}"
        ready = wait_until(lambda: _http_ok(worker_url + "/healthz") and _http_ok(collector_url + "/healthz"), 120)
        if not ready:
            print(f"components did not become ready in 120 s; see {logs}", flush=True)
            return 1
        if demo:
            lpid = spawn(exe + ["load", "--protocol", "grpc", "--rate", str(demo_rate), "--duration", "0", "--realtime",
                                "--hosts", str(demo_hosts), "--quiet"], logs / "load.log", home / "load.pid", env=env)
            started.append(("demo load", lpid))
        print(f"""
metricsflow is up
  collector  HTTP  {collector_url}/v1/metrics   gRPC {settings.collector_host}:{settings.collector_grpc_port}
  worker API       {worker_url}/api/v1/labels   (Prometheus API; Grafana data source URL: {worker_url})
  raw query        {worker_url}/v1/query?query=cpu_usage_user{{hostname="host_0"}}
  metrics          {collector_url}/metrics   {worker_url}/metrics
  kafka            {node.bootstrap}   logs in {logs}
Ctrl-C stops everything started here.""", flush=True)
        while all(pid_alive(pid) for _, pid in started):
            time.sleep(1)
        dead = [name for name, pid in started if not pid_alive(pid)]
        print(f"{', '.join(dead)} exited; see {logs}", flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop_all()
