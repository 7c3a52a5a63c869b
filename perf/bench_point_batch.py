#!/usr/bin/env python3
"""PointBatch formats 1 and 2 in process: what a collector spends building one write's messages and
zstd-coding them, what a worker spends decoding them, and the bytes per point after zstd.

    python perf/bench_point_batch.py [--series 1000] [--points 10] [--partitions 8] [--level -1]

The write is the load's (metricsflow.workload: 2-decimal random-walk gauges, 10 s apart), laid out
as the collector lays out a write: one message per partition. Format 2 is what
``pointbatch.decimal_values`` finds for it. Best of 5 repeats; one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cramjam
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from metricsflow.pointbatch import DecimalValues, decimal_values, decode_batch, encode_columns  # noqa: E402
from metricsflow.workload import INTERVAL_MS, RandomWalk  # noqa: E402


def best_ns_per_point(work: Callable[[], object], points: int, loops: int = 50, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            work()
        times.append((time.perf_counter() - start) / loops)
    return min(times) / points * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--points", type=int, default=10, help="points per series in the write")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--level", type=int, default=-1, help="zstd level (the producers' default: -1)")
    a = ap.parse_args()

    values = RandomWalk(a.series).rounds(a.points).T.reshape(-1).copy()
    n = values.size
    sids = np.arange(a.series, dtype=np.uint64)
    lengths = np.full(a.series, a.points)
    ts = np.tile(1_700_000_000_000 + np.arange(a.points, dtype=np.int64) * INTERVAL_MS, a.series)
    per_part = a.series // a.partitions

    def build(column: np.ndarray | DecimalValues) -> list[bytes]:
        out: list[bytes] = []
        for p in range(a.partitions):
            s0, p0 = p * per_part, p * per_part * a.points
            out += encode_columns(sids[s0:s0 + per_part], lengths[s0:s0 + per_part], ts[p0:p0 + per_part * a.points],
                                  column[p0:p0 + per_part * a.points], 1 << 30, 0)
        return out

    rows = {}
    for fmt in (1, 2):
        def write(fmt: int = fmt) -> list[bytes]:
            return build(values if fmt == 1 else decimal_values(values))

        messages = write()
        coded = [bytes(cramjam.zstd.compress(m, level=a.level)) for m in messages]
        decoded = np.concatenate([decode_batch(m).values for m in messages])
        assert np.array_equal(decoded.view(np.uint64), values.view(np.uint64))
        rows[fmt] = {
            "build_ns": best_ns_per_point(write, n),
            "zstd_ns": best_ns_per_point(lambda ms=messages: [cramjam.zstd.compress(m, level=a.level) for m in ms], n),
            "unzstd_ns": best_ns_per_point(lambda cs=coded: [cramjam.zstd.decompress(c) for c in cs], n),
            "decode_ns": best_ns_per_point(lambda ms=messages: [decode_batch(m) for m in ms], n),
            "bytes_per_point": sum(map(len, coded)) / n,
        }
    print(f"{n:,} points ({a.series} series x {a.points}) in {a.partitions} messages, zstd level {a.level}")
    print(f"{'format':<8}{'build':>8}{'zstd':>8}{'collector':>11}{'unzstd':>8}{'decode':>8}{'worker':>8}{'B/pt':>7}")
    for fmt, r in rows.items():
        print(f"{fmt:<8}{r['build_ns']:>8.1f}{r['zstd_ns']:>8.1f}{r['build_ns'] + r['zstd_ns']:>11.1f}"
              f"{r['unzstd_ns']:>8.1f}{r['decode_ns']:>8.1f}{r['unzstd_ns'] + r['decode_ns']:>8.1f}"
              f"{r['bytes_per_point']:>7.2f}")
    print("(ns per point; collector = build + zstd, worker = unzstd + decode)")
    print(json.dumps({"bench": "point_batch", "points": n, "partitions": a.partitions, "zstd_level": a.level,
                      "formats": {str(k): {m: round(v, 2) for m, v in r.items()} for k, r in rows.items()}}))


if __name__ == "__main__":
    main()
