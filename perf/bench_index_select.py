#!/usr/bin/env python3
"""Series selection in the worker's label index: matcher sets over the TSBS-like series, in process.

    python perf/bench_index_select.py [--hosts 10000] [--partitions 8] [--repeat 5]

The series (10 per host, 11 labels) are spread over one ``tables.index.SeriesIndex`` per
partition as a worker holds them; each matcher set is selected in every index, best of
``--repeat``. Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

from metricsflow.config import Settings
from metricsflow.promql.source import Matcher
from metricsflow.series_id import partition_for, series_id
from metricsflow.workload import series_labels
from tables.index import SeriesIndex

CASES = {
    'cpu_usage_user': [Matcher("__name__", "=", "cpu_usage_user")],
    'cpu_usage_user{hostname=~"host_1.*"}': [Matcher("__name__", "=", "cpu_usage_user"),
                                             Matcher("hostname", "=~", "host_1.*")],
    'cpu_usage_user{region!="us-east-1"}': [Matcher("__name__", "=", "cpu_usage_user"),
                                            Matcher("region", "!=", "us-east-1")],
    'cpu_usage_user{hostname=~"host_42"}': [Matcher("__name__", "=", "cpu_usage_user"),
                                            Matcher("hostname", "=~", "host_42")],
    '{__name__=~"cpu_.*", hostname="host_42"}': [Matcher("__name__", "=~", "cpu_.*"),
                                                 Matcher("hostname", "=", "host_42")],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=10_000)
    ap.add_argument("--partitions", type=int, default=Settings().partitions)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    indexes: defaultdict[int, SeriesIndex] = defaultdict(SeriesIndex)
    for labels in series_labels(a.hosts):
        sid = series_id("default", labels)
        indexes[partition_for(sid, a.partitions)].add(sid, "default", labels)
    out = {}
    for name, matchers in CASES.items():
        best, found = float("inf"), 0
        for _ in range(a.repeat):
            t = time.perf_counter()
            found = sum(len(index.select("default", matchers)) for index in indexes.values())
            best = min(best, time.perf_counter() - t)
        out[name] = {"series": found, "ms": round(best * 1e3, 3)}
        print(f"{name:<45}{found:>8,} series {best * 1e3:9.2f} ms")
    print(json.dumps({"bench": "index_select", "hosts": a.hosts, "partitions": a.partitions, "cases": out}))


if __name__ == "__main__":
    main()
