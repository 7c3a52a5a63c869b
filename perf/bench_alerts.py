#!/usr/bin/env python
"""Alerting benchmark: ack→webhook alert latency under load, and rule-evaluation CPU cost.

One command starts a private stack (Kafka, collector, worker; ports and /tmp/mfalert of its own),
runs both parts and stops every process it started, by PID, in ``finally`` blocks:

1. **latency** — a group (interval 1s) with ``ProbeHigh: probe_value > 100`` (``for: 0s``). Under a
   steady realtime background load (``metricsflow load --realtime``; one light and one heavy level),
   N trials each write ``probe_value{probe="<level>-<i>"} 200`` through the collector's HTTP
   ``/v1/metrics`` and take the time the 202 arrives; a local aiohttp webhook records when the firing
   notification for that probe arrives; then ``0`` is written and the resolution awaited.
   ``--with-cost-rules`` adds the 100-rule group of part 2 to the same worker.
2. **cost** — 100 alerting rules (group interval 10s) over 10,000 series (1,000 hosts), loaded once
   (one realtime round, refreshed right before each phase so the 5-minute lookback and the [5m]
   ranges see it); worker CPU (utime+stime, /proc/<pid>/stat) over a window without rules and, after
   a restart, with the rules, with no ingest during either window. Optionally a py-spy profile of
   the evaluating worker.

Prints a table and, last, one JSON line. ``--quick`` is a short smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perf.lib.procs import proc_cpu  # noqa: E402
from perf.lib.stack import wait_for  # noqa: E402

PY = os.environ.get("MF_PERF_PY", sys.executable)
METRICS = ("user", "system", "idle", "nice", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
REGIONS = ("us-east-1", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1",
           "ap-southeast-2", "ap-northeast-1", "sa-east-1")


# ---------------------------------------------------------------- process helpers

def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except Exception:
        return 0, b""


def post_json(url: str, body: dict, timeout: float = 15.0) -> tuple[int, float]:
    """POST; returns (status, monotonic time the answer arrived)."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status, time.monotonic()
    except urllib.error.HTTPError as exc:
        return exc.code, time.monotonic()


def prom_metrics(url: str) -> dict[tuple[str, str], float]:
    """Prometheus text format → {(name, labels-text): value}."""
    status, body = http_get(url)
    out: dict[tuple[str, str], float] = {}
    if status != 200:
        return out
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            try:
                out[(m.group(1), m.group(2) or "")] = float(m.group(3))
            except ValueError:
                pass
    return out


def msum(metrics: dict[tuple[str, str], float], name: str, label_filter: str = "") -> float:
    return sum(v for (n, lb), v in metrics.items() if n == name and label_filter in lb)


def hist_quantile(before: dict, after: dict, name: str, q: float, label_filter: str = "") -> float | None:
    """Quantile from the delta of a histogram's cumulative buckets (upper bound of the bucket)."""
    buckets: dict[float, float] = defaultdict(float)
    for (n, lb), v in after.items():
        if n == f"{name}_bucket" and label_filter in lb:
            le = re.search(r'le="([^"]+)"', lb).group(1)
            buckets[float(le)] += v - before.get((n, lb), 0.0)
    if not buckets:
        return None
    items = sorted(buckets.items())
    total = items[-1][1]
    if total <= 0:
        return None
    for le, c in items:
        if c >= q * total:
            return le
    return items[-1][0]


