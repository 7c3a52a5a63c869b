#!/usr/bin/env python3
"""Small queries through real worker web servers: this tree, or two trees side by side (A/B).

    python perf/bench_query_servers.py [--base /path/to/other/checkout] [--workers 1|2]
                                       [--rounds 3] [--requests 200] [--port 46100]

No Kafka, no Faust: each server process is one WorkerStorage over real RocksDB (the tests'
LocalStore) holding the data of perf/bench_query_loop_ab.py (1,000 ``cpu_usage_user`` series in
10 regions and 100 ``requests_total`` counters, 2,160 points each at 10 s, 8 partitions,
sealed), served by the worker's own aiohttp app on 127.0.0.1 and on the event loop the tree's
worker uses. With ``--workers 2`` each tree runs two processes of 4 partitions each, each the
other's peer, so queries take the pushdown path. This process is the client (urllib, a new
connection per request, as perf/bench_queries.py): ``--requests`` requests per query per batch
to each tree in turn, ``--rounds`` times:

  q3  max(cpu_usage_user{region="r3"})     query_range over the 6 h, step 60 s
  q4  sum(rate(requests_total[5m]))         query_range over the 6 h, step 60 s
  q5  /v1/query of one series, 30 days from the 1h tier

Reports per batch the p50 latency and the servers' CPU ms per request (utime+stime of every
server process of the tree, from /proc), and their medians over the rounds. ``--base`` needs
perf/bench_query_loop_ab.py in that tree (any checkout from 2026-11-27 on). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "perf"))

from lib.procs import proc_cpu  # noqa: E402

QUERIES = {"q3": 'max(cpu_usage_user{region="r3"})', "q4": "sum(rate(requests_total[5m]))"}
Q5_SELECTOR = 'cpu_usage_user{hostname="host_3"}'
READY_TIMEOUT_S = 300.0


def serve(tree: str, port: int, peer: int, partitions: range, ready: str) -> None:
    """A server process: the tree's storage, web app and event loop (runs until killed)."""
    sys.path[:0] = [tree, str(Path(tree) / "perf")]
    from aiohttp import web
    from bench_query_loop_ab import _load

    from metricsflow import worker_main
    from metricsflow.heap import keep_freed_memory
    from web.cluster import Cluster
    from web.server import build_web_app

    async def main() -> None:
        storage, start, stop = await _load()
        storage._active = lambda: set(partitions)
        peers = {f"http://127.0.0.1:{peer}"} if peer else set()
        cluster = Cluster(storage, f"http://127.0.0.1:{port}", lambda: peers)
        runner = web.AppRunner(build_web_app(storage, lambda: True, cluster))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        Path(ready).write_text(f"{start} {stop}")
        await asyncio.Event().wait()

    keep_freed_memory()  # as the worker does
    new_loop = getattr(worker_main, "new_event_loop", asyncio.new_event_loop)
    loop = new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main())


def _urls(base: str, start_ms: int, stop_ms: int) -> dict[str, str]:
    urls = {name: base + "/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": q, "start": start_ms / 1000, "end": stop_ms / 1000, "step": "60"}) for name, q in QUERIES.items()}
    urls["q5"] = base + "/v1/query?" + urllib.parse.urlencode(
        {"query": Q5_SELECTOR, "start": stop_ms / 1000 - 30 * 86400, "end": stop_ms / 1000, "tier": "1h"})
    return urls


def _batch(url: str, requests: int, pids: list[int]) -> tuple[float, float]:
    """p50 ms and the servers' CPU ms per request."""
    lat = []
    cpu0 = sum(proc_cpu(p) for p in pids)
    for _ in range(requests):
        t = time.perf_counter()
        with urllib.request.urlopen(url) as r:
            body = r.read()
            if r.status != 200 or b'"success"' not in body:
                raise RuntimeError(f"{url}: {r.status} {body[:200]!r}")
        lat.append((time.perf_counter() - t) * 1000)
    cpu = (sum(proc_cpu(p) for p in pids) - cpu0) / requests * 1000
    return round(statistics.median(lat), 2), round(cpu, 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default=None, help="another checkout to compare with (A = base, B = this tree)")
    ap.add_argument("--workers", type=int, choices=(1, 2), default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--port", type=int, default=46100, help="servers listen on this and the next three ports")
    ap.add_argument("--serve", nargs=5, metavar=("TREE", "PORT", "PEER", "FIRST-LAST", "READY"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        tree, port, peer, parts, ready = a.serve
        lo, hi = (int(x) for x in parts.split("-"))
        serve(tree, int(port), int(peer), range(lo, hi + 1), ready)
        return 0
    trees = {"base": a.base, "this": str(REPO)} if a.base else {"this": str(REPO)}
    procs: dict[str, list[subprocess.Popen]] = {}
    urls: dict[str, dict[str, str]] = {}
    tmp = Path(f"/tmp/mf-query-servers-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    port = a.port
    try:
        for name, tree in trees.items():
            ports = [port, port + 1] if a.workers == 2 else [port]
            port += 2
            shares = ["0-3", "4-7"] if a.workers == 2 else ["0-7"]
            readies = [tmp / f"{name}-{p}" for p in ports]
            procs[name] = [subprocess.Popen(
                [sys.executable, __file__, "--serve", tree, str(p), str(ports[1 - i] if a.workers == 2 else 0),
                 share, str(ready)]) for i, (p, share, ready) in enumerate(zip(ports, shares, readies, strict=True))]
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not all(r.exists() for r in readies):
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs[name]):
                    raise RuntimeError(f"servers of {name} did not start")
                time.sleep(0.2)
            start, stop = (int(x) for x in readies[0].read_text().split())
            urls[name] = _urls(f"http://127.0.0.1:{ports[0]}", start, stop)
            print(f"[bench_query_servers] {name}: {tree}, {a.workers} worker(s) ready", flush=True)
        res: dict[str, dict[str, list[tuple[float, float]]]] = {n: {q: [] for q in urls[n]} for n in trees}
        for r in range(a.rounds):
            for name in trees:
                pids = [p.pid for p in procs[name]]
                for q, url in urls[name].items():
                    res[name][q].append(_batch(url, a.requests, pids))
                line = "  ".join(f"{q} {p50:6.2f} ms / {cpu:5.2f} CPU-ms" for q, (p50, cpu) in
                                 ((q, v[-1]) for q, v in res[name].items()))
                print(f"  round {r + 1} {name:5s} {line}", flush=True)
    finally:
        for ps in procs.values():
            for p in ps:
                p.kill()
                p.wait()
    summary = {name: {q: {"p50_ms": statistics.median(x[0] for x in v),
                          "server_cpu_ms": statistics.median(x[1] for x in v), "batches": v}
                      for q, v in qs.items()} for name, qs in res.items()}
    print("median over the rounds: p50 ms / server CPU ms per request")
    for name, qs in summary.items():
        print(f"  {name:5s} " + "  ".join(f"{q} {s['p50_ms']:6.2f} / {s['server_cpu_ms']:5.2f}" for q, s in qs.items()))
    print(json.dumps({"bench": "query_servers", "workers": a.workers, "rounds": a.rounds, "requests": a.requests,
                      "trees": trees, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
