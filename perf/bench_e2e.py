#!/usr/bin/env python3
"""End-to-end ingest benchmark of metricsflow: collector + Kafka + worker, one command.

    python perf/bench_e2e.py --size S|M|HC --protocol grpc|grpc_stream|http|remote_write [--with-anchors]

What it does (method mirrors ../shared/anchors/bench.py so the figures compare):
  1. pre-encodes every request in memory (500 series x 10 samples each, time-ordered);
     encode time / µs per point reported apart from the servers' cost;
  2. starts a private Kafka (KRaft), one collector and one worker (ports 29092/28080/25051/26066,
     data under /tmp/mfperf/e2e), sends one probe point (at the load's last timestamp) and waits
     until it is queryable;
  3. measures each server process's idle CPU rate (5 s), then sends everything over 4 connections
     with the anchors' chain scheduler (per-group chains in time order, <= 4 windows look-ahead);
  4. waits until the worker consumed every sent point, then until the head was cut into chunks and
     the processes went idle (< 5 % of a core for 3 s); utime+stime from /proc for collector, worker
     and the Kafka JVM, idle baseline subtracted -> points per CPU-second (until idle: with the seals
     of the blocks past the seal horizon, which depend on the time of day — the 2 h window's older
     block seals only if it ended an hour before the last sample — so `blocks_sealed` and the
     worker's CPU after catch-up per sealed block are reported; --block-phase MIN moves the data
     back, up to 2 h, to end MIN minutes into its block, so runs at any hour seal alike: 60-120
     seal (120 - MIN) minutes of every series' older block; at catch-up: the ingest path alone);
  5. disk: POST /internal/force_flush to the worker (its tables keep no write-ahead log, so their
     memtables reach the disk at a flush; its CPU is reported, and points per CPU-second with it;
     the worker's CPU by thread name, until idle and in the flush: Python's, RocksDB's flushes),
     du -sb of the worker's RocksDB dir per table (WAL-inclusive and chunks-only), Kafka topic
     dirs; worker VmRSS per active series; /v1/query timings for one host (raw tier);
  6. steady phase at half the measured sustained maximum (a separate tenant): client ack p50/p99 (over
     the phase, and of the requests sent after its first 2 s, whose series the collector has seen) and
     freshness (ack -> visible in /v1/query) of probe points sent every 0.5 s; with --ack-timeline each
     process's CPU (the load generator's too) and the machine's busy and stolen cores every 50 ms, and
     every ack over 30 ms with the CPU beside it;
  7. stops everything it started (by PID), reaping collector and worker for the CPU they took while
     stopping; with --with-anchors runs ../shared/anchors/bench.py for
     VictoriaMetrics and Prometheus with the same hosts/points and prints the ratios.
Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perf.lib import kafka_warm, procs, promtext, rocks  # noqa: E402
from perf.lib import requests as rq  # noqa: E402
from perf.lib.send import PROTOCOLS, Client, SendStats, send_chains, send_paced  # noqa: E402
from perf.lib.stack import PY, Stack, add_env_argument, env_settings, git_state, python_version  # noqa: E402

# The anchor runners sit beside the checkout (../shared/anchors), or where MF_ANCHORS says.
ANCHORS = Path(os.environ.get("MF_ANCHORS", REPO.parent / "shared" / "anchors"))


BLOCK_MS = 2 * 3600 * 1000  # the worker's raw block (MF_BLOCK_MS's default)


def phase_end_ms(phase_min: float, now_ms: int | None = None) -> int:
    """The latest time at least 20 s ago that lies ``phase_min`` minutes into a 2 h block, on the 10 s grid."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    latest = (now_ms - 20_000) // rq.INTERVAL_MS * rq.INTERVAL_MS
    phase_ms = int(phase_min * 60_000) // rq.INTERVAL_MS * rq.INTERVAL_MS % BLOCK_MS
    return latest - (latest - phase_ms) % BLOCK_MS


def pct(values, q) -> float | None:
    return round(float(np.percentile(values, q)), 2) if len(values) else None


SCRAPE_STALLS: list[float] = []  # seconds a /metrics scrape of the worker took when over 1 s


def worker_counters(url: str) -> dict[str, float]:
    """The worker's counters; its event loop can be blocked by a head cut, so wait (and record it)."""
    t0 = time.perf_counter()
    s = promtext.scrape_patiently(url + "/metrics", timeout=60, pause_s=0.5)
    dt = time.perf_counter() - t0
    if dt > 1.0:
        SCRAPE_STALLS.append(round(dt, 2))
    return {"consumed": promtext.total(s, "mf_worker_points_consumed_total"),
            "head_points": promtext.total(s, "mf_worker_head_points"),
            "series": promtext.total(s, "mf_worker_series"),
            "lag": promtext.total(s, "mf_worker_consumer_lag"),
            "refused": promtext.total(s, "mf_worker_points_refused_total"),
            "errors": promtext.total(s, "mf_worker_errors_total"),
            "sealed": promtext.total(s, "mf_worker_blocks_sealed_total")}


def requests_per_write(before: dict[str, float], after: dict[str, float]) -> float | None:
    """Mean requests the collector wrote to Kafka together (group commit) between two scrapes."""
    name = "mf_collector_requests_per_write"
    writes = promtext.total(after, name + "_count") - promtext.total(before, name + "_count")
    requests = promtext.total(after, name + "_sum") - promtext.total(before, name + "_sum")
    return round(requests / writes, 2) if writes else None


def query(url: str, expr: str, start_s: float, end_s: float, tenant: str = "default",
          timeout: float = 60) -> tuple[float, dict]:
    q = urllib.parse.urlencode({"query": expr, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "tier": "raw"})
    req = urllib.request.Request(f"{url}/v1/query?{q}", headers={"X-Scope-OrgID": tenant})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = r.read()
    return (time.perf_counter() - t0) * 1000, json.loads(body)


