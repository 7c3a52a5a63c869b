"""Recovery time: kill -9 a worker holding N series × H hours, restart it, time until queryable.

    python perf/bench_recovery.py --hosts 1000 --hours 1 [--wipe]

Starts its own Kafka (free ports, /tmp/mfrecovery), a collector and a worker; loads the
TSBS-like workload; waits until every point is stored; kills the worker with SIGKILL;
restarts it (``--wipe`` deletes its local RocksDB first, so everything comes from the
changelogs) and measures kill → /readyz 200 and kill → all points answered again, and how
many points the restarted worker replayed from mf.points (the head no cut had made durable)
and in how many seconds. Prints a table and one JSON line; stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from metricsflow.stack import kafka  # noqa: E402
from tests.support import Stack, free_port, get_json, http, wait_for  # noqa: E402


def stored(worker: str) -> int:
    q = urllib.parse.urlencode({"query": "count_over_time(cpu_usage_user[30d])", "time": time.time() + 60})
    status, doc = get_json(f"{worker}/api/v1/query?{q}")
    if status != 200:
        return -1
    return int(sum(float(r["value"][1]) for r in doc["data"]["result"])) * 10  # 10 metrics per host


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def replay_figures(worker: str) -> tuple[float, float]:
    """(points replayed from mf.points, seconds spent replaying) from the worker's /metrics."""
    _, _, body = http("GET", worker + "/metrics")
    points = seconds = 0.0
    for line in body.decode().splitlines():
        if line.startswith("mf_worker_replayed_points_total"):
            points += float(line.split()[-1])
        elif line.startswith("mf_worker_replay_seconds_sum"):
            seconds += float(line.split()[-1])
    return points, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--wipe", action="store_true", help="delete the worker's RocksDB before restarting")
    ap.add_argument("--cut-interval", type=float, default=30.0, help="MF_HEAD_CUT_INTERVAL_S of the worker")
    args = ap.parse_args()
    work = Path("/tmp/mfrecovery")
    shutil.rmtree(work, ignore_errors=True)
    node = kafka.KafkaNode(work / "kafka", port=free_port(), controller_port=free_port(), heap="1g")
    kafka.start(node)
    stack = Stack(bootstrap=node.bootstrap, workdir=work, partitions=8)
    try:
        stack.start_collector()
        proc, worker = stack.start_worker("w1", MF_HEAD_CUT_INTERVAL_S=str(args.cut_interval))
        port = int(worker.rsplit(":", 1)[1])
        points = int(args.hosts * 10 * args.hours * 360)
        import subprocess
        rate = 40_000  # what this 2-core machine sustains end to end while other work runs
        load = subprocess.run(
            [sys.executable, "-m", "metricsflow", "load", "--protocol", "grpc", "--hosts", str(args.hosts),
             "--rate", str(rate), "--duration", str(points / rate), "--grpc", f"127.0.0.1:{stack.grpc_port}",
             "--quiet"], capture_output=True, text=True, cwd=REPO)
        summary = json.loads(load.stdout.strip().splitlines()[-1])
        accepted = summary["points_accepted"]
        wait_for(lambda: stored(worker) >= accepted, 900, "all points stored")
        series = args.hosts * 10
        rss = rss_mib(proc.popen.pid)
        proc.kill9()
        killed = time.monotonic()
        if args.wipe:
            shutil.rmtree(work / "data")
        proc, worker = stack.start_worker("w1", web_port=port, wait_ready=False,
                                          MF_HEAD_CUT_INTERVAL_S=str(args.cut_interval))
        wait_for(lambda: http("GET", worker + "/readyz", timeout_s=2)[0] == 200, 900, "ready")
        ready_s = time.monotonic() - killed
        wait_for(lambda: stored(worker) >= accepted, 900, "all points queryable")
        queryable_s = time.monotonic() - killed
        replayed, replay_s = replay_figures(worker)
        result = {"bench": "recovery", "series": series, "points": accepted, "wipe": args.wipe,
                  "kill_to_ready_s": round(ready_s, 1), "kill_to_queryable_s": round(queryable_s, 1),
                  "replayed_points": int(replayed), "replay_s": round(replay_s, 2),
                  "cut_interval_s": args.cut_interval, "worker_rss_mib_before_kill": round(rss, 1),
                  "rss_bytes_per_series": round(rss * 1024 * 1024 / series)}
        print(f"series {series:,}  points {accepted:,}  wipe={args.wipe}")
        print(f"kill -9 → ready {ready_s:.1f} s   kill -9 → all queryable {queryable_s:.1f} s")
        print(f"replayed from mf.points: {int(replayed):,} points in {replay_s:.2f} s")
        print(f"worker RSS before kill {rss:.0f} MiB = {result['rss_bytes_per_series']:,} B/series")
        print(json.dumps(result))
        return 0
    finally:
        stack.stop_all()
        kafka.stop(node)


if __name__ == "__main__":
    sys.exit(main())
