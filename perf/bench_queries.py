#!/usr/bin/env python3
"""Query-latency benchmark: dashboard queries on metricsflow (1 and 2 workers) and VictoriaMetrics.

    python perf/bench_queries.py [--hours 6] [--workers 2] [--runs 30] [--profile]

What it does (the query method mirrors ../shared/anchors/bench.py so the figures compare):
  1. builds the TSBS-like workload in memory (metricsflow.workload: 1,000 hosts x 10 cpu gauges,
     10 s apart, `--hours` of data ending ~20 s before now) plus 100 monotonically increasing
     counter series `requests_total{job="bench",instance="i_N"}` on the same timestamps;
  2. VictoriaMetrics (Debian package, 127.0.0.1:38428, -search.disableCache, queries with nocache=1) gets
     the same series and values over remote_write first, and stays up beside metricsflow (idle between
     its queries);
  3. starts a private Kafka (127.0.0.1:39092/39093), one collector (38080 / gRPC 35051) and one
     worker (36066), data under /tmp/mfq; sends everything over gRPC with the anchors' chain
     scheduler (500 series x 10 samples per request, 4 connections, time-ordered);
  4. waits until the worker consumed every acknowledged point (mf_worker_points_consumed_total),
     then until the head was cut into chunks and the processes are idle, and with `--seal-wait` s
     until the finished blocks are sealed (an idle worker seals them without budget, usually before
     the processes go idle; the backlog at query time is recorded);
  5. runs each query 1 warm-up + `--runs` rounds, a round being one request to metricsflow and then
     one to VictoriaMetrics (the machine's speed swings fall on both alike), client wall time of one HTTP
     request (new connection, urllib, body read completely — the server's JSON encoding and the transfer
     are included, the client's json.loads is not), p50/p99 (numpy linear interpolation; with 10 runs p99
     is about the slowest run):
       q1 avg by (hostname) (cpu_usage_user)                 query_range, whole window, step 60 s
       q2 topk(5, avg_over_time(cpu_usage_idle[1h]))         query_range, whole window, step 60 s (anchors' q4)
       q3 max(cpu_usage_user{region="eu-west-1"})            query_range, whole window, step 60 s
       q4 sum(rate(requests_total[5m]))                      query_range, whole window, step 60 s
       q5 /v1/query?query=cpu_usage_user{hostname="host_0"}&start=now-30d&end=now&tier=1h
          (on VictoriaMetrics its analogue avg_over_time(...[1h]) at step 1h over 30 days)
     window = first point .. last point, as the anchors do; q2 on VM with VM's rollup-window semantics;
  6. server-side split: the same selections fetched from the worker's /internal/v1/select (storage read +
     binary encoding), then the engine evaluation and the JSON encoding redone in this process on that data;
     with --profile, py-spy (--gil: only the thread holding the GIL) records the worker during a separate
     loop of each query (folded stacks under <root>/prof, summarised by category);
  7. with --workers 2: starts a second worker (36067) in the same group, waits for the rebalance and for
     both workers to answer for all series, and repeats 5–6 against worker 1 (and a check on worker 2).
Every process is started here and stopped here by PID. Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter as Tally
from pathlib import Path

import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from metricsflow.wire import encode_labels, encode_series, encode_write_request  # noqa: E402
from metricsflow.workload import INTERVAL_MS  # noqa: E402
from perf.lib import procs, promtext  # noqa: E402
from perf.lib import requests as rq  # noqa: E402
from perf.lib.send import Client, send_chains  # noqa: E402
from perf.lib.stack import PY, Stack, _stop_pid, python_version  # noqa: E402

QUERIES = [
    ("q1_avg_by_host", "avg by (hostname) (cpu_usage_user)"),
    ("q2_topk_avg_over_time_1h", "topk(5, avg_over_time(cpu_usage_idle[1h]))"),
    ("q3_max_region", 'max(cpu_usage_user{region="eu-west-1"})'),
    ("q4_sum_rate_counter", "sum(rate(requests_total[5m]))"),
]
Q5_SELECTOR = 'cpu_usage_user{hostname="host_0"}'
Q5_VM_ANALOGUE = 'avg_over_time(cpu_usage_user{hostname="host_0"}[1h])'
STEP_S = 60
COUNTER_LABELS = {"__name__": "requests_total", "job": "bench"}
VM_BIN = "/usr/bin/victoria-metrics"


# --------------------------------------------------------------------------- workload
def counter_requests(n_series: int, points: int, end_ms: int, protocol: str, seed: int = 7,
                     batch_samples: int = 10) -> tuple[list[rq.Item], int]:
    """`n_series` monotonically increasing counters (Poisson increments, no resets), same grid as the gauges.

    Items use window indices that interleave with the gauge items (group index = 10_000 + ...)."""
    rng = np.random.default_rng(seed)
    start_ms = end_ms - (points - 1) * INTERVAL_MS
    ts_all = start_ms + INTERVAL_MS * np.arange(points, dtype=np.int64)
    rates = rng.uniform(1, 100, n_series)  # requests per 10 s
    vals = np.cumsum(rng.poisson(rates, (points, n_series)), axis=0).astype(np.float64)  # (points, n)
    labels = [{**COUNTER_LABELS, "instance": f"i_{k}"} for k in range(n_series)]
    if protocol == "remote_write":
        lbytes = [rq.rw_label_bytes(lb) for lb in labels]
    else:
        lbytes = [encode_labels(lb) for lb in labels]
    items = []
    for w in range((points + batch_samples - 1) // batch_samples):
        i0, i1 = w * batch_samples, min(points, (w + 1) * batch_samples)
        ts, block = ts_all[i0:i1], np.ascontiguousarray(vals[i0:i1].T)
        if protocol == "remote_write":
            body = rq.encode_rw_request(lbytes, ts, block)
        else:
            body = encode_write_request([encode_series(lbytes[s], ts, block[s]) for s in range(n_series)])
        items.append(rq.Item(w, 0, body, n_series * (i1 - i0)))
    return items, n_series * points


def build_all(protocol: str, hosts: int, points: int, end_ms: int, counters: int):
    enc = rq.build(protocol, hosts, points, end_ms=end_ms)
    c_items, c_points = counter_requests(counters, points, end_ms, protocol)
    # the counters become one more chain (group) of the same time-ordered schedule
    g = enc.n_groups
    items = list(enc.items) + [rq.Item(it.window, g, it.body, it.points) for it in c_items]
    return enc, items, g + 1, enc.n_points + c_points


async def send(protocol: str, http_url: str, grpc: str, items, n_windows: int, n_groups: int):
    async with Client(protocol, http_url, grpc, 4) as c:
        return await send_chains(c, items, n_windows, n_groups, 4)


# --------------------------------------------------------------------------- HTTP timing
def http_get(url: str, timeout: float = 120.0) -> tuple[float, int, bytes]:
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    return (time.perf_counter() - t0) * 1000, status, body


def pct(values, q) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def shape(body: bytes) -> dict:
    try:
        j = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"error": body[:200].decode(errors="replace")}
    if j.get("status") != "success":
        return {"error": str(j)[:300]}
    res = j["data"]["result"]
    return {"series": len(res), "points": sum(len(s.get("values", [])) for s in res), "bytes": len(body)}


def range_url(base: str, q: str, start_s: float, end_s: float, extra: dict | None = None) -> str:
    p = {"query": q, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "step": str(STEP_S)}
    p.update(extra or {})
    return base + "/api/v1/query_range?" + urllib.parse.urlencode(p)


def q5_url(base: str) -> str:
    now = time.time()
    p = {"query": Q5_SELECTOR, "start": f"{now - 30 * 86400:.3f}", "end": f"{now:.3f}", "tier": "1h", "agg": "avg"}
    return base + "/v1/query?" + urllib.parse.urlencode(p)


def time_paired(urls: dict[str, str], runs: int, deadline: float, pids: dict[str, list[int]]) -> dict[str, dict]:
    """Per system (metricsflow, VM): a warm-up, then `runs` rounds of one request to each system in turn.

    This machine's speed swings up to 2x within minutes; alternating the systems request by request puts
    the swings on both, where timing one system after the other compared different moments (VM's q3 p50
    ranged 3.4-6.5 ms over five runs of the same command, 2026-11-27). Server CPU per query: utime+stime of
    the system's processes over its own requests only (10 ms ticks, summed over the runs).
    """
    out: dict[str, dict] = {}
    for name, url in urls.items():
        ms, status, body = http_get(url)
        out[name] = {"warmup_ms": round(ms, 1)}
        if status != 200:
            out[name]["error"] = f"HTTP {status}: {body[:300]!r}"
        else:
            out[name].update(shape(body))
    live = [n for n in urls if "error" not in out[n]]
    times: dict[str, list[float]] = {n: [] for n in live}
    cpu = dict.fromkeys(live, 0.0)
    for _ in range(runs):
        if time.time() > deadline:
            for n in live:
                out[n]["truncated"] = True
            break
        for n in list(live):
            c0 = sum(procs.proc_cpu(p) for p in pids.get(n, []))
            ms, status, body = http_get(urls[n])
            cpu[n] += sum(procs.proc_cpu(p) for p in pids.get(n, [])) - c0
            if status != 200:
                out[n]["error"] = f"HTTP {status}: {body[:300]!r}"
                live.remove(n)
                continue
            times[n].append(ms)
    for n, ts in times.items():
        if pids.get(n) and ts:
            out[n]["server_cpu_ms_per_query"] = round(cpu[n] / len(ts) * 1000, 1)
        out[n].update({"runs": len(ts), "p50_ms": pct(ts, 50), "p99_ms": pct(ts, 99),
                       "min_ms": round(min(ts), 1) if ts else None, "max_ms": round(max(ts), 1) if ts else None,
                       "all_ms": [round(t, 1) for t in ts]})
    return out


def run_suite(base: str, vm_base: str | None, start_s: float, end_s: float, runs: int, deadline: float,
              pids: list[int], vm_pids: list[int]) -> dict[str, dict]:
    """Every query on metricsflow (``base``) and, alternating with it, on VictoriaMetrics: {"mf": .., "vm": ..}."""
    res: dict[str, dict] = {"mf": {}, "vm": {}}
    now = time.time()
    q5_vm = {"query": Q5_VM_ANALOGUE, "start": f"{now - 30 * 86400:.3f}", "end": f"{now:.3f}", "step": "3600",
             "nocache": "1"}
    cases = [(name, q, range_url(base, q, start_s, end_s), vm_base and range_url(vm_base, q, start_s, end_s,
                                                                                  {"nocache": "1"}))
             for name, q in QUERIES]
    cases.append(("q5_30d_1h", None, q5_url(base), vm_base and vm_base + "/api/v1/query_range?" +
                  urllib.parse.urlencode(q5_vm)))
    for name, q, url, vm_url in cases:
        urls = {"mf": url, **({"vm": vm_url} if vm_url else {})}
        got = time_paired(urls, runs, deadline, {"mf": pids, "vm": vm_pids})
        res["mf"][name] = {"query": q or f"/v1/query {Q5_SELECTOR} now-30d..now tier=1h", **got["mf"]}
        print(f"    {name:28s} {fmt(res['mf'][name])}", flush=True)
        if "vm" in got:
            res["vm"][name] = {"query": q or Q5_VM_ANALOGUE + " step 1h over 30 d", **got["vm"]}
            print(f"    {'  VM beside it':28s} {fmt(res['vm'][name])}", flush=True)
    return res


def fmt(r: dict) -> str:
    if "error" in r:
        return "ERROR " + r["error"][:200]
    return (f"p50 {r['p50_ms']!s:>8} ms  p99 {r['p99_ms']!s:>8} ms  server CPU {r.get('server_cpu_ms_per_query')} ms"
            f"  (warm-up {r['warmup_ms']} ms; "
            f"{r.get('series')} series, {r.get('points')} points, {r.get('bytes')} B)")


# --------------------------------------------------------------------------- server-side split
def split_times(base: str, start_ms: int, end_ms: int, reps: int = 5) -> dict:
    """Per query: the worker's /internal/v1/select for the query's selections (storage read + binary
    encode + transfer), then engine evaluation and JSON encoding (as web/query_api._answer does it)
    redone here on the returned data. Medians of `reps`."""
    from metricsflow.promql import Engine, selections
    from metricsflow.promql.source import MemorySource
    from web.cluster import decode_series, encode_selections

    out = {}
    for name, q in QUERIES:
        sels = selections(q, start_ms, end_ms, STEP_S * 1000, 300_000)
        body = encode_selections("default", sels)
        t_sel, t_dec, t_eval, t_json, t_jsonb = [], [], [], [], []
        n_series = n_samples = 0
        for _ in range(reps):
            t0 = time.perf_counter()
            req = urllib.request.Request(base + "/internal/v1/select", data=body, method="POST")
            with urllib.request.urlopen(req, timeout=120) as r:
                data = r.read()
            t1 = time.perf_counter()
            series = decode_series(data)
            src = MemorySource()
            src.add_series(series)
            t2 = time.perf_counter()
            res = Engine(src, lookback_ms=300_000, timeout_s=120).range(q, start_ms, end_ms, STEP_S * 1000)
            t3 = time.perf_counter()
            orjson.dumps({"status": "success", "data": res.to_json_data()})
            t4 = time.perf_counter()
            res.to_json_bytes()
            t5 = time.perf_counter()
            t_sel.append(t1 - t0)
            t_dec.append(t2 - t1)
            t_eval.append(t3 - t2)
            t_json.append(t4 - t3)
            t_jsonb.append(t5 - t4)
            n_series, n_samples = len(series), int(sum(s.timestamps_ms.size for s in series))
        med = lambda xs: round(float(np.median(xs)) * 1000, 1)  # noqa: E731
        out[name] = {"select_ms": med(t_sel), "select_bytes": len(data), "series_read": n_series,
                     "samples_read": n_samples, "client_decode_into_memorysource_ms": med(t_dec),
                     "engine_eval_ms": med(t_eval), "json_to_json_data_orjson_ms": med(t_json),
                     "json_to_json_bytes_ms": med(t_jsonb)}
        print(f"    split {name:26s} {out[name]}", flush=True)
    return out


# --------------------------------------------------------------------------- profiling
CATEGORIES = [  # first match, walking the stack from the leaf up
    ("json_format", ("to_json_data", "_matrix_json", "format_values", "format_timestamps", "to_json_bytes",
                     "format_value", "matrix_series", "orjson")),
    ("engine_labels", ("promql/labels.py",)),
    ("engine_eval", ("promql/engine.py", "promql/aggregate.py", "promql/rangefuncs.py", "promql/functions.py",
                     "promql/binops.py", "promql/windows.py", "promql/values.py", "promql/kahan.py")),
    ("memorysource_add_select", ("promql/source.py",)),
    ("chunk_decode", ("metricsflow/codecs/",)),
    ("rollup_read", ("metricsflow/rollup.py", "read_rollup", "rollup_with_head")),
    ("rocksdb_scan", ("partition_store.py", "rocksdict", "faust/stores")),
    ("head_merge_clip", ("samples.py", "tables/head.py")),
    ("storage_read_other", ("tables/storage.py",)),
    ("index_select", ("tables/index.py",)),
    ("scatter_gather_wire", ("web/cluster.py",)),
    ("parse_plan", ("promql_parser", "prefetch.py", "astutil.py", "web/params.py")),
]
QUERY_FRAMES = ("range_query (", "raw_query (", "internal_select (", "instant_query (", "concurrent/futures/thread.py")


def summarise_folded(path: Path) -> dict:
    """py-spy raw (folded) stacks -> share of samples per category (most specific frame wins); stacks with
    no categorised frame count as 'query_http_other' inside a query handler, else 'background'
    (Faust/Kafka consumer, event loop)."""
    cats: Tally = Tally()
    funcs: Tally = Tally()
    self_: Tally = Tally()
    total = 0
    if not path.exists():
        return {"error": "no profile"}
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        try:
            n = int(n)
        except ValueError:
            continue
        frames = stack.split(";")
        total += n
        cat = None
        for fr in reversed(frames):
            cat = next((c for c, keys in CATEGORIES if any(k in fr for k in keys)), None)
            if cat:
                break
        if cat is None:
            cat = "query_http_other" if any(q in fr for fr in frames for q in QUERY_FRAMES) else "background"
        cats[cat] += n
        for fr in set(frames[1:]):
            funcs[fr] += n
        self_[frames[-1]] += n
    if not total:
        return {"samples": 0}
    return {"samples": total,
            "by_category_pct": {k: round(100 * v / total, 1) for k, v in cats.most_common()},
            "top_inclusive_pct": [(k, round(100 * v / total, 1)) for k, v in funcs.most_common(40)],
            "top_self_pct": [(k, round(100 * v / total, 1)) for k, v in self_.most_common(20)]}


def profile_queries(pid: int, base: str, start_s: float, end_s: float, outdir: Path, tag: str,
                    seconds: float = 12.0) -> dict:
    spy = Path(PY).parent / "py-spy"
    outdir.mkdir(parents=True, exist_ok=True)
    res = {}
    urls = [(n, range_url(base, q, start_s, end_s)) for n, q in QUERIES] + [("q5_30d_1h", q5_url(base))]
    for name, url in urls:
        folded = outdir / f"{tag}_{name}.folded.txt"
        p = subprocess.Popen([str(spy), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
                              "--format", "raw", "--gil", "--nonblocking", "-o", str(folded)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            t_end = time.time() + seconds - 1.5
            n = 0
            while time.time() < t_end:
                http_get(url)
                n += 1
            p.wait(timeout=seconds + 30)
        finally:
            if p.poll() is None:
                _stop_pid(p.pid)
        res[name] = {"queries_during_profile": n, **summarise_folded(folded), "folded": str(folded)}
        print(f"    profile {name}: {res[name].get('by_category_pct')}", flush=True)
    return res


# --------------------------------------------------------------------------- metricsflow helpers
def worker_counters(url: str) -> dict[str, float]:
    """Counters from the worker's /metrics (scraped patiently: its loop stalls while it ingests)."""
    s = promtext.scrape_patiently(url + "/metrics", timeout=30, pause_s=1.0)
    return {"consumed": promtext.total(s, "mf_worker_points_consumed_total"),
            "head_points": promtext.total(s, "mf_worker_head_points"),
            "refused": promtext.total(s, "mf_worker_points_refused_total"),
            "seal_backlog": promtext.total(s, "mf_worker_seal_backlog_blocks")}


