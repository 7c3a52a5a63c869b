"""metricsflow against VictoriaMetrics, alternated round by round; the median ratio is the figure.

    python perf/bench_vs_vm.py --protocol grpc_stream --rounds 4 [--size M] [--kafka-port 47092]

This machine's speed swings by 20-25 % (at times 2x) over minutes, more than the gap being
measured, so one run of each, minutes apart, compares the moments as much as the systems.
Each round runs both back to back, in ABBA order (ours first in rounds 1 and 4, VictoriaMetrics
first in 2 and 3, and so on) so a drift over the session weighs on both alike:
  - ours: ``perf/bench_e2e.py --size S --protocol P --steady-seconds 0 --block-phase 30`` (a fresh
    Kafka, collector and worker; collector + worker CPU until idle, with the force flush, and at
    catch-up);
  - VictoriaMetrics: ``../shared/anchors/bench.py --system vm`` on the same hosts and points
    (through bench_e2e's ``run_anchor``, as ``--with-anchors`` runs it).
A pure-Python probe (perf/lib/speed_probe.py) before each round shows how fast the machine was.
The ratio is taken within each round; their median (and min / max) is printed with a table, and
one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from perf.bench_e2e import run_anchor  # noqa: E402
from perf.lib.requests import SIZES  # noqa: E402
from perf.lib.send import PROTOCOLS  # noqa: E402
from perf.lib.speed_probe import probe_s  # noqa: E402
from perf.lib.stack import PY  # noqa: E402


def run_ours(size: str, protocol: str, kafka_port: int, root: Path, out: Path) -> dict:
    cmd = [PY, str(REPO / "perf" / "bench_e2e.py"), "--size", size, "--protocol", protocol,
           "--steady-seconds", "0", "--block-phase", "30", "--kafka-port", str(kafka_port),
           "--root", str(root), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=REPO)
    if r.returncode != 0 or not out.exists():
        raise SystemExit(f"bench_e2e failed ({r.returncode}): {r.stdout[-600:]}{r.stderr[-600:]}")
    ingest = json.loads(out.read_text())["ingest"]
    return {"collector_worker": ingest["points_per_cpu_s_collector_worker"],
            "with_flush": ingest["points_per_cpu_s_collector_worker_with_flush"],
            "at_catch_up": ingest["points_per_cpu_s_collector_worker_at_catch_up"],
            "cpu_s_net": ingest["cpu_s_net"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="M")
    ap.add_argument("--protocol", choices=PROTOCOLS, default="grpc_stream")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--kafka-port", type=int, default=47092)
    ap.add_argument("--root", default="/tmp/mfperf/vs_vm")
    a = ap.parse_args()
    hosts, points = SIZES[a.size]
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    rounds = []
    for n in range(a.rounds):
        ours_first = n % 4 in (0, 3)
        probe = round(probe_s(), 3)
        print(f"round {n + 1}/{a.rounds}: speed probe {probe} s; {'ours' if ours_first else 'VictoriaMetrics'} first",
              flush=True)
        t0 = time.time()
        steps = ("ours", "vm") if ours_first else ("vm", "ours")
        got: dict[str, dict] = {}
        for step in steps:
            if step == "ours":
                got["ours"] = run_ours(a.size, a.protocol, a.kafka_port, root / "e2e", root / f"ours_{n}.json")
            else:
                got["vm"] = run_anchor("vm", hosts, points, root / "anchors")
                if not got["vm"].get("points_per_server_cpu_s"):
                    raise SystemExit(f"VictoriaMetrics run failed: {got['vm'].get('error')}")
        vm = got["vm"]["points_per_server_cpu_s"]
        ours = got["ours"]
        row = {"round": n + 1, "speed_probe_s": probe, "ours_first": ours_first, "vm": vm, "ours": ours,
               "ratio": round(ours["collector_worker"] / vm, 3),
               "ratio_with_flush": round(ours["with_flush"] / vm, 3),
               "ratio_at_catch_up": round(ours["at_catch_up"] / vm, 3), "wall_s": round(time.time() - t0, 1)}
        rounds.append(row)
        print(f"  ours {ours['collector_worker']:,} (with flush {ours['with_flush']:,}, at catch-up "
              f"{ours['at_catch_up']:,}) points per CPU-s of collector + worker, CPU-s {ours['cpu_s_net']}; "
              f"VictoriaMetrics {vm:,}: ratio {row['ratio']} / {row['ratio_with_flush']} / {row['ratio_at_catch_up']}",
              flush=True)
    print("-" * 100)
    print(f"{'round':>5} {'probe s':>8} {'first':>6} {'ours c+w':>10} {'with flush':>11} {'VM':>10} "
          f"{'÷ VM':>6} {'with flush':>11} {'at catch-up':>12}")
    for r in rounds:
        print(f"{r['round']:>5} {r['speed_probe_s']:>8.2f} {'ours' if r['ours_first'] else 'VM':>6} "
              f"{r['ours']['collector_worker']:>10,} {r['ours']['with_flush']:>11,} {r['vm']:>10,} {r['ratio']:>6} "
              f"{r['ratio_with_flush']:>11} {r['ratio_at_catch_up']:>12}")
    summary = {key: {"median": round(statistics.median(r[key] for r in rounds), 3), "min": min(r[key] for r in rounds),
                     "max": max(r[key] for r in rounds)}
               for key in ("ratio", "ratio_with_flush", "ratio_at_catch_up")}
    for key, s in summary.items():
        print(f"{key:>18}: median {s['median']}, range {s['min']}-{s['max']} over {len(rounds)} rounds")
    print("-" * 100)
    print(json.dumps({"bench": "vs_vm", "size": a.size, "protocol": a.protocol, "cmd": "python " + " ".join(sys.argv),
                      "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
                      "rounds": rounds, "summary": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
