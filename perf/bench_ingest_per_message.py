#!/usr/bin/env python3
"""What the worker's ``ingest_points`` costs per mf.points message, by series per message.

    python perf/bench_ingest_per_message.py [--series-per-message 20,250,2500]

No Kafka, no Faust: one WorkerStorage over real RocksDB (the tests' LocalStore), fed messages of
N series × 1 point (the real-time shape) from 20,000 series, a quarter of them first to warm the
newest-timestamp map; CPU time (``process_time``) of the rest. What a live worker spends per
message on top of this (Faust's event, the Kafka fetch) is measured by ``python -m
perf.lib.cutcost --live --message-points``. Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "perf")]

from bench_seal_and_query import _storage  # noqa: E402

from metricsflow.config import Settings  # noqa: E402
from metricsflow.pointbatch import encode_batches  # noqa: E402
from tests.test_storage_segments import T0, P  # noqa: E402

SERIES = 20_000


def per_message(n: int) -> dict:
    storage = _storage()
    sids = (np.arange(1, SERIES + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)).tolist()
    rounds = max(8, 1_000_000 // SERIES)
    per_message_max = Settings().max_points_per_message
    messages = []
    for r in range(rounds):
        ts = np.array([T0 + 10_000 * r], np.int64)
        for k in range(0, SERIES, n):
            messages += encode_batches([(s, ts, np.array([1.5])) for s in sids[k:k + n]], per_message_max, 1)
    warm = len(messages) // 4
    for offset, msg in enumerate(messages[:warm]):
        storage.ingest_points(P, offset, msg)
    started = time.process_time()
    for offset, msg in enumerate(messages[warm:], start=warm):
        storage.ingest_points(P, offset, msg)
    cpu = time.process_time() - started
    measured = len(messages) - warm
    return {"series_per_message": n, "messages": measured, "us_per_message": round(cpu / measured * 1e6, 1),
            "us_per_point": round(cpu / (measured * n) * 1e6, 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series-per-message", default="20,250,2500")
    a = ap.parse_args()
    rows = [per_message(int(n)) for n in a.series_per_message.split(",")]
    print(f"{'series/msg':>10} {'messages':>9} {'us/msg':>8} {'us/point':>9}")
    for r in rows:
        print(f"{r['series_per_message']:>10} {r['messages']:>9} {r['us_per_message']:>8} {r['us_per_point']:>9}")
    print(json.dumps({"bench": "ingest_per_message", "series": SERIES, "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