async def wait_probe(client: Client, url: str, ts_ms: int, value: float, timeout: float = 60.0,
                     poll_s: float = 0.02) -> tuple[float | None, float]:
    """Send one probe point; returns (ack -> visible seconds or None on timeout, ack ms)."""
    import aiohttp
    t0 = time.perf_counter()
    ok = await client.post(rq.probe_body(client.protocol, ts_ms, value), None, 1, tenant="default")
    t_ack = time.perf_counter()
    if not ok:
        return None, (t_ack - t0) * 1000
    params = {"query": 'mf_bench_probe{probe="freshness"}', "start": f"{(ts_ms - 1) / 1000:.3f}",
              "end": f"{(ts_ms + 1) / 1000:.3f}", "tier": "raw"}
    async with aiohttp.ClientSession() as s:
        while time.perf_counter() - t_ack < timeout:
            async with s.get(url + "/v1/query", params=params) as r:
                if r.status == 200:
                    j = await r.json()
                    if any(v for res in j["data"]["result"] for v in res["values"]):
                        return time.perf_counter() - t_ack, (t_ack - t0) * 1000
            # back off so that many pending probes do not load the worker they measure
            waited = time.perf_counter() - t_ack
            await asyncio.sleep(poll_s if waited < 1 else 0.1 if waited < 5 else 0.5)
    return None, (t_ack - t0) * 1000


class CpuTimeline:
    """Each process's CPU (cores) per ``step_s``, sampled from /proc in a thread while the steady load runs."""

    def __init__(self, pids: dict[str, int], step_s: float = 0.05) -> None:
        # The load generator itself, and the machine's busy and stolen cores beside our processes: what
        # else ran while an ack waited.
        self.pids, self.step_s = {**pids, "client": os.getpid()}, step_s
        self.started = time.perf_counter()  # CLOCK_MONOTONIC, as `perf record -k CLOCK_MONOTONIC` stamps
        self.started_unix = time.time()  # as Kafka's and the workers' logs stamp
        self.cores: dict[str, list[float]] = {k: [] for k in (*self.pids, "machine", "steal")}
        self.client_gc: list[tuple[float, int, float]] = []  # this process's collections: start, generation, s
        self._gc_start = 0.0
        gc.callbacks.append(self._on_gc)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.client_gc.append((self._gc_start, info["generation"], time.perf_counter() - self._gc_start))

    def _sample(self) -> dict[str, float]:
        busy, steal = procs.machine_cpu()
        return {**procs.cpu_of(self.pids), "machine": busy, "steal": steal}

    def _run(self) -> None:
        last = self._sample()
        while not self._stop.wait(self.step_s):
            now = self._sample()
            for k in self.cores:
                self.cores[k].append(round((now[k] - last[k]) / self.step_s, 2))
            last = now

    def stop(self) -> None:
        gc.callbacks.remove(self._on_gc)
        self._stop.set()
        self._thread.join()


def slow_ack_report(st: SendStats, timeline: CpuTimeline, slow_ms: float = 30.0) -> dict:
    """Acks slower than ``slow_ms`` with each process's mean cores while they waited, beside the phase's mean."""
    step = timeline.step_s
    out = []
    for t0, ms in zip(st.ack_started, st.ack_ms, strict=True):
        if ms < slow_ms:
            continue
        end = t0 + ms / 1000
        a = int((t0 - timeline.started) / step)
        b = max(a + 1, int((end - timeline.started) / step) + 1)
        out.append({"at_s": round(t0 - timeline.started, 2), "ms": round(ms, 1),
                    "cores": {k: round(sum(v[a:b]) / max(1, len(v[a:b])), 2) for k, v in timeline.cores.items()},
                    # the load generator's own collections while it waited: its pauses are in the ack too
                    "client_gc_ms": round(sum(d for g0, _, d in timeline.client_gc if t0 <= g0 <= end) * 1000, 1)})
    gcs = timeline.client_gc
    return {"slow_ms": slow_ms, "timeline_started_monotonic_s": round(timeline.started, 3),
            "timeline_started_unix_s": round(timeline.started_unix, 3), "slow_acks": out,
            "client_gc": {"count": len(gcs), "max_ms": round(max((d for *_, d in gcs), default=0) * 1000, 1),
                          "over_10ms": [[round(g0 - timeline.started, 2), g, round(d * 1000, 1)]
                                        for g0, g, d in gcs if d >= 0.01]},
            "mean_cores": {k: round(sum(v) / max(1, len(v)), 2) for k, v in timeline.cores.items()}}


async def steady_phase(protocol: str, coll, worker_url: str, items, rate: float, seconds: float,
                       probe_every: float = 0.5, concurrency: int = 4, pids: dict[str, int] | None = None) -> dict:
    if not pids:
        return (await _steady_phase(protocol, coll, worker_url, items, rate, seconds, probe_every, concurrency))[0]
    timeline = CpuTimeline(pids)
    try:
        result, st = await _steady_phase(protocol, coll, worker_url, items, rate, seconds, probe_every, concurrency)
    finally:
        timeline.stop()
    result["slow_acks"] = slow_ack_report(st, timeline)
    return result


