#!/usr/bin/env python3
"""Scaling benchmark: 1, 2 and 4 worker processes in one consumer group, fed by 2 collectors.

    python perf/bench_scaling.py [--workers 1,2,4] [--collectors 2] [--hosts 300] [--points 720]

For each worker count: a fresh private stack (Kafka on 29192, collectors 28180+/25151+, workers
26166+, data under /tmp/mfperf/scaling), all workers ready (partitions assigned), then the same
pre-encoded TSBS-like workload (default 3,000 series x 720 points, 500 series x 10 samples per
request) sent with the anchors' chain scheduler over 4 connections split across the collectors
(group g -> collector g mod C). Measured until every worker consumed its share, cut its head into
chunks and went idle; CPU-s from /proc per process, idle baseline subtracted.
On a 2-vCPU machine the ideal is flat points per CPU-second, not more wall throughput.
Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perf.lib import procs, promtext  # noqa: E402
from perf.lib import requests as rq  # noqa: E402
from perf.lib.send import PROTOCOLS, Client, send_chains  # noqa: E402
from perf.lib.stack import Stack, add_env_argument, env_settings, git_state, python_version  # noqa: E402


def counters(urls: list[str]) -> dict[str, float]:
    tot = {"consumed": 0.0, "head_points": 0.0, "series": 0.0}
    per = []
    for u in urls:
        s = promtext.scrape(u + "/metrics")
        c = promtext.total(s, "mf_worker_points_consumed_total")
        tot["consumed"] += c
        tot["head_points"] += promtext.total(s, "mf_worker_head_points")
        tot["series"] += promtext.total(s, "mf_worker_series")
        per.append(c)
    tot["per_worker"] = per  # type: ignore[assignment]
    return tot


def run_one(n_workers: int, n_collectors: int, enc: rq.Encoded, a: argparse.Namespace) -> dict:
    stack = Stack(root=Path(a.root), kafka_port=a.kafka_port, collector_http_base=28180, collector_grpc_base=25151,
                  worker_web_base=26166, partitions=a.partitions, cut_interval_s=a.cut_interval,
                  standby_replicas=a.standby_replicas, app_id=f"mfscale-{n_workers}w", topic_prefix="mfscale.",
                  extra_env={"MF_LOG_LEVEL": a.log_level, **env_settings(a.env)})
    try:
        t_up = time.time()
        stack.start_kafka()
        colls = [stack.start_collector(i) for i in range(n_collectors)]
        workers = [stack.start_worker(i, wait_ready=False) for i in range(n_workers)]
        for w in workers:
            stack.wait_worker_ready(w, timeout=240)
        time.sleep(5)  # let a late rebalance settle, then check again
        for w in workers:
            stack.wait_worker_ready(w, timeout=240)
        startup = time.time() - t_up
        urls = [w.url for w in workers]
        pids = stack.pids()
        procs.wait_idle(pids.values(), max_wait=40, thresh=0.2)
        idle = procs.idle_rates(pids, 5.0)
        c0 = counters(urls)
        cpu0 = procs.cpu_of(pids)
        t0 = time.perf_counter()

        async def bulk():
            clients = [Client(a.protocol, c.url, c.grpc, max(1, a.concurrency // n_collectors)) for c in colls]
            for c in clients:
                await c.__aenter__()
            try:
                return await send_chains(clients, enc.items, enc.n_windows, enc.n_groups, a.lag)
            finally:
                for c in clients:
                    await c.__aexit__(None, None, None)
        st = asyncio.run(bulk())
        wall = time.perf_counter() - t0
        deadline = time.perf_counter() + 900
        while True:
            cw = counters(urls)
            if cw["consumed"] - c0["consumed"] >= st.accepted or time.perf_counter() > deadline:
                break
            time.sleep(0.2)
        t_caught = time.perf_counter() - t0
        cpu_caught = procs.cpu_of(pids)
        worker_pids = [w.pid for w in workers] + [c.pid for c in colls]
        settle = procs.wait_idle(worker_pids, max_wait=a.cut_interval * 4 + 60, window=3.0,
                                 thresh=0.05 * len(worker_pids) + sum(idle[k] for k in pids if k != "kafka"),
                                 extra=lambda: counters(urls)["head_points"] == 0)
        cpu_end = procs.cpu_of(pids)
        t_end = time.perf_counter() - t0
        n = st.accepted
        net = {k: max(1e-9, cpu_end[k] - cpu0[k] - idle[k] * t_end) for k in pids}
        net_c = {k: max(1e-9, cpu_caught[k] - cpu0[k] - idle[k] * t_caught) for k in pids}
        coll_cpu = sum(net[c.name] for c in colls)
        work_cpu = sum(net[w.name] for w in workers)
        per_worker = [c1 - c0_ for c1, c0_ in zip(cw["per_worker"], c0["per_worker"], strict=True)]
        return {
            "workers": n_workers, "collectors": n_collectors, "points": n, "errors": st.errors,
            "startup_s": round(startup, 1), "wall_s": round(wall, 2), "points_per_s_wall": round(n / wall),
            "catch_up_s": round(t_caught, 2), "points_per_s_sustained": round(n / t_caught),
            "settle_s": round(settle, 1),
            "points_consumed_per_worker": per_worker,
            "cpu_s_net": {k: round(v, 2) for k, v in net.items()},
            "cpu_s_net_at_catch_up": {k: round(v, 2) for k, v in net_c.items()},
            "points_per_cpu_s_collectors": round(n / coll_cpu),
            "points_per_cpu_s_workers": round(n / work_cpu),
            "points_per_cpu_s_kafka": round(n / net["kafka"]),
            "points_per_cpu_s_collectors_workers": round(n / (coll_cpu + work_cpu)),
            "points_per_cpu_s_all": round(n / sum(net.values())),
            "worker_rss": {w.name: procs.proc_mem(w.pid).get("VmRSS") for w in workers},
        }
    finally:
        stack.stop_all()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--collectors", type=int, default=2)
    ap.add_argument("--hosts", type=int, default=300)
    ap.add_argument("--points", type=int, default=720)
    ap.add_argument("--protocol", choices=PROTOCOLS, default="grpc")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--lag", type=int, default=4)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--cut-interval", type=float, default=15.0)
    ap.add_argument("--standby-replicas", type=int, default=0)
    ap.add_argument("--root", default="/tmp/mfperf/scaling")
    ap.add_argument("--kafka-port", type=int, default=29192)
    ap.add_argument("--out", default="/tmp/mfperf/results/scaling.json")
    ap.add_argument("--log-level", default="warning", help="of the collectors and workers (logs under --root)")
    add_env_argument(ap)
    a = ap.parse_args()
    rows = []
    for nw in [int(x) for x in a.workers.split(",")]:
        enc = rq.build(a.protocol, a.hosts, a.points)  # fresh timestamps for each run (data ends near now)
        print(f"[scaling] {nw} worker(s), {a.collectors} collector(s): {enc.n_points:,} points "
              f"(encode {enc.stats['encode_us_per_point']} µs/pt)", flush=True)
        r = run_one(nw, a.collectors, enc, a)
        r["encode"] = enc.stats
        rows.append(r)
        print(f"[scaling] {json.dumps(r)}", flush=True)
    hdr = ("workers", "pts/s wall", "pts/s sustained", "pts/CPU-s coll", "pts/CPU-s workers", "pts/CPU-s kafka",
           "pts/CPU-s coll+workers", "pts/CPU-s all", "points per worker")
    print(" | ".join(hdr))
    for r in rows:
        print(" | ".join(str(x) for x in (
            r["workers"], f"{r['points_per_s_wall']:,}", f"{r['points_per_s_sustained']:,}",
            f"{r['points_per_cpu_s_collectors']:,}", f"{r['points_per_cpu_s_workers']:,}",
            f"{r['points_per_cpu_s_kafka']:,}", f"{r['points_per_cpu_s_collectors_workers']:,}",
            f"{r['points_per_cpu_s_all']:,}", r["points_consumed_per_worker"])))
    out = {"bench": "scaling", "protocol": a.protocol, "hosts": a.hosts, "series": a.hosts * 10,
           "points_per_series": a.points, "collectors": a.collectors, "partitions": a.partitions,
           "cut_interval_s": a.cut_interval, "standby_replicas": a.standby_replicas,
           "machine": {"nproc": os.cpu_count(), "kernel": os.uname().release, "python": python_version()},
           "cmd": " ".join([Path(sys.executable).name, *sys.argv]), "runs": rows, "code": git_state()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
