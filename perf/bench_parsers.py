"""Parse throughput of every ingest protocol on a TSBS-like request.

Workload (TSBS "cpu-only"): H hosts x 10 cpu metrics, 10 tags per host
(hostname, region, datacenter, rack, os, arch, team, service,
service_version, service_environment), S samples per series per request;
default 1000 x 10 x 10 = 100k points per request. Every protocol encodes the
same points; we time only the parse (decompression included for
remote_write), best of --repeat runs, single thread.

    python perf/bench_parsers.py [--hosts 1000] [--samples 10] [--repeat 5]

Prints a table and, last, one JSON line (for tracking over time).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metricsflow.ingest.influx_line import parse_influx_line
from metricsflow.ingest.json_points import parse_json_points
from metricsflow.ingest.native import encode_native, parse_native
from metricsflow.ingest.otlp import encode_otlp, parse_otlp
from metricsflow.ingest.remote_write import encode_remote_write, parse_remote_write
from metricsflow.ingest.statsd import parse_statsd
from metricsflow.model import MetricKind, SeriesSamples

METRICS = [
    "usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait",
    "usage_irq", "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice",
]  # fmt: skip
T0_MS = 1_764_150_000_000
STEP_MS = 10_000


def host_tags(h: int) -> dict[str, str]:
    return {
        "hostname": f"host_{h}",
        "region": ["us-east-1", "eu-west-1", "ap-south-1"][h % 3],
        "datacenter": f"dc_{h % 7}",
        "rack": str(h % 100),
        "os": ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"][h % 3],
        "arch": ["x64", "x86"][h % 2],
        "team": ["SF", "NYC", "LON", "CHI"][h % 4],
        "service": str(h % 20),
        "service_version": str(h % 2),
        "service_environment": ["production", "staging", "test"][h % 3],
    }


def workload(hosts: int, samples: int) -> tuple[list[SeriesSamples], np.ndarray]:
    rng = np.random.default_rng(42)
    timestamps = T0_MS + STEP_MS * np.arange(samples, dtype=np.int64)
    # Percentages with 2 decimals, never exactly 0.0 (zeros are benchmarked separately: proto3
    # omits them on the wire, which sends remote_write down its slower realignment path).
    values = np.round(rng.uniform(0.01, 100.0, (hosts, len(METRICS), samples)), 2)
    series = [
        SeriesSamples({"__name__": f"cpu_{m}", **host_tags(h)}, timestamps, values[h, i], MetricKind.GAUGE)
        for h in range(hosts)
        for i, m in enumerate(METRICS)
    ]
    return series, values


def bodies(series: list[SeriesSamples], values: np.ndarray, hosts: int, samples: int) -> dict[str, bytes]:
    with_zeros = [SeriesSamples(s.labels, s.timestamps_ms, s.values.copy(), s.kind) for s in series]
    for s in with_zeros[::10]:
        s.values[0] = 0.0  # 1% of the points, in 10% of the series
    out = {
        "remote_write": encode_remote_write(series),
        "remote_write_1pct_zeros": encode_remote_write(with_zeros),
        "native_le_columns": encode_native(series, columns=True),
        "native_packed": encode_native(series, columns=False),
        "otlp": encode_otlp(series, {"service.name": "tsbs", "service.instance.id": "gen-1"}),
    }
    lines = []
    for h in range(hosts):
        tags = ",".join(f"{k}={v}" for k, v in host_tags(h).items())
        for t in range(samples):
            fields = ",".join(f"{m}={float(values[h, i, t])!r}" for i, m in enumerate(METRICS))
            lines.append(f"cpu,{tags} {fields} {(T0_MS + STEP_MS * t) * 1_000_000}")
    out["influx_line"] = "\n".join(lines).encode()
    points = []
    for s in series:
        tags = {k: v for k, v in s.labels.items() if k != "__name__"}
        for t, v in zip(s.timestamps_ms.tolist(), s.values.tolist(), strict=True):
            points.append({"metric_name": s.labels["__name__"], "timestamp": t, "value": v, "tags": tags})
    out["json"] = orjson.dumps({"metrics": points})
    statsd_lines = []
    for s in series:
        tags = ",".join(f"{k}:{v}" for k, v in s.labels.items() if k != "__name__")
        for v in s.values.tolist():
            statsd_lines.append(f"{s.labels['__name__']}:{v}|g|#{tags}")
    out["statsd"] = "\n".join(statsd_lines).encode()
    return out


def parsers() -> dict[str, Callable[[bytes], object]]:
    return {
        "remote_write": lambda b: parse_remote_write(b),
        "remote_write_1pct_zeros": lambda b: parse_remote_write(b),
        "native_le_columns": parse_native,
        "native_packed": parse_native,
        "otlp": lambda b: parse_otlp(b, now_ms=T0_MS),
        "influx_line": lambda b: parse_influx_line(b, now_ms=T0_MS),
        "json": lambda b: parse_json_points(b, now_ms=T0_MS),
        "statsd": parse_statsd,
    }


def count_points(out: object) -> int:
    if hasattr(out, "series"):
        return sum(len(s) for s in out.series)  # type: ignore[attr-defined]
    return len(out)  # type: ignore[arg-type]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    series, values = workload(args.hosts, args.samples)
    expected = args.hosts * len(METRICS) * args.samples
    encoded = bodies(series, values, args.hosts, args.samples)
    rows = []
    for name, parse in parsers().items():
        body = encoded[name]
        best = float("inf")
        points = 0
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = parse(body)
            best = min(best, time.perf_counter() - t0)
            points = count_points(out)
        if points != expected:
            print(f"warning: {name} parsed {points} points, expected {expected}", file=sys.stderr)
        rows.append(
            {
                "protocol": name,
                "points": points,
                "body_bytes": len(body),
                "parse_ms": round(best * 1e3, 2),
                "points_per_s": round(points / best),
                "us_per_point": round(best * 1e6 / points, 3),
            }
        )
    print(
        f"TSBS-like: {args.hosts} hosts x {len(METRICS)} metrics x {args.samples} samples, "
        f"10 tags; best of {args.repeat}"
    )
    print(f"{'protocol':<24} {'points':>8} {'body KiB':>9} {'parse ms':>9} {'points/s':>11} {'us/point':>9}")
    for r in rows:
        print(
            f"{r['protocol']:<24} {r['points']:>8} {r['body_bytes'] / 1024:>9.0f} {r['parse_ms']:>9.1f} "
            f"{r['points_per_s']:>11,} {r['us_per_point']:>9.3f}"
        )
    print(
        json.dumps(
            {
                "bench": "ingest_parsers",
                "hosts": args.hosts,
                "samples": args.samples,
                "python": platform.python_version(),
                "results": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
