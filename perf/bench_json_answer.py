#!/usr/bin/env python3
"""The API's matrix answer, encoded: this tree, or this tree and another checkout in turn (A/B).

    python perf/bench_json_answer.py [--base /path/to/other/checkout] [--series 1000] [--steps 360]
                                     [--rounds 5]

A range answer of ``--series`` series x ``--steps`` points on one 60 s grid (q1 of
perf/bench_queries.py has 1,000 x 360), encoded by ``QueryResult.to_json_bytes`` as the web
views do, for three kinds of values: whole numbers (counters, byte gauges), three decimals,
and full float64 digits (averages, rates). Each tree runs in its own process; with ``--base``
the two alternate round by round so the machine's speed swings fall on both. Reports the
median ms over the rounds (each round the best of 3 encodings) and the answer's bytes; the
two trees' answers must be byte-identical. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KINDS = ("whole", "decimals3", "float64")

ONE_ROUND = """
import gc, sys, time, hashlib, json
sys.path.insert(0, sys.argv[1])
import numpy as np
from metricsflow.promql.result import QueryResult, ResultSeries
series, steps = int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(7)
ts = 1_795_000_000_000 + 60_000 * np.arange(steps, dtype=np.int64)
make = {"whole": lambda: np.floor(rng.random(steps) * 1e6),
        "decimals3": lambda: np.round(rng.random(steps) * 100, 3),
        "float64": lambda: rng.random(steps) * 100}
out = {}
for kind, values in make.items():
    result = QueryResult("matrix", [ResultSeries({"__name__": "m", "hostname": f"host_{i}"}, ts, values())
                                    for i in range(series)])
    best = float("inf")
    for _ in range(3):
        gc.collect()
        t = time.perf_counter()
        body = result.to_json_bytes()
        best = min(best, time.perf_counter() - t)
    out[kind] = {"ms": best * 1000, "bytes": len(body), "sha1": hashlib.sha1(body).hexdigest()}
print(json.dumps(out))
"""


def one_round(tree: str, series: int, steps: int) -> dict:
    done = subprocess.run([sys.executable, "-c", ONE_ROUND, tree, str(series), str(steps)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default=None, help="another checkout to compare with (A = base, B = this tree)")
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=360)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    trees = {"base": a.base, "this": str(REPO)} if a.base else {"this": str(REPO)}
    rounds: dict[str, list[dict]] = {name: [] for name in trees}
    for r in range(a.rounds):
        for name, tree in trees.items():
            got = one_round(tree, a.series, a.steps)
            rounds[name].append(got)
            print(f"  round {r + 1} {name:5s} " + "  ".join(f"{k} {got[k]['ms']:7.1f} ms" for k in KINDS), flush=True)
    summary = {name: {k: {"median_ms": round(statistics.median(x[k]["ms"] for x in rs), 1),
                          "bytes": rs[0][k]["bytes"]} for k in KINDS} for name, rs in rounds.items()}
    same = {k: len({rs[0][k]["sha1"] for rs in rounds.values()}) == 1 for k in KINDS}
    print(f"matrix answer of {a.series} series x {a.steps} points, median ms over {a.rounds} rounds:")
    for name, kinds in summary.items():
        print(f"  {name:5s} " + "  ".join(f"{k} {v['median_ms']:7.1f} ms ({v['bytes']:,} B)" for k, v in kinds.items()))
    if a.base:
        print("  answers byte-identical: " + ", ".join(f"{k} {'yes' if same[k] else 'NO'}" for k in KINDS))
    print(json.dumps({"bench": "json_answer", "series": a.series, "steps": a.steps, "rounds": a.rounds,
                      "trees": trees, "identical": same, **summary}))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
