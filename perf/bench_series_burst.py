#!/usr/bin/env python3
"""New-series burst: how long a worker takes to index N series that appear at once, and at what CPU cost.

    python perf/bench_series_burst.py [--hosts 1000] [--samples 10] [--profile]

A private stack (Kafka on 29292, collector 28280/25251, worker 26266, data under
/tmp/mfperf/burst); one window of the `metricsflow load` workload (hosts × 10 series,
--samples points each) for a tenant the worker has never seen, sent as 500-series gRPC
requests over 4 connections. Measured: the time until every request was acknowledged,
the time until the worker indexed every series and consumed every point (its /metrics
polled every 50 ms), the worker's CPU-seconds in between (utime+stime from /proc), and its
resident memory before and after (VmRSS; glibc keeps up to 64 MB of freed memory, so use
``--hosts`` of 10,000 or more for a per-series figure).
This is the start of perf/bench_e2e.py's steady phase on its own. --profile records the
worker with py-spy (raw folded stacks, summarised by perf/lib/folded.py).
Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perf.lib import procs, promtext  # noqa: E402
from perf.lib import requests as rq  # noqa: E402
from perf.lib.folded import summarise  # noqa: E402
from perf.lib.send import Client, SendStats  # noqa: E402
from perf.lib.stack import Stack, git_state, python_version, wait_for  # noqa: E402

PY_SPY = Path(sys.executable).with_name("py-spy")


def indexed(url: str) -> tuple[float, float]:
    s = promtext.scrape(url + "/metrics")
    return promtext.total(s, "mf_worker_series_indexed_total"), promtext.total(s, "mf_worker_points_consumed_total")


async def send(client: Client, items: list[rq.Item]) -> SendStats:
    stats = SendStats()
    async with client:
        await asyncio.gather(*(client.post(i.body, stats, i.points) for i in items))
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000, help="10 series per host (default 10,000 series)")
    ap.add_argument("--samples", type=int, default=10, help="points per series in the burst")
    ap.add_argument("--root", default="/tmp/mfperf/burst")
    ap.add_argument("--kafka-port", type=int, default=29292)
    ap.add_argument("--profile", action="store_true", help="py-spy the worker during the burst")
    a = ap.parse_args()

    enc = rq.build("grpc", a.hosts, a.samples, batch_samples=a.samples)
    stack = Stack(Path(a.root), kafka_port=a.kafka_port, collector_http_base=28280, collector_grpc_base=25251,
                  worker_web_base=26266, app_id="mfburst", topic_prefix="mfburst.")
    spy: subprocess.Popen | None = None
    folded = Path(a.root).parent / "burst_worker.txt"
    try:
        stack.start_kafka()
        collector = stack.start_collector()
        worker = stack.start_worker()
        print(f"[burst] stack up; sending {enc.n_series:,} new series × {a.samples} points", flush=True)
        if a.profile:
            spy = subprocess.Popen([str(PY_SPY), "record", "-p", str(worker.pid), "-o", str(folded), "-f", "raw",
                                    "-r", "200", "-d", "600", "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        rss0 = procs.proc_mem(worker.pid)["VmRSS"]
        cpu0 = procs.proc_cpu(worker.pid)
        t0 = time.perf_counter()
        stats = asyncio.run(send(Client("grpc", collector.url, collector.grpc, 4, tenant="burst"), enc.items))
        acked_s = time.perf_counter() - t0
        if stats.errors:
            raise RuntimeError(f"{stats.errors} requests failed: {stats.err_samples}")

        def done() -> bool:
            n_series, n_points = indexed(worker.url)
            return n_series >= enc.n_series and n_points >= stats.accepted
        wait_for(done, 600, "every series indexed and every point consumed", interval=0.05)
        done_s = time.perf_counter() - t0
        cpu_s = procs.proc_cpu(worker.pid) - cpu0
        rss1 = procs.proc_mem(worker.pid)["VmRSS"]
    finally:
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes what it has
            spy.wait(30)
        stack.stop_all()
    out = {"tag": "series_burst", "series": enc.n_series, "points": stats.accepted, "acked_s": round(acked_s, 2),
           "indexed_s": round(done_s, 2), "series_per_s": round(enc.n_series / done_s),
           "worker_cpu_s": round(cpu_s, 2), "worker_cpu_us_per_series": round(cpu_s / enc.n_series * 1e6),
           "worker_rss_before": rss0, "worker_rss_after": rss1,
           "worker_rss_bytes_per_series": round((rss1 - rss0) / enc.n_series),
           "machine": {"nproc": os.cpu_count(), "python": python_version()}, "code": git_state(),
           "cmd": "python " + " ".join(sys.argv)}
    print(f"{'series (new tenant)':<40}{enc.n_series:,} × {a.samples} points")
    print(f"{'all requests acknowledged after':<40}{acked_s:.2f} s")
    print(f"{'indexed + consumed after':<40}{done_s:.2f} s ({out['series_per_s']:,} series/s)")
    print(f"{'worker CPU':<40}{cpu_s:.2f} s ({out['worker_cpu_us_per_series']} µs per series)")
    print(f"{'worker RSS':<40}{rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MB "
          f"({out['worker_rss_bytes_per_series']:,} B per series)")
    if a.profile and folded.exists():
        print(summarise(str(folded), 25))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