def wait_sealed(urls: list[str], max_s: float) -> dict:
    """Wait until no worker has blocks waiting to be sealed (``mf_worker_seal_backlog_blocks``), at most max_s.

    A fresh load leaves every series' finished blocks to seal; while points arrive, at the seal budget's
    pace (MF_SEAL_SHARE). A dashboard mostly runs without such a backlog."""
    t0 = time.perf_counter()

    def backlog() -> float:
        return sum(worker_counters(u)["seal_backlog"] for u in urls)

    first = left = backlog()
    while left > 0 and time.perf_counter() - t0 < max_s:
        time.sleep(2.0)
        left = backlog()
    return {"seal_backlog_blocks_before": first, "seal_backlog_blocks_at_queries": left,
            "seal_wait_s": round(time.perf_counter() - t0, 1)}


def instant_value(base: str, q: str, t_s: float) -> float | None:
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": q, "time": f"{t_s:.3f}"})
    try:
        _, status, body = http_get(url, timeout=120)
        j = orjson.loads(body)
        return float(j["data"]["result"][0]["value"][1]) if status == 200 and j["data"]["result"] else None
    except Exception:
        return None


def count_samples(base: str, end_s: float, hours: float) -> float | None:
    window = int(hours * 3600 + 30)
    q = " + ".join(f"sum(count_over_time({m}[{window}s]))" for m in
                   [f"cpu_usage_{x}" for x in ("user", "system", "idle", "nice", "iowait", "irq", "softirq",
                                               "steal", "guest", "guest_nice")] + ["requests_total"])
    return instant_value(base, q, end_s)


