#!/usr/bin/env python3
"""``sum`` aggregation: the numpy accumulate path against the rank-by-rank loop, in process.

    python perf/bench_aggregate_sum.py

For each shape (series, groups, steps), the best of 3×3 runs of ``aggregate._sum`` (which
takes the accumulate path where it is the cheaper) and of ``aggregate._sum_by_rank``.
Prints one line per shape, then one JSON line.
"""

from __future__ import annotations

import functools
import json
import sys
import timeit
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metricsflow.promql.aggregate import _sum, _sum_by_rank, group_rows
from metricsflow.promql.values import InstantVec

SHAPES = [(100, 1, 359), (1000, 1, 359), (1000, 10, 359), (10_000, 1, 1), (10_000, 100, 1)]


def main() -> int:
    rng = np.random.default_rng(1)
    rows = []
    for n, groups, steps in SHAPES:
        labels = [(("g", str(i % groups)), ("i", str(i))) for i in range(n)]
        vec = InstantVec(labels, rng.random((n, steps)) * 1000, np.ones((n, steps), bool))
        gr = group_rows(vec.labels, ["g"], None)
        row = {"series": n, "groups": groups, "steps": steps}
        for name, fn in (("sum_ms", _sum), ("rank_loop_ms", _sum_by_rank)):
            best = min(timeit.repeat(functools.partial(fn, vec, gr, len(gr.labels)), number=3, repeat=3)) / 3
            row[name] = round(best * 1000, 3)
        rows.append(row)
        print(f"{n:6d} series {groups:4d} groups {steps:4d} steps: sum {row['sum_ms']:8.3f} ms, "
              f"rank loop {row['rank_loop_ms']:8.3f} ms")
    print(json.dumps({"bench": "aggregate_sum", "shapes": rows}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