async def _steady_phase(protocol: str, coll, worker_url: str, items, rate: float, seconds: float,
                        probe_every: float, concurrency: int) -> tuple[dict, SendStats]:
    async with Client(protocol, coll.url, coll.grpc, concurrency) as load_client, \
            Client(protocol, coll.url, coll.grpc, 1) as probe_client:
        stop_at = time.perf_counter() + seconds
        lags: list[float] = []

        async def loop_lag() -> None:
            # This process's own event-loop delay: part of every ack time it measures.
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append((time.perf_counter() - t - 0.01) * 1000)

        lag_task = asyncio.create_task(loop_lag())
        load_started = time.perf_counter()
        load = asyncio.create_task(send_paced(load_client, items, rate, tenant="steady", stop_at=stop_at))
        probes: list[asyncio.Task] = []
        settle_s = min(2.0, seconds / 5)
        await asyncio.sleep(settle_s)  # let the load settle in
        i = 0
        while time.perf_counter() < stop_at - 1.0:
            i += 1
            probes.append(asyncio.create_task(wait_probe(probe_client, worker_url, int(time.time() * 1000), i)))
            await asyncio.sleep(probe_every)
        t0 = time.perf_counter()
        st = await load
        await lag_task
        got = await asyncio.gather(*probes)
        wall = seconds + (time.perf_counter() - t0)
    fresh = [g[0] for g in got if g[0] is not None]
    settled = [ms for t0, ms in zip(st.ack_started, st.ack_ms, strict=True) if t0 - load_started >= settle_s]
    result = {"target_rate_pps": round(rate), "points": st.accepted, "seconds": seconds,
            "achieved_pps": round(st.accepted / max(1e-9, seconds)), "errors": st.errors,
            "wall_incl_probe_wait_s": round(wall, 1),
            "ack_p50_ms": pct(st.ack_ms, 50), "ack_p99_ms": pct(st.ack_ms, 99),
            # The phase's first requests bring its 10,000 series to the collector new (a burst of
            # 40-120 ms acks in its first second): the acks of requests sent once the probes start.
            "settle_s": settle_s, "ack_p50_ms_settled": pct(settled, 50), "ack_p99_ms_settled": pct(settled, 99),
            "client_loop_lag_p50_ms": pct(lags, 50), "client_loop_lag_p99_ms": pct(lags, 99),
            "probes": len(got), "probes_visible": len(fresh),
            "freshness_p50_s": pct(fresh, 50), "freshness_p99_s": pct(fresh, 99),
            "freshness_max_s": round(max(fresh), 3) if fresh else None,
            "probe_ack_p50_ms": pct([g[1] for g in got], 50),
            # in send order (every probe_every s): shows whether the tail is a start-up transient
            "freshness_s": [None if g[0] is None else round(g[0], 3) for g in got]}
    return result, st


