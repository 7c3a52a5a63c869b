#!/usr/bin/env python3
"""Small queries evaluated on the event loop against on the pool, interleaved in one server process.

    python perf/bench_query_loop_ab.py [--pairs 4] [--requests 50] [--port 45999]

No Kafka, no Faust: one WorkerStorage over real RocksDB (the tests' LocalStore, 8 partitions)
holding 1,000 ``cpu_usage_user`` series (10 regions) and 100 ``requests_total`` counters, 2,160
points each (6 h at 10 s, sealed), served by the worker's own aiohttp app on 127.0.0.1. A client
process sends ``--requests`` range queries (6 h, step 60 s) per batch for q3
``max(cpu_usage_user{region="r3"})`` and q4 ``sum(rate(requests_total[5m]))``; batches alternate
``web.query_api.INLINE_MAX_SAMPLES`` between -1 (everything on the pool) and its default (these
queries on the loop), ``--pairs`` times. Reports the server's CPU ms per request of each batch.
Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from bench_seal_and_query import _storage  # noqa: E402

import web.query_api as query_api  # noqa: E402
from metricsflow import series_batch  # noqa: E402
from metricsflow.heap import keep_freed_memory  # noqa: E402
from metricsflow.pb import metricsflow_pb2 as pb  # noqa: E402
from metricsflow.pointbatch import encode_batches  # noqa: E402
from metricsflow.series_id import series_id  # noqa: E402
from tests.test_storage_segments import BLOCK_MS, HOUR_MS, T0  # noqa: E402
from web.cluster import Cluster  # noqa: E402
from web.server import build_web_app  # noqa: E402

PARTITIONS = 8
QUERIES = {"q3": 'max(cpu_usage_user{region="r3"})', "q4": "sum(rate(requests_total[5m]))"}
CLIENT = """
import sys, urllib.parse, urllib.request
url = sys.argv[1] + "/api/v1/query_range?" + urllib.parse.urlencode(
    {"query": sys.argv[2], "start": sys.argv[3], "end": sys.argv[4], "step": "60"})
for _ in range(int(sys.argv[5])):
    with urllib.request.urlopen(url) as r:
        assert r.status == 200 and b'"success"' in r.read()
"""


async def _load() -> tuple[object, int, int]:
    storage = _storage()
    storage._active = lambda: set(range(PARTITIONS))
    rng = np.random.default_rng(0)
    end = T0 + 3 * BLOCK_MS + HOUR_MS
    ts = np.arange(end - 2159 * 10_000, end + 1, 10_000, dtype=np.int64)
    rows = [{"__name__": "cpu_usage_user", "hostname": f"host_{h}", "region": f"r{h % 10}"} for h in range(1000)]
    rows += [{"__name__": "requests_total", "instance": f"i_{h}", "job": "bench"} for h in range(100)]
    offset = 0
    for i, labels in enumerate(rows):
        sid = series_id("default", labels)
        p = sid % PARTITIONS
        info = pb.SeriesInfo(tenant="default", labels=[pb.Label(name=k, value=v) for k, v in sorted(labels.items())])
        for key, value in series_batch.encode_batches([sid], [info]):
            storage.ingest_series(p, key, value)
        vals = (np.clip(50 + rng.normal(0, 1, ts.size).cumsum(), 0, 100) if i < 1000
                else np.cumsum(rng.integers(0, 100, ts.size)).astype(np.float64))
        (msg,) = encode_batches([(sid, ts, vals)], 100_000, 1)
        storage.ingest_points(p, offset, msg)
        offset += 1
    for p in range(PARTITIONS):
        await storage.cut(p)
        (msg,) = encode_batches([(1, np.array([end + HOUR_MS + BLOCK_MS]), np.array([1.0]))], 100_000, 1)
        storage.ingest_points(p, offset, msg)  # every block of the load may seal now
        offset += 1
        await storage.cut(p)
        while await storage.maybe_seal(p):
            pass
    return storage, int(ts[0]), int(ts[-1])


async def run(pairs: int, requests: int, port: int) -> dict:
    storage, start, stop = await _load()
    cluster = Cluster(storage, "http://127.0.0.1:1", lambda: set())
    runner = web.AppRunner(build_web_app(storage, lambda: True, cluster))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    inline_default = query_api.INLINE_MAX_SAMPLES
    cpu_ms: dict[str, dict[str, list[float]]] = {q: {"pool": [], "loop": []} for q in QUERIES}
    try:
        for _ in range(pairs):
            for mode, limit in (("pool", -1), ("loop", inline_default)):
                query_api.INLINE_MAX_SAMPLES = limit
                for name, q in QUERIES.items():
                    c0 = time.process_time()
                    proc = await asyncio.create_subprocess_exec(
                        sys.executable, "-c", CLIENT, f"http://127.0.0.1:{port}", q, str(start / 1000),
                        str(stop / 1000), str(requests))
                    if await proc.wait():
                        raise RuntimeError(f"client failed on {name}")
                    cpu_ms[name][mode].append(round((time.process_time() - c0) / requests * 1000, 2))
    finally:
        query_api.INLINE_MAX_SAMPLES = inline_default
        await runner.cleanup()
        await cluster.close()
    return {name: {mode: {"batches_ms": v, "median_ms": round(statistics.median(v), 2)} for mode, v in modes.items()}
            for name, modes in cpu_ms.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--port", type=int, default=45999)
    a = ap.parse_args()
    keep_freed_memory()  # as the worker does
    res = asyncio.run(run(a.pairs, a.requests, a.port))
    print("server CPU ms per request, median of the batches (each batch's figure in the JSON):")
    for name, modes in res.items():
        print(f"  {name}  pool {modes['pool']['median_ms']:6.2f}   loop {modes['loop']['median_ms']:6.2f}")
    print(json.dumps({"bench": "query_loop_ab", "pairs": a.pairs, "requests": a.requests, **res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
