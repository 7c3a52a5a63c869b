#!/usr/bin/env python3
"""Paired A/B of the native parser: another version of metricsflow/ingest/native.py against this one.

    git show 15563f6:metricsflow/ingest/native.py > /tmp/native_old.py
    python perf/bench_native_parse_ab.py /tmp/native_old.py [--rounds 30] [--parse-only]
    git show 4a62a3a:metricsflow/ingest/remote_write.py > /tmp/rw_old.py
    python perf/bench_native_parse_ab.py /tmp/rw_old.py --remote-write [--rounds 30] [--parse-only]

``--remote-write``: the modules are versions of metricsflow/ingest/remote_write.py, timed on
the same requests as remote_write bodies, decompressed first (``decode_write_request``).

Both modules are loaded into this process and timed alternately (CPU time) on the same 20
requests of the M workload (500 series × 10 points each), parse plus the collector
pipeline's label-set key per series (``--parse-only``: the parse alone, as the pipeline
takes a known request's series in one probe), so a machine whose speed drifts affects both
alike. Prints the medians and the median of the paired ratios, then one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from metricsflow.ingest import native as current  # noqa: E402
from metricsflow.ingest import remote_write  # noqa: E402
from perf.lib import requests as rq  # noqa: E402


def _us_per_point(mod: ModuleType, bodies: list[bytes], parse_only: bool = False) -> float:
    parse = getattr(mod, "decode_write_request", None) or (lambda body: mod.parse_native_with_tenant(body)[0])
    t = time.process_time()
    for body in bodies:
        parsed = parse(body)
        if parse_only:
            continue
        keys: dict = {}
        for s in parsed.series:
            labels = s.labels
            keys.get((*labels, *labels.values()))  # the pipeline's _LabelSetCache key
    return (time.process_time() - t) / (len(bodies) * 5000) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("other", help="path of another native.py (or remote_write.py with --remote-write)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--parse-only", action="store_true", help="time the parse alone, without a key per series")
    ap.add_argument("--remote-write", action="store_true", help="compare versions of remote_write.py")
    a = ap.parse_args()
    spec = importlib.util.spec_from_file_location("native_other", a.other)
    assert spec is not None and spec.loader is not None
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    if a.remote_write:
        mine: ModuleType = remote_write
        bodies = [remote_write.decompress_remote_write(it.body, "snappy")
                  for it in rq.build("remote_write", 1000, 10).items[:20]]
    else:
        mine = current
        bodies = [it.body for it in rq.build("grpc", 1000, 10).items[:20]]
    for mod in (other, mine):
        for _ in range(3):  # warm: caches, first-touch, and a template's second sighting
            _us_per_point(mod, bodies)
    a_us, b_us = [], []
    for _ in range(a.rounds):
        a_us.append(_us_per_point(other, bodies, a.parse_only))
        b_us.append(_us_per_point(mine, bodies, a.parse_only))
    result = {"bench": "native_parse_ab", "other": a.other, "rounds": a.rounds, "parse_only": a.parse_only,
              "remote_write": a.remote_write,
              "other_us_per_point": round(statistics.median(a_us), 3),
              "current_us_per_point": round(statistics.median(b_us), 3),
              "paired_ratio_median": round(statistics.median(b / o for o, b in zip(a_us, b_us, strict=True)), 3)}
    print(f"other {result['other_us_per_point']} µs/point, this {result['current_us_per_point']} µs/point, "
          f"paired ratio {result['paired_ratio_median']}")
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