# --------------------------------------------------------------------------- VictoriaMetrics
class VM:
    def __init__(self, root: Path, port: int) -> None:
        self.dir, self.port = root / "vm", port
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        log = open(self.dir.parent / "vm.log", "wb")
        self.proc = subprocess.Popen([VM_BIN, f"-httpListenAddr=127.0.0.1:{self.port}",
                                      f"-storageDataPath={self.dir}", "-retentionPeriod=100y",
                                      "-search.disableCache"], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        for _ in range(300):
            if self.proc.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited rc={self.proc.returncode}")
            try:
                if http_get(self.base + "/health", 2)[1] == 200:
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError("victoria-metrics not ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def vm_version() -> str:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "victoria-metrics"], capture_output=True, text=True)
    return r.stdout.strip()


# --------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=6.0, help="hours of data per series (6 h = 2,160 points)")
    ap.add_argument("--hosts", type=int, default=1000, help="hosts; 10 series each")
    ap.add_argument("--counters", type=int, default=100, help="requests_total counter series")
    ap.add_argument("--workers", type=int, choices=(1, 2), default=1, help="2: also measure with a second worker")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--no-vm", action="store_true")
    ap.add_argument("--profile", action="store_true", help="py-spy the worker during a separate loop per query")
    ap.add_argument("--profile-seconds", type=float, default=12.0)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--cut-interval", type=float, default=15.0)
    ap.add_argument("--root", default="/tmp/mfq")
    ap.add_argument("--kafka-port", type=int, default=39092)
    ap.add_argument("--collector-http", type=int, default=38080)
    ap.add_argument("--collector-grpc", type=int, default=35051)
    ap.add_argument("--worker-port", type=int, default=36066, help="worker i listens on this + i")
    ap.add_argument("--vm-port", type=int, default=38428)
    ap.add_argument("--max-minutes", type=float, default=60.0, help="hard bound of the whole run")
    ap.add_argument("--seal-wait", type=float, default=0.0,
                    help="wait up to this many seconds for the seal backlog to drain before timing (0: no wait; "
                         "at the default seal share a 6 h load takes ~17 min)")
    ap.add_argument("--out", default=None, help="JSON result file (default <root>/bench_queries.json)")
    a = ap.parse_args()

    t_begin = time.time()
    deadline = t_begin + a.max_minutes * 60
    root = Path(a.root)
    points = int(round(a.hours * 3600 / (INTERVAL_MS / 1000)))
    end_ms = (int(time.time() * 1000) - 20_000) // INTERVAL_MS * INTERVAL_MS
    start_ms = end_ms - (points - 1) * INTERVAL_MS
    start_s, end_s = start_ms / 1000, end_ms / 1000
    print(f"[bench_queries] {a.hosts * 10:,} gauge series + {a.counters} counters x {points} points "
          f"({a.hours} h), window {start_s:.0f}..{end_s:.0f}", flush=True)
    t0 = time.perf_counter()
    enc, items, n_groups, n_points = build_all("grpc", a.hosts, points, end_ms, a.counters)
    print(f"[bench_queries] encoded {n_points:,} points in {time.perf_counter() - t0:.1f} s", flush=True)

    result: dict = {
        "bench": "queries", "hours": a.hours, "points_per_series": points, "gauge_series": enc.n_series,
        "counter_series": a.counters, "points": n_points, "window": [start_s, end_s], "step_s": STEP_S,
        "runs": a.runs, "cmd": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"nproc": os.cpu_count(), "kernel": os.uname().release, "python": python_version(),
                    "loadavg_start": os.getloadavg()},
        "config": {"partitions": a.partitions, "cut_interval_s": a.cut_interval},
        "metricsflow": {}, "vm": {},
    }
    stack = Stack(root=root / "mf", kafka_port=a.kafka_port, collector_http_base=a.collector_http,
                  collector_grpc_base=a.collector_grpc, worker_web_base=a.worker_port, partitions=a.partitions,
                  cut_interval_s=a.cut_interval, standby_replicas=0, app_id="mfq-bench", topic_prefix="mfq.")
    vm = VM(root, a.vm_port)
    profilers_dir = root / "prof"
    try:
        # ---- VictoriaMetrics, loaded first and queried beside each metricsflow phase --------------
        vm_base: str | None = None
        vm_pids: list[int] = []
        if not a.no_vm:
            print("[bench_queries] VictoriaMetrics: encoding remote_write ...", flush=True)
            venc, vitems, vgroups, _ = build_all("remote_write", a.hosts, points, end_ms, a.counters)
            vm.start()
            t0 = time.perf_counter()
            vst = asyncio.run(send("remote_write", vm.base, "", vitems, venc.n_windows, vgroups))
            vwall = time.perf_counter() - t0
            del vitems
            http_get(vm.base + "/internal/force_flush")
            procs.wait_idle([vm.proc.pid], max_wait=120, window=3.0, thresh=0.03)
            vcount = count_samples(vm.base, end_s, a.hours)
            result["vm"] = {"version": vm_version(), "points_acked": vst.accepted, "errors": vst.errors,
                            "send_s": round(vwall, 1), "samples_counted_by_query": vcount}
            print(f"[bench_queries] VM loaded: {result['vm']}", flush=True)
            vm_base, vm_pids = vm.base, [vm.proc.pid]

        # ---- metricsflow, one worker ---------------------------------------------------------
        stack.start_kafka()
        coll = stack.start_collector(0)
        w1 = stack.start_worker(0)
        print(f"[bench_queries] stack up: {stack.pids()}", flush=True)
        c0 = worker_counters(w1.url)
        t0 = time.perf_counter()
        st = asyncio.run(send("grpc", coll.url, coll.grpc, items, enc.n_windows, n_groups))
        wall = time.perf_counter() - t0
        print(f"[bench_queries] sent {st.accepted:,}/{st.points:,} in {wall:.1f} s "
              f"({st.accepted / wall:,.0f} pts/s), errors {st.errors} {st.err_samples}", flush=True)
        while True:
            cw = worker_counters(w1.url)
            if cw["consumed"] - c0["consumed"] >= st.accepted or time.time() > deadline:
                break
            time.sleep(1.0)
        t_caught = time.perf_counter() - t0
        print(f"[bench_queries] worker consumed {cw['consumed'] - c0['consumed']:,.0f} after {t_caught:.1f} s",
              flush=True)
        settle = procs.wait_idle([coll.pid, w1.pid], max_wait=a.cut_interval * 4 + 120, window=3.0, thresh=0.1,
                                 extra=lambda: worker_counters(w1.url)["head_points"] == 0)
        del items
        result["load"] = {"points_acked": st.accepted, "errors": st.errors, "send_s": round(wall, 1),
                          "points_per_s_send": round(st.accepted / wall), "caught_up_s": round(t_caught, 1),
                          "settle_s": round(settle, 1),
                          "worker_refused": worker_counters(w1.url)["refused"] - c0["refused"]}
        counted = count_samples(w1.url, end_s, a.hours)
        result["load"]["samples_counted_by_query"] = counted
        print(f"[bench_queries] load {result['load']}", flush=True)

        print("[bench_queries] metricsflow, 1 worker:", flush=True)
        sealed1 = wait_sealed([w1.url], a.seal_wait)
        print(f"[bench_queries] seals: {sealed1}", flush=True)
        result["loadavg_before_mf1"] = os.getloadavg()
        suite1 = run_suite(w1.url, vm_base, start_s, end_s, a.runs, deadline, [w1.pid], vm_pids)
        mf1 = {"seals": sealed1, "queries": suite1["mf"]}
        if vm_base:
            result["vm"]["queries"] = suite1["vm"]
        mf1["split"] = split_times(w1.url, start_ms, end_ms)
        if a.profile:
            mf1["profile"] = profile_queries(w1.pid, w1.url, start_s, end_s, profilers_dir, "w1of1",
                                             a.profile_seconds)
        result["metricsflow"]["1"] = mf1

        # ---- metricsflow, two workers ----------------------------------------------------------
        if a.workers == 2 and time.time() < deadline:
            w2 = stack.start_worker(1, wait_ready=False)
            t_rb = time.perf_counter()
            stack.wait_worker_ready(w2, timeout=300)
            stack.wait_worker_ready(w1, timeout=300)
            # both must answer for every series (scatter-gather across the new assignment)
            want_series = a.hosts * 10 + a.counters
            ok = False
            while time.perf_counter() - t_rb < 300:
                n1 = instant_value(w1.url, "count(cpu_usage_user) + count(requests_total)", end_s)
                n2 = instant_value(w2.url, "count(cpu_usage_user) + count(requests_total)", end_s)
                own1 = orjson.loads(http_get(w1.url + "/readyz")[2]).get("series")
                own2 = orjson.loads(http_get(w2.url + "/readyz")[2]).get("series")
                if (n1 == n2 == a.hosts + a.counters and own1 and own2 and own1 < want_series
                        and own2 < want_series):
                    ok = True
                    break
                time.sleep(2.0)
            result["rebalance"] = {"ok": ok, "s": round(time.perf_counter() - t_rb, 1), "w1_series": own1,
                                   "w2_series": own2, "count_w1": n1, "count_w2": n2,
                                   "samples_counted_w1": count_samples(w1.url, end_s, a.hours),
                                   "samples_counted_w2": count_samples(w2.url, end_s, a.hours)}
            print(f"[bench_queries] rebalance: {result['rebalance']}", flush=True)
            print("[bench_queries] metricsflow, 2 workers (queries to worker 1):", flush=True)
            sealed2 = wait_sealed([w1.url, w2.url], a.seal_wait)
            print(f"[bench_queries] seals: {sealed2}", flush=True)
            result["loadavg_before_mf2"] = os.getloadavg()
            suite2 = run_suite(w1.url, vm_base, start_s, end_s, a.runs, deadline, [w1.pid, w2.pid], vm_pids)
            mf2 = {"seals": sealed2, "queries": suite2["mf"]}
            if vm_base:
                result["vm"]["queries_beside_2_workers"] = suite2["vm"]
            mf2["q5_on_worker2"] = time_paired({"mf": q5_url(w2.url)}, 3, deadline, {})["mf"]
            print(f"    q5 sent to worker 2: {fmt(mf2['q5_on_worker2'])}", flush=True)
            mf2["split"] = split_times(w1.url, start_ms, end_ms)
            if a.profile:
                mf2["profile"] = profile_queries(w1.pid, w1.url, start_s, end_s, profilers_dir, "w1of2",
                                                 a.profile_seconds)
            result["metricsflow"]["2"] = mf2
        stack.stop_all()
    finally:
        stack.stop_all()
        vm.stop()

    # ---- report -------------------------------------------------------------------------------
    result["wall_s"] = round(time.time() - t_begin, 1)
    names = [n for n, _ in QUERIES] + ["q5_30d_1h"]
    vm_runs = {"1": result["vm"].get("queries", {}), "2": result["vm"].get("queries_beside_2_workers", {})}
    print("\n| query | workers | metricsflow p50 / p99 ms | VM beside it p50 / p99 ms | ÷ VM p50 | ÷ VM p99 |"
          "\n|---|---|---|---|---|---|")
    for n in names:
        for w in ("1", "2"):
            r = result["metricsflow"].get(w, {}).get("queries", {}).get(n)
            if not r:
                continue
            rv = vm_runs[w].get(n)

            def cell(x: dict | None) -> str:
                if not x:
                    return "–"
                return "error" if "error" in x else f"{x['p50_ms']} / {x['p99_ms']}"

            def ratio(key: str, r: dict = r, rv: dict | None = rv) -> str:
                try:
                    return f"{r[key] / rv[key]:.1f}x"  # type: ignore[index]
                except (TypeError, KeyError, ZeroDivisionError):
                    return "–"
            print(f"| {n} | {w} | {cell(r)} | {cell(rv)} | {ratio('p50_ms')} | {ratio('p99_ms')} |")
    print("\n| query | server CPU ms/query: mf 1 worker | VM beside it | mf 2 workers (both) | VM beside it |"
          "\n|---|---|---|---|---|")
    for n in names:
        cells = []
        for w in ("1", "2"):
            cells.append(result["metricsflow"].get(w, {}).get("queries", {}).get(n, {}).get(
                "server_cpu_ms_per_query", "–"))
            cells.append(vm_runs[w].get(n, {}).get("server_cpu_ms_per_query", "–"))
        print(f"| {n} | " + " | ".join(str(c) for c in cells) + " |")
    out = Path(a.out) if a.out else root / "bench_queries.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nresults: {out}")
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