class Procs:
    """Processes this benchmark started; stopped by PID only."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None,
              stdout_file: Path | None = None) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        out = open(stdout_file, "wb") if stdout_file else log
        p = subprocess.Popen([PY, "-m", "metricsflow", *args], cwd=REPO, env={**self.env, **(env or {})},
                             stdout=out, stderr=log, start_new_session=True)
        self.procs[name] = p
        return p

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        try:
            os.kill(p.pid, sig)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def wait_idle(pid: int, max_wait: float, window: float = 3.0, thresh: float = 0.08) -> float:
    """Wait until the process uses < thresh CPU-s/s over `window` s; returns the seconds waited."""
    t0 = time.monotonic()
    samples = [(t0, proc_cpu(pid))]
    while time.monotonic() - t0 < max_wait:
        time.sleep(0.5)
        samples.append((time.monotonic(), proc_cpu(pid)))
        old = [s for s in samples if samples[-1][0] - s[0] >= window]
        if old and (samples[-1][1] - old[-1][1]) / (samples[-1][0] - old[-1][0]) < thresh:
            break
    return time.monotonic() - t0


# ---------------------------------------------------------------- webhook receiver

class Webhook:
    """Alertmanager-webhook receiver in its own thread; first arrival per (probe, status)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.first: dict[tuple[str, str], float] = {}
        self.payloads = 0
        self.alerts = 0
        self.statuses: Counter[str] = Counter()
        self.cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        body = await request.json()
        with self.cond:
            self.payloads += 1
            for a in body.get("alerts", []):
                self.alerts += 1
                status = a.get("status", "")
                self.statuses[status] += 1
                probe = a.get("labels", {}).get("probe")
                if probe is not None:
                    self.first.setdefault((probe, status), now)
            self.cond.notify_all()
        return web.Response(text="ok")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def wait(self, probe: str, status: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while (probe, status) not in self.first:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.first[(probe, status)]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# ---------------------------------------------------------------- stack

class Stack:
    def __init__(self, args: argparse.Namespace, procs: Procs, stage: str) -> None:
        self.a = args
        self.procs = procs
        self.stage = stage
        self.data = Path(args.root) / stage
        self.env = {"MF_TOPIC_PREFIX": f"mfa_{stage}.", "MF_APP_ID": f"mfalert-{stage}",
                    "MF_LOG_LEVEL": "warning"}
        self.collector = f"http://127.0.0.1:{args.http_port}"
        self.worker = f"http://127.0.0.1:{args.web_port}"
        self.worker_pid = 0

    def start_collector(self) -> None:
        self.procs.spawn(f"{self.stage}-collector", ["collector", "--http-port", str(self.a.http_port),
                                                     "--grpc-port", str(self.a.grpc_port)], self.env)
        wait_for(lambda: http_get(f"{self.collector}/healthz", 2)[0] == 200, 60, "collector /healthz")

    def start_worker(self, rules: Path | None, tag: str) -> None:
        args = ["worker", "--worker-id", "w1", "--web-port", str(self.a.web_port),
                "--data-dir", str(self.data / "workers")]
        if rules is not None:
            args += ["--rules", str(rules), "--webhook-url", f"http://127.0.0.1:{self.a.webhook_port}/hook"]
        p = self.procs.spawn(f"{self.stage}-worker", args, {**self.env, "MF_RULE_TICK_S": str(self.a.tick)})
        self.worker_pid = p.pid
        wait_for(lambda: http_get(f"{self.worker}/readyz", 2)[0] == 200, 180, f"worker /readyz ({tag})")

    def stop_worker(self) -> None:
        self.procs.stop(f"{self.stage}-worker")
        self.worker_pid = 0

    def load(self, name: str, rate: int, hosts: int, duration: float) -> subprocess.Popen:
        out = Path(self.a.root) / f"{self.stage}-{name}.json"
        return self.procs.spawn(f"{self.stage}-{name}", [
            "load", "--protocol", "grpc", "--realtime", "--rate", str(rate), "--duration", str(duration),
            "--hosts", str(hosts), "--grpc", f"127.0.0.1:{self.a.grpc_port}", "--quiet"], self.env, stdout_file=out)

    def load_summary(self, name: str) -> dict:
        try:
            lines = (Path(self.a.root) / f"{self.stage}-{name}.json").read_text().strip().splitlines()
            return json.loads(lines[-1]) if lines else {}
        except (OSError, ValueError):
            return {}

    def metrics(self) -> dict[tuple[str, str], float]:
        return prom_metrics(f"{self.worker}/metrics")

    def api(self, path: str) -> dict:
        status, body = http_get(f"{self.worker}{path}", 30)
        return json.loads(body) if status == 200 else {}


def write_rules(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


PROBE_RULES = """groups:
  - name: probe
    interval: 1s
    rules:
      - alert: ProbeHigh
        expr: probe_value > 100
        for: 0s
        labels: {severity: page}
        annotations: {summary: "probe {{ $labels.probe }} at {{ $value }}"}
"""


def cost_rules(n: int = 100) -> tuple[str, list[str]]:
    """n alerting rules over the cpu_usage_* series, varied; returns (yaml, kind per rule)."""
    rules, kinds = [], []
    for i in range(n):
        m = METRICS[i % 10]
        d = (i // 10) % 10
        k = i % 5
        if k in (0, 1, 2):  # plain threshold on a regex-selected ~11% of the hosts
            prefix = f"host_{d}" if d else "host_9"
            expr = f'cpu_usage_{m}{{hostname=~"{prefix}.*"}} > {90 + (i % 7)}'
            kind = "threshold, hostname=~ (~111 series)"
        elif k == 3:  # range function over one region (~1/9 of the hosts)
            expr = f'max_over_time(cpu_usage_{m}{{region="{REGIONS[i % 9]}"}}[5m]) > 95'
            kind = "max_over_time[5m], region= (~111 series)"
        else:  # aggregation over all hosts of one metric
            expr = f"avg by (region) (cpu_usage_{m}) > 50.5"
            kind = "avg by (region), all hosts (1000 series)"
        rules.append(f"      - alert: Cost{i:03d}\n        expr: '{expr}'\n        for: 0s\n"
                     f"        labels: {{bench: cost}}\n")
        kinds.append(kind)
    return "groups:\n  - name: cost\n    interval: 10s\n    rules:\n" + "".join(rules), kinds


# ---------------------------------------------------------------- part 1: latency

def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def run_latency(a: argparse.Namespace, procs: Procs, hook: Webhook, log) -> list[dict]:
    st = Stack(a, procs, "lat")
    text = PROBE_RULES
    if a.with_cost_rules:  # the 100-rule group (10 s) on the same worker, over the background load's series
        text += cost_rules(a.rules)[0].split("groups:\n", 1)[1]
    rules = write_rules(Path(a.root) / "probe.yml", text)
    st.start_collector()
    st.start_worker(rules, "probe rules")
    results = []
    url = f"{st.collector}/v1/metrics"
    try:
        for level in a.levels:
            rate, hosts = (int(x) for x in level.split(":"))
            name = f"load{rate}"
            budget = a.warmup + a.catchup_timeout + a.trials * 8 + 30
            st.load(name, rate, hosts, budget)
            load_started = time.monotonic()
            log(f"latency: background load {rate} pts/s over {hosts * 10} series; warm-up {a.warmup} s")
            time.sleep(a.warmup)
            caught_up = wait_caught_up(st, a.catchup_timeout) if a.catchup_timeout > 0 else None
            if caught_up is not None:
                log(f"latency: catch-up wait {caught_up:.1f} s (ingest delay p90 <= 0.5 s, or timeout)")
            m0, c0, w0, la0 = st.metrics(), proc_cpu(st.worker_pid), time.monotonic(), loadavg()
            col0 = prom_metrics(f"{st.collector}/metrics")
            lat, lat_send, res_lat, misses = [], [], [], 0
            t_end = load_started + budget - 20
            for i in range(a.trials):
                if time.monotonic() > t_end:
                    log("latency: load budget used up, stopping trials")
                    break
                probe = f"{rate}-{i}"
                t_send = time.monotonic()
                status, t_ack = post_json(url, {"metrics": [{
                    "metric_name": "probe_value", "value": 200, "timestamp": int(time.time() * 1000),
                    "tags": {"probe": probe}}]})
                if status != 202:
                    log(f"  trial {i}: write answered {status}")
                    misses += 1
                    continue
                t_fire = hook.wait(probe, "firing", a.trial_timeout)
                if t_fire is None:
                    misses += 1
                    log(f"  trial {i}: no firing notification within {a.trial_timeout} s")
                else:
                    lat.append(t_fire - t_ack)
                    lat_send.append(t_fire - t_send)
                _, t_ack0 = post_json(url, {"metrics": [{
                    "metric_name": "probe_value", "value": 0, "timestamp": int(time.time() * 1000),
                    "tags": {"probe": probe}}]})
                t_res = hook.wait(probe, "resolved", a.trial_timeout)
                if t_res is not None:
                    res_lat.append(t_res - t_ack0)
                if a.verbose:
                    log(f"  trial {i}: ack {1000 * (t_ack - t_send):.0f} ms, ack→firing "
                        f"{(t_fire - t_ack) if t_fire else float('nan'):.3f} s")
                time.sleep(random.uniform(0.0, 1.0))  # de-phase from the 1 s evaluation grid
            m1, c1, w1, la1 = st.metrics(), proc_cpu(st.worker_pid), time.monotonic(), loadavg()
            col1 = prom_metrics(f"{st.collector}/metrics")
            procs.stop(f"lat-{name}", signal.SIGINT)
            def group_stats(g: str, m0: dict = m0, m1: dict = m1) -> tuple[float, float]:
                f = f';{g}"'
                n = (msum(m1, "mf_alerting_rule_group_evaluations_total", f)
                     - msum(m0, "mf_alerting_rule_group_evaluations_total", f))
                d = (msum(m1, "mf_alerting_rule_group_duration_seconds_sum", f)
                     - msum(m0, "mf_alerting_rule_group_duration_seconds_sum", f))
                return n, d

            evals, dur = group_stats("probe")
            cost_evals, cost_dur = group_stats("cost")
            accepted = (msum(col1, "mf_collector_points_accepted_total")
                        - msum(col0, "mf_collector_points_accepted_total"))
            consumed = (msum(m1, "mf_worker_points_consumed_total") - msum(m0, "mf_worker_points_consumed_total"))
            r = {
                "load_pts_s": rate, "series": hosts * 10, "trials": len(lat) + misses, "fired": len(lat),
                "misses": misses,
                "ack_to_webhook_p50_s": pct(lat, 50), "ack_to_webhook_p99_s": pct(lat, 99),
                "ack_to_webhook_max_s": max(lat) if lat else None, "ack_to_webhook_min_s": min(lat) if lat else None,
                "send_to_webhook_p50_s": pct(lat_send, 50),
                "resolve_ack_to_webhook_p50_s": pct(res_lat, 50), "resolve_ack_to_webhook_p99_s": pct(res_lat, 99),
                "collector_accepted_pts_s": round(accepted / (w1 - w0), 1),
                "worker_consumed_pts_s": round(consumed / (w1 - w0), 1),
                "worker_cpu_s_per_s": round((c1 - c0) / (w1 - w0), 3),
                "probe_group_evals_per_s": round(evals / (w1 - w0), 2),
                "probe_group_eval_mean_ms": round(1000 * dur / evals, 2) if evals else None,
                "cost_group_evals_per_s": round(cost_evals / (w1 - w0), 3) if a.with_cost_rules else None,
                "cost_group_eval_mean_s": round(cost_dur / cost_evals, 3) if cost_evals else None,
                "ingest_delay_p50_s": hist_quantile(m0, m1, "mf_worker_ingest_delay_seconds", 0.5),
                "ingest_delay_p99_s": hist_quantile(m0, m1, "mf_worker_ingest_delay_seconds", 0.99),
                "catch_up_wait_s": None if caught_up is None else round(caught_up, 1),
                "with_cost_rules": a.with_cost_rules,
                "loadavg_start": la0, "loadavg_end": la1, "latencies_s": [round(x, 4) for x in lat],
            }
            time.sleep(2)
            log(f"latency @ {rate} pts/s: p50 {r['ack_to_webhook_p50_s']}, p99 {r['ack_to_webhook_p99_s']}, "
                f"misses {misses}")
            results.append(r)
    finally:
        st.stop_worker()
        procs.stop("lat-collector")
    return results


def wait_caught_up(st: Stack, timeout: float) -> float:
    """Wait until the worker keeps up: p90 of mf_worker_ingest_delay_seconds ≤ 0.5 s over 3-s windows, twice."""
    t0, ok = time.monotonic(), 0
    before = st.metrics()
    while time.monotonic() - t0 < timeout and ok < 2:
        time.sleep(3.0)
        after = st.metrics()
        q = hist_quantile(before, after, "mf_worker_ingest_delay_seconds", 0.9)
        ok = ok + 1 if q is not None and q <= 0.5 else 0
        before = after
    return time.monotonic() - t0


# ---------------------------------------------------------------- part 2: evaluation cost

def cpu_window(pid: int, seconds: float) -> tuple[float, float]:
    c0, t0 = proc_cpu(pid), time.monotonic()
    time.sleep(seconds)
    return proc_cpu(pid) - c0, time.monotonic() - t0


def one_round(st: Stack, hosts: int, name: str) -> dict:
    """One realtime round: one sample per series, stamped now."""
    p = st.load(name, hosts * 10, hosts, 0.5)
    p.wait(120)
    return st.load_summary(name)


def series_count(st: Stack) -> int:
    d = st.api("/api/v1/query?" + urllib.parse.urlencode({"query": 'count({__name__=~"cpu_usage_.*"})'}))
    try:
        return int(float(d["data"]["result"][0]["value"][1]))
    except (KeyError, IndexError, TypeError, ValueError):
        return -1


def pyspy(pid: int, seconds: int, out: Path) -> dict:
    exe = Path(PY).parent / "py-spy"
    if not exe.exists():
        return {"error": "py-spy not installed"}
    r = subprocess.run([str(exe), "record", "-p", str(pid), "-d", str(seconds), "-r", "100", "-f", "raw",
                        "-o", str(out), "--threads", "--nonblocking"], capture_output=True, text=True,
                       timeout=seconds + 60)
    if r.returncode != 0 or not out.exists():
        return {"error": r.stderr[-400:]}
    return summarise_folded(out)


def summarise_folded(path: Path) -> dict:
    """Self-time leaders and inclusive time of a few functions of interest, in % of busy samples."""
    selfs: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    busy = 0
    marks = {
        "evaluate_group": "evaluate_group", "RuleRunner.evaluate": "evaluate (agents/alerting.py)",
        "gather": "Cluster.gather", "select_local": "select_local", "select (": "WorkerStorage.select",
        "instant (": "Engine.instant", "to_bytes": "AlertState.to_bytes", "from_bytes": "AlertState.from_bytes",
        "accept (": "IngestPipeline.accept (write-back)", "alert_transitions": "alert_transitions",
        "submit (": "dispatcher.submit", "_expand": "templates", "fingerprint": "fingerprint",
        # evaluation in the stream: every worker's partials, the owner's merge
        "send_partials": "send_partials (agents/alerting.py)", "select_partitions": "select_partitions",
        "evaluate_partial": "Plan.evaluate_partial", "merge_ready": "merge_ready (agents/alerting.py)",
        "merge (": "Plan.merge", "accept_partial": "accept_partial",
    }
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        try:
            n_i = int(n)
        except ValueError:
            continue
        frames = stack.split(";")
        leaf = frames[-1]
        if "(idle)" in leaf or "select (selectors.py" in leaf or "epoll" in leaf or "wait (threading.py" in leaf \
                or "_worker (concurrent/futures/thread.py" in leaf:
            continue
        busy += n_i
        selfs[re.sub(r":\d+\)", ")", leaf)] += n_i
        seen = set()
        for f in frames:
            for k, label in marks.items():
                if k in f and label not in seen:
                    if k == "select (" and "tables/storage.py" not in f:
                        continue
                    if k == "instant (" and "promql" not in f:
                        continue
                    if k == "accept (" and "pipeline" not in f:
                        continue
                    if k == "merge (" and "pushdown" not in f:
                        continue
                    seen.add(label)
                    incl[label] += n_i
    return {"busy_samples": busy,
            "self_top": [(f, round(100 * c / busy, 1)) for f, c in selfs.most_common(15)] if busy else [],
            "inclusive": {k: round(100 * c / busy, 1) for k, c in incl.most_common()} if busy else {}}


def run_cost(a: argparse.Namespace, procs: Procs, hook: Webhook, log) -> dict:
    st = Stack(a, procs, "cost")
    text, kinds = cost_rules(a.rules)
    rules = write_rules(Path(a.root) / "cost.yml", text)
    out: dict = {"rules": a.rules, "hosts": a.cost_hosts, "window_s": a.window}
    st.start_collector()
    try:
        # Phase A: no rules.
        st.start_worker(None, "no rules")
        s = one_round(st, a.cost_hosts, "round0")
        waited = wait_idle(st.worker_pid, 90)
        out["series_loaded"] = series_count(st)
        log(f"cost: loaded {s.get('points_accepted')} points ({out['series_loaded']} series), idle after "
            f"{waited:.1f} s; phase A (no rules) {a.window} s")
        la0 = loadavg()
        cpu_a, wall_a = cpu_window(st.worker_pid, a.window)
        out["no_rules"] = {"cpu_s": round(cpu_a, 3), "wall_s": round(wall_a, 1),
                           "cpu_s_per_s": round(cpu_a / wall_a, 4), "loadavg": [la0, loadavg()]}
        st.stop_worker()
        # Phase B: the same data dir, with the rules.
        st.start_worker(rules, "cost rules")
        s = one_round(st, a.cost_hosts, "round1")  # fresh samples: the 5-min lookback must see the data
        m_start = st.metrics()
        wait_for(lambda: msum(st.metrics(), "mf_alerting_rule_group_evaluations_total")
                 >= msum(m_start, "mf_alerting_rule_group_evaluations_total") + 2, 60, "two cost evaluations", 0.5)
        time.sleep(2.0)  # let the ALERTS write-back of the last evaluation be stored
        log(f"cost: phase B ({a.rules} rules, interval 10s) {a.window} s")
        m0, la0 = st.metrics(), loadavg()
        hook0 = hook.alerts
        cpu_b, wall_b = cpu_window(st.worker_pid, a.window)
        m1 = st.metrics()
        evals = (msum(m1, "mf_alerting_rule_group_evaluations_total")
                 - msum(m0, "mf_alerting_rule_group_evaluations_total"))
        rule_evals = msum(m1, "mf_alerting_rule_evaluations_total") - msum(m0, "mf_alerting_rule_evaluations_total")
        failures = (msum(m1, "mf_alerting_rule_evaluation_failures_total")
                    - msum(m0, "mf_alerting_rule_evaluation_failures_total"))
        dur = (msum(m1, "mf_alerting_rule_group_duration_seconds_sum")
               - msum(m0, "mf_alerting_rule_group_duration_seconds_sum"))
        rules_api = st.api("/api/v1/rules")
        alerts_api = st.api("/api/v1/alerts")
        extra = cpu_b - cpu_a / wall_a * wall_b
        n_series = out["series_loaded"] if out["series_loaded"] > 0 else a.cost_hosts * 10
        out["with_rules"] = {
            "cpu_s": round(cpu_b, 3), "wall_s": round(wall_b, 1), "cpu_s_per_s": round(cpu_b / wall_b, 4),
            "group_evaluations": evals, "rule_evaluations": rule_evals, "rule_failures": failures,
            "group_eval_wall_mean_s": round(dur / evals, 3) if evals else None,
            "loadavg": [la0, loadavg()], "webhook_alerts_received": hook.alerts - hook0,
        }
        if evals:
            out["extra_cpu_s_per_group_eval"] = round(extra / evals, 4)
            out["cpu_s_per_rule_per_10k_series_per_eval"] = round(extra / evals / a.rules * 10_000 / n_series, 5)
            out["wall_s_per_rule_eval"] = round(dur / evals / a.rules, 5)
        # per-rule evaluation time by kind, from the rules API (last evaluation)
        by_kind: dict[str, list[float]] = defaultdict(list)
        group_eval_time = None
        for g in rules_api.get("data", {}).get("groups", []):
            if g.get("name") == "cost":
                group_eval_time = g.get("evaluationTime")
                for i, r in enumerate(g.get("rules", [])):
                    by_kind[kinds[i] if i < len(kinds) else "?"].append(float(r.get("evaluationTime", 0)))
        out["rules_api_group_evaluationTime_s"] = group_eval_time
        out["per_rule_eval_ms_by_kind"] = {k: {"n": len(v), "mean_ms": round(1000 * float(np.mean(v)), 2),
                                               "max_ms": round(1000 * max(v), 2)} for k, v in by_kind.items()}
        out["active_alerts"] = len(alerts_api.get("data", {}).get("alerts", []))
        out["mf_alerting_metrics"] = {
            f"{n}{lb}": v for (n, lb), v in m1.items() if n.startswith("mf_alerting_")
            and not n.endswith("_created") and "_bucket" not in n}
        out["group_duration_p50_le_s"] = hist_quantile(m0, m1, "mf_alerting_rule_group_duration_seconds", 0.5)
        if a.profile:
            log(f"cost: py-spy {a.profile} s on the worker")
            out["pyspy"] = pyspy(st.worker_pid, a.profile, Path(a.root) / "cost-worker.folded")
            out["pyspy_file"] = str(Path(a.root) / "cost-worker.folded")
    finally:
        st.stop_worker()
        procs.stop("cost-collector")
    return out


# ---------------------------------------------------------------- main

def fmt(v, unit: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}{unit}"
    return f"{v}{unit}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/tmp/mfalert")
    ap.add_argument("--kafka-port", type=int, default=49092)
    ap.add_argument("--http-port", type=int, default=48080)
    ap.add_argument("--grpc-port", type=int, default=45051)
    ap.add_argument("--web-port", type=int, default=46066)
    ap.add_argument("--webhook-port", type=int, default=47000)
    ap.add_argument("--levels", default="1000:100,10000:1000",
                    help="background loads rate:hosts (pts/s : hosts of 10 series), comma-separated")
    ap.add_argument("--trials", type=int, default=25)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--trial-timeout", type=float, default=30.0)
    ap.add_argument("--catchup-timeout", type=float, default=90.0,
                    help="after the warm-up, wait (at most this long) until the worker keeps up "
                         "(ingest delay p90 <= 0.5 s); 0 = no")
    ap.add_argument("--with-cost-rules", action="store_true",
                    help="latency part: also load the 100-rule cost group (10 s) on the same worker")
    ap.add_argument("--tick", type=float, default=0.5, help="MF_RULE_TICK_S of the worker")
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--cost-hosts", type=int, default=1000)
    ap.add_argument("--window", type=float, default=60.0, help="CPU measuring window of each cost phase, s")
    ap.add_argument("--profile", type=int, default=25, help="py-spy seconds on the evaluating worker; 0 = off")
    ap.add_argument("--parts", default="latency,cost")
    ap.add_argument("--quick", action="store_true", help="smoke run: 5 trials, 20 s windows, one level")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--max-minutes", type=float, default=30.0, help="hard bound of the whole run")
    a = ap.parse_args()
    if a.quick:
        a.trials, a.window, a.warmup, a.profile = 5, 20.0, 8.0, 0
        a.levels = a.levels.split(",")[0]
    a.levels = [x for x in a.levels.split(",") if x]
    parts = set(a.parts.split(","))

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def on_alarm(*_: object) -> None:
        raise TimeoutError(f"--max-minutes {a.max_minutes} exceeded")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(a.max_minutes * 60))

    root = Path(a.root)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    env = {**os.environ, "MF_KAFKA_BOOTSTRAP": f"127.0.0.1:{a.kafka_port}", "MF_HOME": str(root / "home"),
           "PYTHONUNBUFFERED": "1"}
    procs = Procs(root, env)
    hook = Webhook(a.webhook_port)
    kafka_dir = root / "kafka"
    result: dict = {"bench": "alerts", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "loadavg_start": loadavg(), "nproc": os.cpu_count()}
    kafka_started = False
    try:
        hook.start()
        r = subprocess.run([PY, "-m", "metricsflow", "kafka", "start", "--data-dir", str(kafka_dir),
                            "--port", str(a.kafka_port)], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"kafka start failed: {r.stdout[-500:]} {r.stderr[-1500:]}")
        kafka_started = True
        log(f"kafka: {r.stdout.strip()}")
        if "latency" in parts:
            result["latency"] = run_latency(a, procs, hook, log)
        if "cost" in parts:
            result["cost"] = run_cost(a, procs, hook, log)
    finally:
        signal.alarm(0)
        procs.stop_all()
        if kafka_started:
            subprocess.run([PY, "-m", "metricsflow", "kafka", "stop", "--data-dir", str(kafka_dir),
                            "--port", str(a.kafka_port)], cwd=REPO, env=env, capture_output=True, timeout=120)
        hook.stop()
    result["loadavg_end"] = loadavg()

    print()
    print("| background load | series | trials | missed | ack→webhook p50 | p99 | max | resolve p50 | worker CPU/s |"
          " ingest delay p50/p99 (le) | probe evals/s | load avg |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |")
    for r in result.get("latency", []):
        extra = " + 100 rules" if r.get("with_cost_rules") else ""
        print(f"| {r['load_pts_s']} pts/s{extra} (accepted {r['collector_accepted_pts_s']}) | {r['series']} | "
              f"{r['trials']} | "
              f"{r['misses']} | {fmt(r['ack_to_webhook_p50_s'], ' s')} | {fmt(r['ack_to_webhook_p99_s'], ' s')} | "
              f"{fmt(r['ack_to_webhook_max_s'], ' s')} | {fmt(r['resolve_ack_to_webhook_p50_s'], ' s')} | "
              f"{r['worker_cpu_s_per_s']} | {r['ingest_delay_p50_s']}/{r['ingest_delay_p99_s']} s | "
              f"{r['probe_group_evals_per_s']} | "
              f"{r['loadavg_start'][0]:.1f}→{r['loadavg_end'][0]:.1f} |")
    c = result.get("cost")
    if c:
        print()
        print("| cost | value |")
        print("| --- | ---: |")
        wr = c.get("with_rules", {})
        rows = [
            ("series loaded", c.get("series_loaded")),
            ("worker CPU-s/s without rules", c.get("no_rules", {}).get("cpu_s_per_s")),
            (f"worker CPU-s/s with {c['rules']} rules (10s)", wr.get("cpu_s_per_s")),
            ("group evaluations in window", wr.get("group_evaluations")),
            ("extra CPU-s per group evaluation", c.get("extra_cpu_s_per_group_eval")),
            ("**CPU-s per rule per 10k series per evaluation**", c.get("cpu_s_per_rule_per_10k_series_per_eval")),
            ("group eval wall (mf_alerting_rule_group_duration_seconds mean)", wr.get("group_eval_wall_mean_s")),
            ("active alerts", c.get("active_alerts")),
        ]
        for k, v in rows:
            print(f"| {k} | {v} |")
        for k, v in c.get("per_rule_eval_ms_by_kind", {}).items():
            print(f"| per-rule evaluationTime: {k} (n={v['n']}) | {v['mean_ms']} ms (max {v['max_ms']}) |")
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
