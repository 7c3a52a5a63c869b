#!/usr/bin/env python3
"""In process: what a series costs the first time it is seen, against a known request.

    python perf/bench_new_series.py [--hosts 1000] [--rounds 3]
    (A/B: copy it into an unpacked older tree's perf/ and run it there)

The collector's three steps for the load's native requests (500 series × 10 samples): the parse
(``parse_native``), the checks and ids (``IngestPipeline._keep``) and the messages with the new
series' announcements (``_build_messages``), for the first window (every series new), the second
and the third (the request made a template, then found whole); then the worker's index of the
announcements (``WorkerStorage._index_series``). Every cache starts empty in each round. Prints
µs per request and per new series; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from metricsflow import series_batch, series_id  # noqa: E402
from metricsflow.collector.pipeline import IngestPipeline  # noqa: E402
from metricsflow.config import Settings  # noqa: E402
from metricsflow.ingest import label_sets, native, request_templates  # noqa: E402
from perf.lib import requests as rq  # noqa: E402
from tables.index import SeriesIndex  # noqa: E402
from tables.storage import WorkerStorage  # noqa: E402


def _forget_everything() -> None:
    label_sets.LABELS.sets.clear()
    label_sets.LABELS.by_prefix.clear()
    # The label caches by name, so that the script also runs on trees from before them (an A/B).
    for module, cache in ((label_sets, "_labels"), (series_id, "_encoded"), (series_batch, "_label_fields")):
        getattr(module, cache, {}).clear()
    native._TEMPLATES = request_templates.Templates()


def one_round(hosts: int) -> dict[str, dict[str, float]]:
    enc = rq.build("grpc", hosts, 30)  # three windows of 10 samples
    windows = [[it.body for it in enc.items if it.window == w] for w in range(3)]
    _forget_everything()
    pipeline = IngestPipeline(Settings(), writer=None)  # type: ignore[arg-type]  # no write is made
    now = int(time.time() * 1000)
    out: dict[str, dict[str, float]] = {}
    announcements: list[tuple[bytes, bytes]] = []
    for name, bodies in zip(("first sight", "second", "third"), windows, strict=True):
        took = {"parse": 0.0, "keep": 0.0, "build": 0.0}
        for body in bodies:
            t0 = time.perf_counter()
            parsed = native.parse_native(body)
            t1 = time.perf_counter()
            kept = pipeline._keep("default", parsed.series, now, parsed.shared_labels, parsed.columns)
            t2 = time.perf_counter()
            messages, new = pipeline._build_messages([("default", kept)], now)
            t3 = time.perf_counter()
            for sid in new:
                pipeline._announced.add(sid)
            announcements += [(key, value) for topic, _, key, value in messages if topic.endswith("series")]
            took["parse"] += t1 - t0
            took["keep"] += t2 - t1
            took["build"] += t3 - t2
        out[name] = {k: round(v / len(bodies) * 1e6, 1) for k, v in took.items()}
    index = SeriesIndex()
    started = time.perf_counter()
    for key, value in announcements:
        WorkerStorage._index_series(index, key, value, strict=True)
    out["worker index"] = {"per_series_us": round((time.perf_counter() - started) / len(index._labels) * 1e6, 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=1000, help="10 series each (1000: the M load's 10,000)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rounds = [one_round(args.hosts) for _ in range(args.rounds)]
    best = {step: {k: min(r[step][k] for r in rounds) for k in rounds[0][step]} for step in rounds[0]}
    per_request = 500
    for step, got in best.items():
        if step == "worker index":
            print(f"{step:12s}: {got['per_series_us']:7.1f} µs per new series")
            continue
        total = sum(got.values())
        print(f"{step:12s}: parse {got['parse']:8.1f}  keep {got['keep']:8.1f}  build {got['build']:8.1f} µs per "
              f"request ({total / per_request:5.1f} µs per series)")
    print(json.dumps({"bench": "new_series", "hosts": args.hosts, "rounds": args.rounds, "best_us": best},
                     separators=(",", ":")))


if __name__ == "__main__":
    main()
