#!/usr/bin/env python3
"""In process: what one seal costs, and what a seal backlog does to a query beside it.

    python perf/bench_seal_and_query.py [--series 2000] [--query-series 3000] [--rounds 2]

No Kafka, no Faust: one WorkerStorage over real RocksDB (the tests' LocalStore, no changelog).

- seal: --series series × one 2 h block of 10 s points (720), written in three cuts, then
  sealed in one cut with an unlimited seal budget: CPU ms per (series, block).
- query: --query-series series × 3 h (1,080 points) in segments, a seal backlog sealed
  without budget, and ``max(cpu_usage_user{region="r3"})`` over the 3 h at a 60 s step
  every 30 ms through the worker's own path (``local_source``, evaluation and JSON on a
  pool thread): p50/max latency idle, then during the seals with the query counted as in
  flight (``first``, as the worker's HTTP middleware does) and without (``plain``),
  alternating ``--rounds`` times.
Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from metricsflow import series_batch  # noqa: E402
from metricsflow.config import Settings  # noqa: E402
from metricsflow.pb import metricsflow_pb2 as pb  # noqa: E402
from metricsflow.promql import Engine  # noqa: E402
from metricsflow.promql.source import selections  # noqa: E402
from metricsflow.series_id import series_id  # noqa: E402
from tables.storage import SealBudget, StorageTables, WorkerStorage  # noqa: E402
from tests.test_storage_segments import BLOCK_MS, HOUR_MS, T0, Feed, Flush, LocalStore, P  # noqa: E402
from web.cluster import local_source  # noqa: E402
from web.query_api import _without_gc  # noqa: E402


def _storage() -> WorkerStorage:
    tmp = Path(tempfile.mkdtemp(prefix="mf-seal-"))
    tables = StorageTables(**{n: LocalStore(tmp, n) for n in ("cutmarks", "chunks", "segments", "series")},
                           rollups={"1m": LocalStore(tmp, "rollup_1m"), "1h": LocalStore(tmp, "rollup_1h")})
    storage = WorkerStorage(Settings(block_ms=BLOCK_MS, out_of_order_window_ms=HOUR_MS), tables, lambda: {P},
                            Flush())
    storage._seal_budget = SealBudget(share=1.0, burst_s=3600.0)
    return storage


async def seal_cost(n: int) -> dict:
    storage, feed = _storage(), Feed()
    rng = np.random.default_rng(1)
    ts = T0 + np.arange(0, BLOCK_MS, 10_000, dtype=np.int64)
    for part in np.array_split(np.arange(ts.size), 3):
        for sid in range(1, n + 1):
            feed.send(storage, sid, ts[part], np.round(50 + rng.normal(0, 1, part.size).cumsum(), 2))
        await storage.cut(P)
    feed.send(storage, 1, [T0 + BLOCK_MS + HOUR_MS], [1.0])  # every block of the cuts may seal now
    wall, cpu = time.perf_counter(), time.process_time()
    stats = await storage.cut(P)
    cpu = time.process_time() - cpu
    return {"series": n, "sealed": stats.sealed, "cpu_ms_per_block": round(cpu / max(1, stats.sealed) * 1000, 3),
            "wall_s": round(time.perf_counter() - wall, 2)}


QUERY = 'max(cpu_usage_user{region="r3"})'


async def _one_query(storage: WorkerStorage, pool: ThreadPoolExecutor, counted: bool, start: int,
                     stop: int) -> float:
    """One query the way the worker answers it; ``counted``: in flight, as the HTTP middleware marks it."""
    t0 = time.perf_counter()
    with storage.queries.running() if counted else contextlib.nullcontext():
        engine = Engine(local_source(storage, "default", selections(QUERY, start, stop, 60_000, 300_000)),
                        lookback_ms=300_000)
        loop = asyncio.get_running_loop()
        res = await loop.run_in_executor(pool, _without_gc, functools.partial(engine.range, QUERY, start, stop,
                                                                                60_000))
        await loop.run_in_executor(pool, res.to_json_bytes)
    return (time.perf_counter() - t0) * 1000


async def _round(n: int, seed: int, mode: str, pool: ThreadPoolExecutor, out: dict[str, list[float]]) -> None:
    storage, feed = _storage(), Feed()
    rng = np.random.default_rng(seed)
    end = T0 + BLOCK_MS + HOUR_MS - 10_000
    ts = np.arange(end - 1079 * 10_000, end + 1, 10_000, dtype=np.int64)
    sids, infos = [], []
    for h in range(n):
        labels = {"__name__": "cpu_usage_user", "hostname": f"host_{h}", "region": f"r{h % 10}"}
        sids.append(series_id("default", labels))
        infos.append(pb.SeriesInfo(tenant="default",
                                   labels=[pb.Label(name=k, value=v) for k, v in sorted(labels.items())]))
    for key, value in series_batch.encode_batches(sids, infos):
        storage.ingest_series(P, key, value)
    for sid in sids:
        feed.send(storage, sid, ts, np.clip(50 + rng.normal(0, 1, ts.size).cumsum(), 0, 100))
    await storage.cut(P)  # segments only
    start, stop = int(ts[0]), int(ts[-1])
    if mode == "first":
        for _ in range(20):
            out["idle"].append(await _one_query(storage, pool, True, start, stop))
    feed.send(storage, 1, [stop + BLOCK_MS], [1.0])  # every block of the first cut may seal now
    sealing = asyncio.create_task(storage.cut(P))
    await asyncio.sleep(0.05)
    while not sealing.done() and len(out[mode]) < 60 * (seed + 1):
        out[mode].append(await _one_query(storage, pool, mode == "first", start, stop))
        await asyncio.sleep(0.03)
    await sealing


async def query_during_seals(n: int, rounds: int) -> dict:
    out: dict[str, list[float]] = {"idle": [], "first": [], "plain": []}
    pool = ThreadPoolExecutor(2)
    for r in range(rounds):
        for mode in ("first", "plain"):
            await _round(n, r, mode, pool, out)
    pool.shutdown()
    return {k: {"n": len(v), "p50_ms": round(statistics.median(v), 1), "max_ms": round(max(v), 1)}
            for k, v in out.items() if v}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--query-series", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    result = {"bench": "seal_and_query", "seal": asyncio.run(seal_cost(a.series)),
              "query_during_seals": asyncio.run(query_during_seals(a.query_series, a.rounds))}
    s = result["seal"]
    print(f"seal: {s['sealed']} blocks, {s['cpu_ms_per_block']} CPU ms per (series, block)")
    for mode, q in result["query_during_seals"].items():
        print(f"query {mode:5s}: n {q['n']:3d}  p50 {q['p50_ms']:6.1f} ms  max {q['max_ms']:6.1f} ms")
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
