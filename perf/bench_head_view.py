#!/usr/bin/env python3
"""What sorting a head for its cut costs (``Head.view``): runs sorted by series against points sorted by key.

    python perf/bench_head_view.py [--points 930000] [--series 1250] [--repeat 5]

A cut first sorts the head of its partition by (series, time). The heads are built as the worker
builds them, one ``append`` per mf.points message, in two shapes:
  bulk       each message holds 62 series × 10 points (the M load over gRPC: 500 series × 10 samples
             per request, split over 8 partitions), a 15 s cut interval of it is ~930,000 points
  real-time  each message holds every series of the partition once (one point per run)
and are sorted both ways: by runs (``tables.head.sorted_by_runs``, what ``view`` tries first) and by the
three-key ``lexsort`` of the points (``view``'s exact path, and all it did before). CPU time
(``process_time``), best of ``--repeat``. Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tables.head as head_module  # noqa: E402
from tables.head import Head  # noqa: E402

T0 = 1_700_000_000_000


def build(shape: str, points: int, series: int, seed: int = 1) -> Head:
    rng = np.random.default_rng(seed)
    sids = rng.integers(1, 2**63, series, dtype=np.int64).astype(np.uint64)
    nxt = np.full(series, T0, dtype=np.int64)
    head = Head()
    per_run, per_msg = (10, min(62, series)) if shape == "bulk" else (1, series)
    offset = 0
    while head.points < points:
        pick = rng.choice(series, per_msg, replace=False) if per_msg < series else rng.permutation(series)
        ts = (nxt[pick][:, None] + np.arange(per_run)[None, :] * 10_000).ravel()
        nxt[pick] += per_run * 10_000
        head.append(np.repeat(sids[pick], per_run), ts, rng.random(ts.size), offset)
        offset += 1
    return head


def time_view(shape: str, points: int, series: int, by_runs: bool, repeat: int) -> float:
    best = float("inf")
    saved = head_module.sorted_by_runs
    try:
        if not by_runs:
            head_module.sorted_by_runs = lambda sids, ts, vals: None
        for _ in range(repeat):
            head = build(shape, points, series)
            started = time.process_time()
            head.view()
            best = min(best, time.process_time() - started)
    finally:
        head_module.sorted_by_runs = saved
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=930_000)
    ap.add_argument("--series", type=int, default=1_250)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    rows = []
    for shape in ("bulk", "real-time"):
        runs = time_view(shape, a.points, a.series, True, a.repeat)
        keys = time_view(shape, a.points, a.series, False, a.repeat)
        rows.append({"shape": shape, "points": a.points, "series": a.series, "runs_ms": round(runs * 1e3, 1),
                     "lexsort_ms": round(keys * 1e3, 1), "runs_ns_per_point": round(runs / a.points * 1e9, 1),
                     "lexsort_ns_per_point": round(keys / a.points * 1e9, 1)})
    print(f"{'shape':>10} {'points':>9} {'by runs ms':>11} {'lexsort ms':>11} {'ns/pt runs':>11} {'ns/pt lexsort':>14}")
    for r in rows:
        print(f"{r['shape']:>10} {r['points']:>9} {r['runs_ms']:>11} {r['lexsort_ms']:>11} "
              f"{r['runs_ns_per_point']:>11} {r['lexsort_ns_per_point']:>14}")
    print(json.dumps({"bench": "head_view", "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
