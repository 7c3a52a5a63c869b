"""Client SDK hot path: per-call latency of recording while the collector is unreachable,
and the sender's batch-encoding cost.

* ``calls``: N calls of each helper on a ``Client`` pointed at a closed port (its
  sender keeps failing and backing off; the buffer fills, then drops), timing every
  call: p50/p99/p99.9/max µs and the total. The max includes OS preemption.
* ``encode``: ``BatchEncoder.encode`` of a full 5,000-point batch over S series.

    python perf/bench_client.py [--calls 100000] [--series 100]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metricsflow.client import Client, ClientConfig, MetricKind
from metricsflow.client._core import BatchEncoder, Recorder, series_key


def time_calls(kind: str, n: int, series: int) -> dict[str, float]:
    client = Client("127.0.0.1:9", max_buffered_points=50_000, flush_interval_s=0.2)
    record = {"gauge": client.gauge, "counter": client.counter, "distribution": client.distribution}[kind]
    hosts = [f"h{i}" for i in range(series)]
    durations = np.empty(n)
    clock = time.perf_counter
    cpu0 = time.thread_time()
    started = clock()
    for i in range(n):
        t0 = clock()
        record("bench_metric", 1.0, host=hosts[i % series])
        durations[i] = clock() - t0
    total = clock() - started
    cpu = time.thread_time() - cpu0
    stats = client.stats
    close_started = clock()
    client.close(0.5)
    p50, p99, p999 = np.percentile(durations, [50, 99, 99.9]) * 1e6
    return {"calls": n, "total_s": round(total, 3), "cpu_us_per_call": round(cpu / n * 1e6, 2),
            "p50_us": round(p50, 2), "p99_us": round(p99, 2), "p999_us": round(p999, 1),
            "max_ms": round(durations.max() * 1e3, 2), "dropped": stats.dropped,
            "close_s": round(clock() - close_started, 3)}


def time_encode(series: int, repeat: int = 20) -> dict[str, float]:
    cfg = ClientConfig(batch_points=5000)
    recorder, encoder = Recorder(cfg), BatchEncoder(cfg)
    keys = [series_key("bench_metric", MetricKind.GAUGE, {"host": f"h{i}", "dc": "x"}) for i in range(series)]
    best = float("inf")
    size = 0
    for _ in range(repeat):
        for i in range(5000):
            recorder.add(keys[i % series], float(i), 1_764_150_000_000 + i)
        batch = recorder.take(partial=True)
        assert batch is not None
        t0 = time.perf_counter()
        body = encoder.encode(batch)
        best = min(best, time.perf_counter() - t0)
        size = len(body)
    return {"points": 5000, "series": series, "encode_ms": round(best * 1e3, 3),
            "points_per_s": round(5000 / best), "bytes": size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--series", type=int, default=100)
    args = ap.parse_args()
    result: dict[str, object] = {"bench": "client"}
    print(f"{'helper':<14}{'total s':>9}{'cpu µs':>8}{'p50 µs':>8}{'p99 µs':>8}{'p99.9 µs':>10}{'max ms':>8}"
          f"{'dropped':>9}{'close s':>8}")
    for kind in ("gauge", "counter", "distribution"):
        r = time_calls(kind, args.calls, args.series)
        result[kind] = r
        print(f"{kind:<14}{r['total_s']:>9}{r['cpu_us_per_call']:>8}{r['p50_us']:>8}{r['p99_us']:>8}"
              f"{r['p999_us']:>10}{r['max_ms']:>8}{r['dropped']:>9}{r['close_s']:>8}")
    enc = time_encode(args.series)
    result["encode"] = enc
    print(f"encode 5,000 points / {enc['series']} series: {enc['encode_ms']} ms "
          f"({enc['points_per_s']:,} points/s, {enc['bytes']:,} bytes)")
    result.update({"cpus": os.cpu_count(), "loadavg_1m": os.getloadavg()[0], "python": platform.python_version()})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
