"""Microbenchmark of the PromQL engine on a MemorySource.

10 metrics ``cpu_usage_*`` x 1000 hosts (labels hostname, region) = 10,000 series
of 720 points (10 s apart, 2 h), random walks. Times two dashboard queries, end to
end (evaluation plus encoding the API ``data`` object with ``to_json_bytes``) and
evaluation only:

- ``avg by (hostname) (cpu_usage_user)``, range query over the 2 h, step 60 s
- ``topk(5, avg_over_time(cpu_usage_idle[1h]))``, instant query at the end

Prints one line per query and a final JSON line. For scale: VictoriaMetrics
answers these in about 65 ms and 52 ms end to end.

    .venv/bin/python perf/bench_promql_engine.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from metricsflow.promql import Engine, MemorySource

METRICS = ["user", "system", "idle", "nice", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"]
HOSTS = 1000
POINTS = 720
INTERVAL_MS = 10_000
START_MS = 1_700_000_000_000


def build_source(seed: int = 1) -> MemorySource:
    rng = np.random.default_rng(seed)
    ts = START_MS + INTERVAL_MS * np.arange(POINTS, dtype=np.int64)
    src = MemorySource()
    for m in METRICS:
        walks = np.clip(50 + np.cumsum(rng.normal(0, 1, size=(HOSTS, POINTS)), axis=1), 0, 100)
        for h in range(HOSTS):
            src.add(
                {"__name__": f"cpu_usage_{m}", "hostname": f"host_{h}", "region": f"region_{h % 10}"},
                ts,
                walks[h],
            )
    return src


def _median_ms(fn, repeat: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds; CPU time is the steadier figure on a shared machine."""
    fn()  # warm caches (regex, imports)
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    t0 = time.perf_counter()
    src = build_source()
    build_s = time.perf_counter() - t0
    eng = Engine(src)
    end = START_MS + INTERVAL_MS * (POINTS - 1)
    queries = {
        "avg_by_hostname_range": lambda: eng.range(
            "avg by (hostname) (cpu_usage_user)", START_MS, end, 60_000
        ),
        "topk_avg_over_time_instant": lambda: eng.instant("topk(5, avg_over_time(cpu_usage_idle[1h]))", end),
    }
    report: dict[str, object] = {
        "series": len(src),
        "points_per_series": POINTS,
        "build_s": round(build_s, 2),
    }
    for name, q in queries.items():
        eval_ms, eval_cpu = _median_ms(q, args.repeat)
        e2e_ms, e2e_cpu = _median_ms(lambda q=q: q().to_json_bytes(), args.repeat)
        res = q()
        print(
            f"{name}: eval {eval_ms:.1f} ms (cpu {eval_cpu:.1f}), eval+json bytes {e2e_ms:.1f} ms "
            f"(cpu {e2e_cpu:.1f}), {len(res.series)} series"
        )
        report[name] = {
            "eval_ms": round(eval_ms, 2),
            "eval_cpu_ms": round(eval_cpu, 2),
            "end_to_end_ms": round(e2e_ms, 2),
            "end_to_end_cpu_ms": round(e2e_cpu, 2),
            "result_series": len(res.series),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