def run_anchor(system: str, hosts: int, points: int, root: Path, timeout: float = 900) -> dict:
    out = root / f"anchor_{system}.json"
    port = 28428 if system == "vm" else 29090
    cmd = [PY, str(ANCHORS / "bench.py"), "--system", system, "--hosts", str(hosts), "--points", str(points),
           "--port", str(port), "--datadir", str(root / f"anchor_{system}_data"), "--out", str(out), "--runs", "10",
           "--no-block-queries"]
    env = dict(os.environ, ANCHORS_VENV_PY=PY)
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=str(ANCHORS.parent))
    if r.returncode != 0 or not out.exists():
        return {"error": (r.stdout[-800:] + r.stderr[-800:]), "cmd": " ".join(cmd)}
    j = json.loads(out.read_text())
    ing, sto = j.get("ingest", {}), j.get("storage", {})
    q = j.get("queries", {})
    return {"cmd": " ".join(cmd), "wall_s": round(time.time() - t0, 1),
            "points_per_s_wall": ing.get("points_per_s_wall"),
            "points_per_server_cpu_s": ing.get("points_per_server_cpu_s"),
            "bytes_per_point": sto.get("bytes_per_point") or sto.get("block_bytes_per_point"),
            "storage": sto, "q3_median_ms": (q.get("q3_avg_over_time_1host") or {}).get("median_ms"),
            "q3_max_ms": (q.get("q3_avg_over_time_1host") or {}).get("max_ms"),
            "samples_counted": ing.get("samples_counted_by_query"), "encode": j.get("client", {}).get("encode")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=rq.SIZES, default="S")
    ap.add_argument("--protocol", choices=PROTOCOLS, default="grpc",
                    help="grpc_stream: one WriteStreamAcked per connection instead of a unary Write per request")
    ap.add_argument("--with-anchors", action="store_true", help="also run anchors/bench.py --system vm and prom")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--lag", type=int, default=4)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--cut-interval", type=float, default=15.0, help="MF_HEAD_CUT_INTERVAL_S of the worker")
    ap.add_argument("--standby-replicas", type=int, default=0)
    add_env_argument(ap)
    ap.add_argument("--ack-timeline", action="store_true",
                    help="steady phase: each process's CPU and the machine's busy and stolen cores every 50 ms;"
                         " the acks over 30 ms with the CPU beside them")
    ap.add_argument("--steady-seconds", type=float, default=20.0, help="0 skips the steady/freshness phase")
    ap.add_argument("--steady-rate", type=float, default=0.0,
                    help="points/s of the steady phase (default: half the measured sustained maximum)")
    ap.add_argument("--query-runs", type=int, default=20)
    ap.add_argument("--root", default="/tmp/mfperf/e2e")
    ap.add_argument("--kafka-port", type=int, default=29092)
    ap.add_argument("--kafka-warm-s", type=float, default=0.0,
                    help="before the stack starts, drive the fresh broker until its JIT is quiet, at most this long"
                         " (default 0: beside a cold broker, whose JIT takes ~4 CPU-s of the window)")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy record collector+worker during the bulk send (perturbs the CPU figures)")
    ap.add_argument("--profile-seconds", type=int, default=20)
    ap.add_argument("--block-phase", type=float, default=None, metavar="MIN",
                    help="end the data MIN minutes into its 2 h block (moved back up to 2 h): seals alike at any hour")
    ap.add_argument("--profile-dir", default=str(REPO / "perf" / "flamegraphs"))
    ap.add_argument("--out", default=None, help="JSON result file (default /tmp/mfperf/results/<tag>.json)")
    a = ap.parse_args()

    hosts, points = rq.SIZES[a.size]
    tag = f"e2e_{a.size}_{a.protocol}"
    root = Path(a.root)
    print(f"[{tag}] encoding {hosts * 10 * points:,} points ({a.protocol}) ...", flush=True)
    enc = rq.build(a.protocol, hosts, points, end_ms=None if a.block_phase is None else phase_end_ms(a.block_phase))
    print(f"[{tag}] encode: {json.dumps(enc.stats)}", flush=True)

    stack = Stack(root=root, kafka_port=a.kafka_port, partitions=a.partitions, cut_interval_s=a.cut_interval,
                  standby_replicas=a.standby_replicas, app_id=f"mfperf-{a.size}-{a.protocol}".lower(),
                  extra_env=env_settings(a.env))
    result: dict = {"tag": tag, "size": a.size, "protocol": a.protocol, "hosts": hosts,
                    "series": enc.n_series, "points": enc.n_points, "encode": enc.stats,
                    "machine": {"nproc": os.cpu_count(), "kernel": os.uname().release, "python": python_version()},
                    "config": {"partitions": a.partitions, "cut_interval_s": a.cut_interval,
                               "standby_replicas": a.standby_replicas, "concurrency": a.concurrency, "env": a.env,
                               "effective_concurrency": min(a.concurrency, enc.n_groups), "lag": a.lag,
                               "block_phase_min": a.block_phase, "data_end_ms": enc.end_ms},
                    "cmd": " ".join([Path(sys.executable).name, *sys.argv]), "code": git_state()}
    profilers: list[subprocess.Popen] = []
    try:
        t_start = time.time()
        stack.start_kafka()
        if a.kafka_warm_s > 0:
            result["kafka_warm_up"] = asyncio.run(kafka_warm.warm(
                f"127.0.0.1:{a.kafka_port}", stack.kafka_pid, f"{stack.topic_prefix}warmup", max_s=a.kafka_warm_s))
            print(f"[{tag}] Kafka warm-up: {json.dumps(result['kafka_warm_up'])}", flush=True)
        coll = stack.start_collector(0)
        worker = stack.start_worker(0)
        result["startup_s"] = round(time.time() - t_start, 1)
        pids = stack.pids()
        print(f"[{tag}] stack up in {result['startup_s']} s: {pids}", flush=True)

        async def warm() -> tuple:
            # At the load's last timestamp: a probe at the wall clock raised its partition's newest
            # time past a --block-phase load's, and that partition sealed 1/8 of the older blocks.
            async with Client(a.protocol, coll.url, coll.grpc, 1) as c:
                return await wait_probe(c, worker.url, enc.end_ms, 0.0, timeout=120)
        fresh0, _ = asyncio.run(warm())
        if fresh0 is None:
            raise RuntimeError("warm-up probe never became visible")
        result["first_probe_visible_s"] = round(fresh0, 3)

        procs.wait_idle(pids.values(), max_wait=40, thresh=0.15)
        idle = procs.idle_rates(pids, 5.0)
        result["idle_cpu_rate"] = {k: round(v, 4) for k, v in idle.items()}
        rss0 = procs.proc_mem(worker.pid).get("VmRSS", 0)
        c0 = worker_counters(worker.url)

        # ---- bulk send ------------------------------------------------------
        if a.profile:
            Path(a.profile_dir).mkdir(parents=True, exist_ok=True)
            # Beside the venv's python, else on PATH; without it the profiles would silently be missing.
            spy = Path(PY).parent / "py-spy"
            spy_cmd = str(spy) if spy.exists() else shutil.which("py-spy")
            if spy_cmd is None:
                raise SystemExit("--profile needs py-spy (pip install py-spy)")
            for name, pid in (("collector", coll.pid), ("worker", worker.pid)):
                svg = Path(a.profile_dir) / f"{a.size}_{a.protocol}_{name}.svg"
                profilers.append(subprocess.Popen(
                    [spy_cmd, "record", "--pid", str(pid), "--duration",
                     str(a.profile_seconds), "--rate", "100", "--nonblocking", "-o", str(svg)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                profilers.append(subprocess.Popen(
                    [spy_cmd, "record", "--pid", str(pid), "--duration",
                     str(a.profile_seconds), "--rate", "100", "--nonblocking", "--format", "raw",
                     "-o", str(svg.with_suffix(".folded.txt"))],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        cm_bulk0 = promtext.scrape(coll.url + "/metrics")
        cpu0 = procs.cpu_of(pids)
        threads0 = procs.thread_cpu_by_name(worker.pid)
        coll_threads0 = procs.thread_user_system_by_tid(coll.pid)

        def kafka_threads() -> dict[str, float]:
            return procs.thread_cpu_by_kind(pids["kafka"]) if "kafka" in pids else {}
        kafka_threads0 = kafka_threads()
        ct0 = os.times()
        t0 = time.perf_counter()

        async def bulk():
            async with Client(a.protocol, coll.url, coll.grpc, a.concurrency) as c:
                return await send_chains(c, enc.items, enc.n_windows, enc.n_groups, a.lag)
        st = asyncio.run(bulk())
        wall = time.perf_counter() - t0
        ct1 = os.times()
        cpu_send = procs.cpu_of(pids)
        coll_threads1 = procs.thread_user_system_by_tid(coll.pid)
        print(f"[{tag}] sent {st.accepted:,}/{st.points:,} points in {wall:.2f} s, errors {st.errors} "
              f"{st.err_samples}", flush=True)

        # ---- catch up -------------------------------------------------------
        deadline = time.perf_counter() + 900
        while True:
            cw = worker_counters(worker.url)
            if cw["consumed"] - c0["consumed"] >= st.accepted or time.perf_counter() > deadline:
                break
            time.sleep(0.2)
        t_caught = time.perf_counter() - t0
        cpu_caught = procs.cpu_of(pids)
        kafka_threads_caught = kafka_threads()
        rss_caught = procs.proc_mem(worker.pid)
        consumed = cw["consumed"] - c0["consumed"]
        cm_bulk1 = promtext.scrape(coll.url + "/metrics")
        print(f"[{tag}] worker consumed {consumed:,.0f} after {t_caught:.2f} s", flush=True)

        # ---- cut + settle ---------------------------------------------------
        def cut_done() -> bool:
            return worker_counters(worker.url)["head_points"] == 0
        settle = procs.wait_idle([coll.pid, worker.pid], max_wait=a.cut_interval * 4 + 60, window=3.0,
                                 thresh=0.05 + idle.get(coll.name, 0) + idle.get(worker.name, 0), extra=cut_done)
        cpu_end = procs.cpu_of(pids)
        threads_end = procs.thread_cpu_by_name(worker.pid)
        kafka_threads_end = kafka_threads()
        t_end = time.perf_counter() - t0
        cw_end = worker_counters(worker.url)
        rss_end = procs.proc_mem(worker.pid)

        def net(cpu_b: dict, elapsed: float) -> dict[str, float]:
            return {k: max(1e-9, cpu_b[k] - cpu0[k] - idle[k] * elapsed) for k in pids}
        n = st.accepted
        net_end = net(cpu_end, t_end)
        net_caught = net(cpu_caught, t_caught)
        cw_names = [coll.name, worker.name]
        ingest = {
            "collector_requests_per_write": requests_per_write(cm_bulk0, cm_bulk1),
            "wall_s": round(wall, 3), "points_per_s_wall": round(n / wall),
            "catch_up_s": round(t_caught, 2), "points_per_s_sustained": round(n / t_caught),
            "settle_s": round(settle, 1), "measured_until_s": round(t_end, 1),
            "errors": st.errors, "status": st.status, "err_samples": st.err_samples,
            "points_acked": n, "points_consumed": consumed, "worker_refused": cw_end["refused"] - c0["refused"],
            "ack_p50_ms": pct(st.ack_ms, 50), "ack_p99_ms": pct(st.ack_ms, 99),
            "client_cpu_s": round((ct1.user - ct0.user) + (ct1.system - ct0.system), 2),
            "cpu_s_send": {k: round(cpu_send[k] - cpu0[k], 2) for k in pids},
            "cpu_s_net": {k: round(v, 2) for k, v in net_end.items()},
            "cpu_s_net_at_catch_up": {k: round(v, 2) for k, v in net_caught.items()},
            "points_per_cpu_s": {k: round(n / v) for k, v in net_end.items()},
            "points_per_cpu_s_collector_worker": round(n / sum(net_end[k] for k in cw_names)),
            "points_per_cpu_s_all": round(n / sum(net_end.values())),
            "points_per_cpu_s_collector_worker_at_catch_up": round(n / sum(net_caught[k] for k in cw_names)),
        }
        # Until idle counts the seals too, but only of blocks already past the seal horizon (ended an
        # out-of-order window before the newest sample): how many depends on the time of day.
        sealed = cw_end["sealed"] - c0["sealed"]
        ingest["blocks_sealed"] = sealed
        ingest["worker_cpu_ms_after_catch_up_per_sealed_block"] = (
            round((net_end[worker.name] - net_caught[worker.name]) / sealed * 1000, 2) if sealed else None)
        ingest["worker_scrape_stalls_s"] = list(SCRAPE_STALLS)
        # Kafka's JVM by kind of thread: its JIT and GC run beside our processes on the same cores.
        ingest["kafka_cpu_s_by_thread"] = {
            kind: {"until_catch_up": round(kafka_threads_caught.get(kind, 0.0) - kafka_threads0.get(kind, 0.0), 2),
                   "until_idle": round(cpu - kafka_threads0.get(kind, 0.0), 2)}
            for kind, cpu in sorted(kafka_threads_end.items(), key=lambda kv: kafka_threads0.get(kv[0], 0.0) - kv[1])
            if cpu - kafka_threads0.get(kind, 0.0) >= 0.01}
        # The collector's threads while the load was sent (the loop's is the process id; gRPC's core has
        # its own), user and system time apart: where its CPU goes that no Python frame shows.
        coll_by_thread: dict[str, dict[str, float]] = {}
        for tid, (name, user, system) in coll_threads1.items():
            _, user0, system0 = coll_threads0.get(tid, (name, 0.0, 0.0))
            key = "loop" if tid == coll.pid else name
            acc = coll_by_thread.setdefault(key, {"user": 0.0, "system": 0.0})
            acc["user"] += user - user0
            acc["system"] += system - system0
        ingest["collector_cpu_s_by_thread_send"] = {
            k: {kind: round(v, 2) for kind, v in acc.items()} for k, acc in coll_by_thread.items()
            if acc["user"] + acc["system"] >= 0.01}
        result["ingest"] = ingest
        print(f"[{tag}] ingest: {json.dumps(ingest)}", flush=True)

        # ---- memory + disk --------------------------------------------------
        series = max(1.0, cw_end["series"] or enc.n_series)
        result["memory"] = {"worker_rss_idle_before": rss0, "worker_rss_after_catch_up": rss_caught.get("VmRSS"),
                            "worker_rss_after_cut": rss_end.get("VmRSS"), "worker_hwm": rss_end.get("VmHWM"),
                            "series_on_worker": series,
                            "rss_bytes_per_series": round(rss_end.get("VmRSS", 0) / series),
                            "rss_delta_bytes_per_series": round((rss_end.get("VmRSS", 0) - rss0) / series),
                            "hwm_delta_bytes_per_series": round((rss_end.get("VmHWM", 0) - rss0) / series)}
        # The tables keep no write-ahead log: what their memtables hold reaches the disk at a flush.
        # Every byte written is flushed once, so the flush is part of what the points cost.
        flush_cpu0 = procs.proc_cpu(worker.pid)
        with urllib.request.urlopen(urllib.request.Request(worker.url + "/internal/force_flush", method="POST"),
                                    timeout=120) as r:
            flushed = json.loads(r.read())
        flush_cpu = max(0.0, procs.proc_cpu(worker.pid) - flush_cpu0)
        threads_flushed = procs.thread_cpu_by_name(worker.pid)
        # By thread name, until idle and in the force flush (rocksdb:high flushes, rocksdb:low compacts).
        ingest["worker_cpu_s_by_thread"] = {
            name: {"until_idle": round(threads_end.get(name, 0.0) - threads0.get(name, 0.0), 2),
                   "force_flush": round(cpu - threads_end.get(name, 0.0), 2)}
            for name, cpu in sorted(threads_flushed.items())}
        ingest["worker_cpu_s_force_flush"] = round(flush_cpu, 2)
        ingest["points_per_cpu_s_collector_worker_with_flush"] = round(
            n / (sum(net_end[k] for k in cw_names) + flush_cpu))
        print(f"[{tag}] force_flush: {flushed['databases_flushed']} databases in {flushed['seconds']} s, "
              f"worker {flush_cpu:.2f} CPU-s", flush=True)
        wdir = stack.worker_dir(worker)
        tables = rocks.table_sizes(wdir)
        total_du = procs.du(str(wdir))
        total = sum(t["total"] for t in tables.values())
        chunks = tables.get("chunks", {}).get("total", 0)
        data_no_wal = total - tables.get("wal", {}).get("total", 0)  # no wal table since "No WAL table": 0
        ktopics = rocks.kafka_topic_sizes(stack.kafka_dir)
        copy = root / "worker_copy"
        rocks.compact_copy(wdir, copy)
        ctables = rocks.table_sizes(copy)
        ctotal = sum(t["total"] for t in ctables.values())
        cchunks = ctables.get("chunks", {}).get("total", 0)
        result["storage"] = {
            "worker_dir_bytes_du": total_du, "worker_data_bytes": total, "tables": tables,
            "note": "data = RocksDB .sst + .log (its WAL) of every table DB; du -sb also counts MANIFEST/OPTIONS/LOG",
            "bytes_per_point_total": round(total / n, 3),
            "bytes_per_point_excl_wal_table": round(data_no_wal / n, 3),
            "bytes_per_point_chunks_only": round(chunks / n, 3),
            "bytes_per_point_chunks_sst_only": round(tables.get("chunks", {}).get("sst", 0) / n, 3),
            "compacted": {"worker_data_bytes": ctotal, "worker_dir_bytes_du": procs.du(str(copy)), "tables": ctables,
                          "bytes_per_point_total": round(ctotal / n, 3),
                          "bytes_per_point_excl_wal_table": round(
                              (ctotal - ctables.get("wal", {}).get("total", 0)) / n, 3),
                          "bytes_per_point_chunks_only": round(cchunks / n, 3),
                          "bytes_per_point_chunks_sst_only": round(ctables.get("chunks", {}).get("sst", 0) / n, 3),
                          "note": "copy of the worker dir opened offline with Faust's RocksDBOptions, "
                                  "flush + compact_range"},
            "kafka_topic_bytes": ktopics,
            "kafka_points_bytes_per_point": round(sum(v for k, v in ktopics.items() if k.endswith("points")) / n, 2),
        }
        print(f"[{tag}] storage: {json.dumps(result['storage'])}", flush=True)

        # ---- queries ----------------------------------------------------------
        qs = {}
        for name, expr in (("one_host_10_series", '{hostname="host_0"}'),
                           ("one_series", 'cpu_usage_user{hostname="host_0"}')):
            times, npts = [], 0
            for _ in range(a.query_runs):
                ms, j = query(worker.url, expr, enc.start_ms / 1000, enc.end_ms / 1000)
                times.append(ms)
                npts = sum(len(r["values"]) for r in j["data"]["result"])
            qs[name] = {"expr": expr, "p50_ms": pct(times, 50), "p99_ms": pct(times, 99), "points": npts}
        result["queries"] = qs
        print(f"[{tag}] queries: {json.dumps(qs)}", flush=True)

        # ---- steady load + freshness ------------------------------------------
        if a.steady_seconds > 0:
            # The measured maximum: the slowest of what the pipeline consumed per wall second during the
            # bulk run, what one worker process (one core, cuts included) does per CPU-second, and what
            # all three processes together do on this machine's 2 cores.
            ingest["points_per_s_max_estimate"] = round(min(
                ingest["points_per_s_sustained"], ingest["points_per_cpu_s"][worker.name],
                (os.cpu_count() or 1) * ingest["points_per_cpu_s_all"]))
            rate = a.steady_rate or 0.5 * ingest["points_per_s_max_estimate"]
            s_hosts = min(hosts, 1000)
            s_points = int(rate * (a.steady_seconds + 10) / (s_hosts * 10)) + 10
            s_points = (s_points + 9) // 10 * 10
            s_enc = rq.build(a.protocol, s_hosts, s_points, extra_labels=None)
            s_items = sorted(s_enc.items, key=lambda it: (it.window, it.group))
            procs.wait_idle([coll.pid, worker.pid], max_wait=30, thresh=0.1)
            sc0, st0 = procs.cpu_of(pids), time.perf_counter()
            wm0 = promtext.scrape(worker.url + "/metrics")
            cm0 = promtext.scrape(coll.url + "/metrics")
            result["steady"] = asyncio.run(steady_phase(a.protocol, coll, worker.url, s_items, rate,
                                                        a.steady_seconds, concurrency=a.concurrency,
                                                        pids=pids if a.ack_timeline else None))
            sc1, st1 = procs.cpu_of(pids), time.perf_counter()
            wm1 = promtext.scrape(worker.url + "/metrics")
            cm1 = promtext.scrape(coll.url + "/metrics")
            # The collector's own ack histogram (body received -> Kafka ack; bucket upper bounds): what the
            # client's ack times add beyond it is transport, queueing before the handler and the client.
            cdelta = {k: v - cm0.get(k, 0.0) for k, v in cm1.items()}
            result["steady"]["collector_requests_per_write"] = requests_per_write(cm0, cm1)
            for q in (50, 99):
                for key, metric in (("collector_ack", "mf_collector_ack_seconds"),
                                    ("collector_kafka_write", "mf_collector_kafka_write_seconds")):
                    v = promtext.hist_quantile(cdelta, metric, q / 100)
                    result["steady"][f"{key}_le_p{q}_ms"] = None if v is None else v * 1000
            # The worker's own view of the steady phase (histogram deltas; bucket upper bounds).
            delta = {k: v - wm0.get(k, 0.0) for k, v in wm1.items()}
            for label, metric in (("event_loop_lag", "mf_worker_event_loop_lag_seconds"),
                                  ("ingest_delay", "mf_worker_ingest_delay_seconds"),
                                  ("cut", "mf_worker_cut_seconds"),
                                  ("gc_pause", "mf_worker_gc_pause_seconds")):
                result["steady"][f"worker_{label}_le_p50_s"] = promtext.hist_quantile(delta, metric, 0.5)
                result["steady"][f"worker_{label}_le_p99_s"] = promtext.hist_quantile(delta, metric, 0.99)
                result["steady"][f"worker_{label}_count"] = promtext.total(delta, metric + "_count")
                result["steady"][f"worker_{label}_sum_s"] = round(promtext.total(delta, metric + "_sum"), 3)
            # The longest garbage collection of each process (bucket upper bound): the loop stood still that long.
            result["steady"]["worker_gc_pause_le_max_s"] = promtext.hist_quantile(
                delta, "mf_worker_gc_pause_seconds", 1.0)
            result["steady"]["collector_gc_pause_le_max_s"] = promtext.hist_quantile(
                cdelta, "mf_collector_gc_pause_seconds", 1.0)
            for who, d in (("worker", delta), ("collector", cdelta)):
                name = f"mf_{who}_gc_pause_seconds"
                result["steady"][f"{who}_gc_by_generation"] = {
                    g: {"count": d.get(f'{name}_count{{generation="{g}"}}', 0.0),
                        "sum_s": round(d.get(f'{name}_sum{{generation="{g}"}}', 0.0), 3),
                        "le_max_s": promtext.hist_quantile(
                            {k: v for k, v in d.items() if f'generation="{g}"' in k}, name, 1.0)}
                    for g in "012"}
            scpu = {k: round(max(1e-9, sc1[k] - sc0[k] - idle[k] * (st1 - st0)), 2) for k in pids}
            result["steady"]["cpu_s_during"] = scpu
            result["steady"]["cpu_util_cores"] = {k: round(v / (st1 - st0), 2) for k, v in scpu.items()}
            result["steady"]["series"] = s_enc.n_series
            print(f"[{tag}] steady: {json.dumps(result['steady'])}", flush=True)
    finally:
        for p in profilers:
            try:
                p.wait(timeout=a.profile_seconds + 30)
            except subprocess.TimeoutExpired:
                p.kill()
        before_stop = procs.cpu_of(stack.pids())
        reaped = stack.stop_all()

    # Stopping, the worker flushes what its memtables took since the force flush (a steady phase's).
    if "ingest" in result:
        result["ingest"]["cpu_s_stopping"] = {k: round(max(0.0, v - before_stop[k]), 2) for k, v in reaped.items()
                                              if k in before_stop}

    if a.with_anchors:
        anchors = {}
        for system in ("vm", "prom"):
            print(f"[{tag}] anchors: {system} ...", flush=True)
            anchors[system] = run_anchor(system, hosts, points, root.parent / "anchors")
            brief = {k: v for k, v in anchors[system].items() if k != "storage"}
            print(f"[{tag}] anchor {system}: {json.dumps(brief)}",
                  flush=True)
        result["anchors"] = anchors
        ours = result["ingest"]["points_per_cpu_s_collector_worker"]
        ours_all = result["ingest"]["points_per_cpu_s_all"]
        ratios = {}
        for system, an in anchors.items():
            if an.get("points_per_server_cpu_s"):
                ratios[f"points_per_cpu_s_collector_worker/{system}"] = round(ours / an["points_per_server_cpu_s"], 3)
                ratios[f"points_per_cpu_s_incl_kafka/{system}"] = round(ours_all / an["points_per_server_cpu_s"], 3)
            if an.get("bytes_per_point"):
                ratios[f"bytes_per_point_chunks_only/{system}"] = round(
                    result["storage"]["bytes_per_point_chunks_only"] / an["bytes_per_point"], 3)
                ratios[f"bytes_per_point_total/{system}"] = round(
                    result["storage"]["bytes_per_point_total"] / an["bytes_per_point"], 3)
                ratios[f"bytes_per_point_compacted_excl_wal/{system}"] = round(
                    result["storage"]["compacted"]["bytes_per_point_excl_wal_table"] / an["bytes_per_point"], 3)
            if an.get("q3_median_ms"):
                ratios[f"query_one_series_p50/{system}_q3_median"] = round(
                    result["queries"]["one_series"]["p50_ms"] / an["q3_median_ms"], 2)
        result["ratios"] = ratios

    print_table(result)
    out = Path(a.out or f"/tmp/mfperf/results/{tag}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, separators=(",", ":")))
    return 0


def print_table(r: dict) -> None:
    ing, sto, mem = r["ingest"], r["storage"], r["memory"]
    ppc = ing["points_per_cpu_s"]
    rows = [
        ("workload", f"{r['size']}: {r['series']:,} series x {r['points'] // r['series']} = {r['points']:,} pts, "
                     f"{r['protocol']}"),
        ("client encode", f"{r['encode']['encode_us_per_point']} µs/point ({r['encode']['encode_s']} s), "
                          f"{r['encode']['wire_bytes_per_point']} wire B/pt"),
        ("points/s wall (acked)", f"{ing['points_per_s_wall']:,}  (send {ing['wall_s']} s)"),
        ("points/s sustained (consumed)", f"{ing['points_per_s_sustained']:,}  (caught up at {ing['catch_up_s']} s)"),
        ("points / CPU-s collector", f"{ppc.get('collector0', 0):,}"),
        ("points / CPU-s worker", f"{ppc.get('w1', 0):,}"),
        ("points / CPU-s Kafka JVM", f"{ppc.get('kafka', 0):,}"),
        ("points / CPU-s collector+worker", f"{ing['points_per_cpu_s_collector_worker']:,}"),
        ("points / CPU-s all three", f"{ing['points_per_cpu_s_all']:,}"),
        ("CPU-s net (coll/worker/kafka)", f"{ing['cpu_s_net'].get('collector0')}/{ing['cpu_s_net'].get('w1')}/"
                                          f"{ing['cpu_s_net'].get('kafka')}"),
        ("worker CPU-s of the force flush", f"{ing.get('worker_cpu_s_force_flush')}"),
        ("worker CPU-s by thread, until idle", " / ".join(
            f"{k} {v['until_idle']}" for k, v in ing.get("worker_cpu_s_by_thread", {}).items() if v["until_idle"])),
        ("points / CPU-s coll+worker with it", f"{ing.get('points_per_cpu_s_collector_worker_with_flush'):,}"),
        ("CPU-s stopping", " / ".join(f"{k} {v}" for k, v in ing.get("cpu_s_stopping", {}).items())),
        ("ack p50/p99 ms (bulk)", f"{ing['ack_p50_ms']} / {ing['ack_p99_ms']}"),
        ("requests per Kafka write (bulk)", f"{ing.get('collector_requests_per_write')}"),
        ("bytes/point total (worker dir)", f"{sto['bytes_per_point_total']}"),
        ("bytes/point excl. WAL table", f"{sto['bytes_per_point_excl_wal_table']}"),
        ("bytes/point chunks only", f"{sto['bytes_per_point_chunks_only']}"),
        ("compacted: B/pt total / excl WAL / chunks",
         f"{sto['compacted']['bytes_per_point_total']} / {sto['compacted']['bytes_per_point_excl_wal_table']} / "
         f"{sto['compacted']['bytes_per_point_chunks_only']}"),
        ("Kafka mf.points B/point", f"{sto['kafka_points_bytes_per_point']}"),
        ("worker RSS / series", f"{mem['rss_bytes_per_series']:,} B (delta {mem['rss_delta_bytes_per_series']:,} B)"),
    ]
    for name, q in r.get("queries", {}).items():
        rows.append((f"/v1/query {name}", f"p50 {q['p50_ms']} ms, p99 {q['p99_ms']} ms ({q['points']} pts)"))
    if "steady" in r:
        s = r["steady"]
        rows.append(("steady load", f"{s['achieved_pps']:,} pts/s target {s['target_rate_pps']:,}"))
        rows.append(("steady ack p50/p99 ms", f"{s['ack_p50_ms']} / {s['ack_p99_ms']}"))
        if "ack_p99_ms_settled" in s:
            rows.append((f"  sent after the first {s['settle_s']:g} s",
                         f"{s['ack_p50_ms_settled']} / {s['ack_p99_ms_settled']}"))
        rows.append(("  collector's own ack p50/p99 ms (≤ bucket)",
                     f"{s.get('collector_ack_le_p50_ms')} / {s.get('collector_ack_le_p99_ms')}"))
        rows.append(("  of which Kafka's ack p50/p99 ms (≤ bucket)",
                     f"{s.get('collector_kafka_write_le_p50_ms')} / {s.get('collector_kafka_write_le_p99_ms')}"))
        rows.append(("  requests per Kafka write", f"{s.get('collector_requests_per_write')}"))
        rows.append(("  load generator loop lag p50/p99 ms",
                     f"{s.get('client_loop_lag_p50_ms')} / {s.get('client_loop_lag_p99_ms')}"))
        rows.append(("freshness p50/p99 s", f"{s['freshness_p50_s']} / {s['freshness_p99_s']} "
                                            f"({s['probes_visible']}/{s['probes']} probes)"))
        rows.append(("worker event-loop lag p50/p99 s (≤ bucket)",
                     f"{s.get('worker_event_loop_lag_le_p50_s')} / {s.get('worker_event_loop_lag_le_p99_s')}"))
        rows.append(("longest collection worker / collector s (≤ bucket)",
                     f"{s.get('worker_gc_pause_le_max_s')} / {s.get('collector_gc_pause_le_max_s')} "
                     f"(worker: {s.get('worker_gc_pause_count')} collections, {s.get('worker_gc_pause_sum_s')} s)"))
        rows.append(("worker ingest delay p50/p99 s (≤ bucket)",
                     f"{s.get('worker_ingest_delay_le_p50_s')} / {s.get('worker_ingest_delay_le_p99_s')}"))
        rows.append(("worker cuts during steady: n, total s, p99 ≤ s",
                     f"{s.get('worker_cut_count')}, {s.get('worker_cut_sum_s')}, {s.get('worker_cut_le_p99_s')}"))
    for system, an in r.get("anchors", {}).items():
        rows.append((f"anchor {system} pts/CPU-s", f"{an.get('points_per_server_cpu_s')}"))
        rows.append((f"anchor {system} bytes/pt", f"{an.get('bytes_per_point')}"))
        rows.append((f"anchor {system} q3 median ms", f"{an.get('q3_median_ms')}"))
    for k, v in r.get("ratios", {}).items():
        rows.append((f"ratio {k}", f"{v}"))
    w = max(len(k) for k, _ in rows)
    print("-" * (w + 50))
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    print("-" * (w + 50))


if __name__ == "__main__":
    sys.exit(main())
