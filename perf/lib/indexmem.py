"""Python heap bytes per series of the worker's in-memory label index (tables.index.SeriesIndex),
plus its newest timestamp (tables.newest.NewestTimes), measured with tracemalloc for the TSBS-like
label sets.

    python -m perf.lib.indexmem [--hosts 1000] [--partitions 8]

A worker keeps one index per partition, so the series are spread over ``--partitions``
indexes by their partition as the collector assigns it (8, the default of a worker's
settings); more partitions means fewer series per posting list.
"""

from __future__ import annotations

import argparse
import json
import tracemalloc
from collections import defaultdict

from metricsflow.config import Settings
from metricsflow.series_id import partition_for, series_id
from metricsflow.workload import series_labels
from tables.index import SeriesIndex
from tables.newest import NewestTimes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=Settings().partitions)
    a = ap.parse_args()
    labels = series_labels(a.hosts)
    sids = [series_id("default", lb) for lb in labels]
    # labels as the worker holds them: fresh dicts/strings parsed from SeriesInfo protobufs
    tracemalloc.start()
    fresh = [{k.encode().decode(): v.encode().decode() for k, v in lb.items()} for lb in labels]
    del labels
    indexes: defaultdict[int, SeriesIndex] = defaultdict(SeriesIndex)
    newest: defaultdict[int, NewestTimes] = defaultdict(NewestTimes)
    for sid, lb in zip(sids, fresh, strict=True):
        p = partition_for(sid, a.partitions)
        indexes[p].add(sid, "default", lb, 0)
        newest[p][sid] = 1_795_000_000_000
    del fresh
    cur, _peak = tracemalloc.get_traced_memory()
    n = len(sids)
    print(json.dumps({"series": n, "partitions": a.partitions, "index_plus_newest_bytes": cur,
                      "bytes_per_series": round(cur / n)}))


if __name__ == "__main__":
    main()
