"""StatsD sidecar receive throughput on loopback: received vs sent, kernel drops, CPU per packet.

Starts the sidecar (``python -m metricsflow.sidecar``) and, in a separate process,
a paced UDP sender (``--rate`` packets/s for ``--duration`` s, one StatsD line per
packet: a DogStatsD mix of 60 % counters with a sample rate, 20 % gauges, 15 %
timers, 5 % sets over ``--series`` series with 2 tags each; counter datagrams repeat
byte for byte like real ``x:1|c`` traffic, gauge/timer values and set members are
random, so the sidecar's datagram cache hits only on counters and the rare repeat). The sidecar flushes
every ``--flush-interval`` s to ``--collector`` (by default a closed port: the
client's sends fail fast and points are buffered/dropped, which is not what is
measured here). CPU is the sidecar's utime+stime from /proc/<pid>/stat over the
run; kernel drops come from the sidecar's own /metrics (``/proc/net/udp``).

    python perf/bench_sidecar.py [--rate 100000] [--duration 5] [--series 1000]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def packets(series: int, count: int = 10_000, seed: int = 7) -> list[bytes]:
    """``count`` datagrams; counters repeat byte for byte (as real ``x:1|c`` traffic does),
    gauge/timer values and set members are drawn from wide ranges (rarely repeat)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        s = rng.randrange(series)
        tags = f"#env:prod,host:h{s % 97}"
        r = rng.random()
        if r < 0.6:
            line = f"app.requests.s{s}:1|c|@0.5|{tags}"
        elif r < 0.8:
            line = f"app.queue.s{s}:{rng.randrange(1_000_000)}|g|{tags}"
        elif r < 0.95:
            line = f"app.latency.s{s % 50}:{rng.expovariate(0.05):.3f}|ms|{tags}"
        else:
            line = f"app.users.s{s % 20}:u{rng.randrange(10_000_000)}|s|{tags}"
        out.append(line.encode())
    return out


def run_sender(target: str, rate: float, duration_s: float, series: int) -> None:
    """Child process: send paced datagrams, print one JSON line with what was sent."""
    host, port = target.rsplit(":", 1)
    addr = (host, int(port))
    pkts = packets(series, count=min(1_000_000, int(rate * duration_s)))  # each datagram sent once
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(addr)
    send = sock.send
    sent = errors = 0
    n = len(pkts)
    started = time.perf_counter()
    end = started + duration_s
    tick = 0.001
    per_tick = rate * tick
    due = 0.0
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        due = (now - started) * rate
        burst = int(due) - sent
        if burst <= 0:
            time.sleep(max(0.0, (sent + per_tick) / rate - (now - started)) if per_tick >= 1 else tick)
            continue
        for _ in range(min(burst, 2000)):
            try:
                send(pkts[sent % n])
            except OSError:
                errors += 1
            sent += 1
    wall = time.perf_counter() - started
    print(json.dumps({"sent": sent, "errors": errors, "wall_s": wall}), flush=True)


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def scrape(metrics_addr: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = out.get(name, 0.0) + float(value) if "{" not in name else float(value)
            if "{" in name:
                base = name.split("{", 1)[0]
                out[base] = out.get(base, 0.0) + float(value)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=100_000)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--flush-interval", type=float, default=2.0)
    ap.add_argument("--collector", default="127.0.0.1:9")
    ap.add_argument("--send", help=argparse.SUPPRESS)  # child mode: host:port
    args = ap.parse_args()
    if args.send:
        run_sender(args.send, args.rate, args.duration, args.series)
        return 0

    sidecar = subprocess.Popen(
        [sys.executable, "-m", "metricsflow.sidecar", "--listen", "127.0.0.1:0", "--metrics-port", "0",
         "--flush-interval", str(args.flush_interval), "--collector", args.collector, "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=sys.stderr, cwd=REPO, text=True)
    try:
        ready = json.loads(sidecar.stdout.readline())  # type: ignore[union-attr]
        metrics_addr = ready["metrics"]
        before = scrape(metrics_addr)
        cpu0 = cpu_s(sidecar.pid)
        t0 = time.perf_counter()
        sender = subprocess.run(
            [sys.executable, __file__, "--send", ready["listening"], "--rate", str(args.rate),
             "--duration", str(args.duration), "--series", str(args.series)],
            capture_output=True, text=True, check=True)
        sent_doc = json.loads(sender.stdout.strip().splitlines()[-1])
        # Drained when the received count stops moving (the socket may hold a backlog).
        last, stable_since = -1.0, time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now_stats = scrape(metrics_addr)
            got = now_stats.get("mf_sidecar_packets_received_total", 0.0)
            if got != last:
                last, stable_since = got, time.monotonic()
            elif time.monotonic() - stable_since > 0.5 and now_stats.get("mf_sidecar_udp_rx_queue_bytes", 0) == 0:
                break
            time.sleep(0.1)
        wall = time.perf_counter() - t0
        cpu = cpu_s(sidecar.pid) - cpu0
        after = scrape(metrics_addr)
    finally:
        sidecar.terminate()
        sidecar.wait(30)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    sent = sent_doc["sent"]
    received = int(delta("mf_sidecar_packets_received_total"))
    kernel_drops = int(delta("mf_sidecar_kernel_drops_total"))
    result = {
        "bench": "sidecar_udp",
        "rate_target_pps": args.rate,
        "sent": sent,
        "sender_pps": round(sent / sent_doc["wall_s"]),
        "received": received,
        "lost": sent - received,
        "kernel_drops": kernel_drops,
        "loss_pct": round(100.0 * (sent - received) / sent, 3) if sent else 0.0,
        "events": int(delta("mf_sidecar_events_total")),
        "parse_errors": int(delta("mf_sidecar_parse_errors_total")),
        "flushes": int(delta("mf_sidecar_flushes_total")),
        "sidecar_cpu_s": round(cpu, 3),
        "cpu_us_per_packet": round(cpu / received * 1e6, 2) if received else None,
        "max_pps_per_core_est": round(received / cpu) if cpu else None,
        "sidecar_cpu_share": round(cpu / wall, 2),  # of one core, over the run incl. draining
        "datagram_cache_hits": int(delta("mf_sidecar_datagram_cache_hits_total")),
        "wall_s": round(wall, 2),
        "rcvbuf_bytes": ready["rcvbuf_bytes"],
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
    }
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
