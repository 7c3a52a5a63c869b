#!/usr/bin/env python3
"""A small query's storage read, evaluation and JSON in process, with cold CPU caches; two trees alternated.

    python perf/bench_query_cold.py [--base /path/to/other/checkout] [--pairs 3] [--queries 300]

No Kafka, no HTTP: perf/bench_query_loop_ab.py's data (1,000 ``cpu_usage_user`` series in 10
regions and 100 ``requests_total`` counters, 2,160 points each, 8 partitions over real RocksDB,
sealed) read by ``local_source``, evaluated by ``Engine.range`` (6 h, step 60 s) and encoded with
``to_json_bytes``, ``--queries`` times, a 40 MB array touched before each (so the server's
situation between requests: its data out of the CPU caches). Reports the median ms per query of
q3 ``max(cpu_usage_user{region="r3"})`` and q4 ``sum(rate(requests_total[5m]))``; with ``--base``
each tree runs in its own process, alternated ``--pairs`` times. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUERIES = {"q3": 'max(cpu_usage_user{region="r3"})', "q4": "sum(rate(requests_total[5m]))"}


def run_tree(tree: str, queries: int) -> dict[str, float]:
    """Medians of this tree (runs in a child process with ``tree`` first on the path)."""
    sys.path[:0] = [tree, str(Path(tree) / "perf")]
    import numpy as np
    from bench_query_loop_ab import _load

    from metricsflow.heap import keep_freed_memory
    from metricsflow.promql import selections
    from metricsflow.promql.engine import Engine
    from metricsflow.promql.result import gc_paused
    from web.cluster import local_source

    keep_freed_memory()  # as the worker does
    storage, start, stop = asyncio.run(_load())
    junk = np.ones(40_000_000 // 8)
    out = {}
    for name, q in QUERIES.items():
        sels = selections(q, start, stop, 60_000, 300_000)
        took = []
        for _ in range(queries):
            junk += 1.0
            with gc_paused():
                t = time.perf_counter()
                source = local_source(storage, "default", sels)
                Engine(source, lookback_ms=300_000).range(q, start, stop, 60_000).to_json_bytes()
                took.append(time.perf_counter() - t)
        out[name] = round(statistics.median(took) * 1000, 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default=None, help="another checkout to alternate with (needs bench_query_loop_ab.py)")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--tree", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.tree:
        print(json.dumps(run_tree(a.tree, a.queries)))
        return 0
    trees = {"base": a.base, "this": str(REPO)} if a.base else {"this": str(REPO)}
    res: dict[str, dict[str, list[float]]] = {t: {q: [] for q in QUERIES} for t in trees}
    for i in range(a.pairs):
        for name, tree in trees.items():
            line = subprocess.run([sys.executable, __file__, "--tree", tree, "--queries", str(a.queries)],
                                  check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            for q, ms in json.loads(line).items():
                res[name][q].append(ms)
            print(f"  pair {i + 1} {name:4s} " + "  ".join(f"{q} {v[-1]:6.3f} ms" for q, v in res[name].items()),
                  flush=True)
    print("median ms per query over the pairs:")
    for name in trees:
        print(f"  {name:4s} " + "  ".join(f"{q} {statistics.median(v):6.3f}" for q, v in res[name].items()))
    print(json.dumps({"bench": "query_cold", "pairs": a.pairs, "queries": a.queries, "trees": trees, **res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
