"""Pushdown microbenchmark: partial size and CPU of plan → evaluate_partial → merge, in process.

    python perf/bench_pushdown.py [--hosts 1000] [--hours 2] [--shards 2] [--reps 3]

Builds the bench_queries data (``metricsflow.workload``: hosts x 10 cpu gauges, 10 s apart, plus
100 counters), splits the series at random over ``--shards`` in-memory owners (disjoint, like
partitions), and for each bench_queries query reports:
  raw bytes   what one owner shipped before (16 B per sample, /internal/v1/select), largest shard;
  partial     the size of its ``evaluate_partial`` answer, largest shard;
  partial ms  evaluate_partial CPU per shard (median of reps; storage reads not included);
  merge ms    merge of all partials;
  engine ms   one Engine.range over the union (what the coordinator evaluated before).
Prints a Markdown table; no network, no other process.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metricsflow.promql import Engine, MemorySource
from metricsflow.promql.pushdown import plan
from metricsflow.workload import INTERVAL_MS, RandomWalk, series_labels

QUERIES = [
    ("q1_avg_by_host", "avg by (hostname) (cpu_usage_user)"),
    ("q2_topk_avg_over_time_1h", "topk(5, avg_over_time(cpu_usage_idle[1h]))"),
    ("q3_max_region", 'max(cpu_usage_user{region="eu-west-1"})'),
    ("q4_sum_rate_counter", "sum(rate(requests_total[5m]))"),
]


def build(hosts: int, points: int, shards: int, end_ms: int) -> tuple[MemorySource, list[MemorySource]]:
    ts = end_ms - INTERVAL_MS * np.arange(points - 1, -1, -1, dtype=np.int64)
    labels = series_labels(hosts)
    vals = RandomWalk(len(labels)).rounds(points)  # (points, n)
    rng = np.random.default_rng(7)
    counters = np.cumsum(rng.poisson(rng.uniform(1, 100, 100), (points, 100)), axis=0).astype(np.float64)
    labels += [{"__name__": "requests_total", "job": "bench", "instance": f"i_{k}"} for k in range(100)]
    vals = np.hstack([vals, counters])
    full, parts = MemorySource(), [MemorySource() for _ in range(shards)]
    owner = rng.integers(0, shards, len(labels))  # series ids hash to partitions: a random, even split
    for i, lb in enumerate(labels):
        col = np.ascontiguousarray(vals[:, i])
        full.add(lb, ts, col)
        parts[owner[i]].add(lb, ts, col)
    return full, parts


def timed(fn, reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        t0 = time.process_time()
        out = fn()
        times.append((time.process_time() - t0) * 1000)
    return statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    points = int(a.hours * 3600_000 // INTERVAL_MS)
    end_ms = 1_800_000_000_000
    full, parts = build(a.hosts, points, a.shards, end_ms)
    start_ms = end_ms - (points - 1) * INTERVAL_MS
    step = 60_000
    print(f"{a.hosts * 10 + 100} series x {points} points, {a.shards} shards\n")
    print("| query | raw bytes / owner | partial bytes / owner | partial ms / owner | merge ms | engine ms (union) |")
    print("|---|---|---|---|---|---|")
    for name, q in QUERIES:
        p = plan(q)
        raw = max(
            sum(16 * s.timestamps_ms.size for m, lo, hi in p.selections(start_ms, end_ms, step)
                for s in src.select(m, lo, hi))
            for src in parts
        )
        part_ms, partials = [], []
        for src in parts:
            ms, data = timed(functools.partial(p.evaluate_partial, src, start_ms, end_ms, step), a.reps)
            part_ms.append(ms)
            partials.append(data)
        merge_ms, merged = timed(functools.partial(p.merge, partials, start_ms, end_ms, step), a.reps)
        engine_ms, want = timed(functools.partial(Engine(full).range, q, start_ms, end_ms, step), a.reps)
        assert [s.labels for s in merged.series] == [s.labels for s in want.series], name
        print(f"| {name} | {raw:,} | {max(map(len, partials)):,} | {max(part_ms):.0f} | {merge_ms:.0f} | "
              f"{engine_ms:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
