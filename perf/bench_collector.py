"""CPU cost per point of the collector's hot path, without the network and without Kafka.

Requests are the M workload of perf/bench_e2e.py (1,000 hosts x 10 metrics = 10,000
series, 500 series x 10 samples per request, pre-encoded by perf/lib/requests.py),
native protobuf (what gRPC and HTTP /v1/metrics carry) and remote_write. Each request
goes through what the collector does between "body received" and "messages handed
to the Kafka producer":

    parse  ->  IngestPipeline.accept: tenant, validate, series ids, group by
               partition, PointBatch + SeriesInfo encode

The producer is replaced by one that keeps the messages (their bytes are counted),
so the Kafka produce is excluded; with ``--kafka-port`` a private broker is started on
127.0.0.1 and the same messages are then produced with the collector's KafkaWriter
(acks=all), its CPU time reported on its own line.

Single thread, CPU time (``time.process_time``). The first pass over all series meets
an empty label-set cache ("cold"); later passes are the steady state ("warm"), best of
``--repeat``.

``--e2e`` then runs a real collector process (Kafka on 127.0.0.1, no worker; ports from
``--port-base``: Kafka +92/+93, HTTP +80, gRPC +51) and sends it the same M requests
over 4 gRPC connections with the anchors' chain schedule: collector points per
CPU-second from /proc and the wall maximum; then a steady phase at half that maximum
(another tenant, fresh timestamps) for the client's ack p50/p99. ``--code-dir`` runs the
collector from another checkout (e.g. ``git archive HEAD`` unpacked) for a before/after.

    python perf/bench_collector.py [--hosts 1000] [--points 60] [--repeat 3] [--kafka-port 44092]
    python perf/bench_collector.py --e2e --port-base 44000 [--e2e-points 120] [--steady-seconds 30] [--profile]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metricsflow.collector.kafka_writer import KafkaWriter, Message
from metricsflow.collector.pipeline import IngestPipeline
from metricsflow.config import Settings
from metricsflow.ingest.native import parse_native
from metricsflow.ingest.remote_write import parse_remote_write
from metricsflow.model import ParseResult
from perf.lib import promtext, requests
from perf.lib.procs import proc_cpu, thread_cpu_by_name
from perf.lib.send import Client, send_chains, send_paced
from perf.lib.stack import Stack

PARSERS: dict[str, Callable[[bytes], ParseResult]] = {
    "grpc": parse_native,
    "remote_write": lambda body: parse_remote_write(body, "snappy"),
}


class KeepingWriter:
    """Stands in for KafkaWriter: keeps what would have been produced."""

    ready = True

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def write(self, messages: Sequence[Message]) -> None:
        self.messages.extend(messages)


def run_pass(pipeline: IngestPipeline, parse: Callable[[bytes], ParseResult],
             bodies: list[bytes], protocol: str) -> tuple[float, float, int]:
    """(parse CPU s, pipeline CPU s, points accepted) over all bodies."""
    loop = asyncio.new_event_loop()
    t_parse = t_pipe = 0.0
    accepted = 0
    try:
        for body in bodies:
            t0 = time.process_time()
            parsed = parse(body)
            t1 = time.process_time()
            outcome = loop.run_until_complete(pipeline.accept("default", parsed, protocol))
            t2 = time.process_time()
            t_parse += t1 - t0
            t_pipe += t2 - t1
            accepted += outcome.accepted
            if outcome.rejected:
                raise SystemExit(f"unexpected rejections: {outcome.rejections}")
    finally:
        loop.close()
    return t_parse, t_pipe, accepted


def bench_protocol(protocol: str, args: argparse.Namespace, settings: Settings) -> dict:
    enc = requests.build(protocol, args.hosts, args.points)
    bodies = [it.body for it in enc.items]
    parse = PARSERS[protocol]
    writer = KeepingWriter()
    pipeline = IngestPipeline(settings, writer)  # type: ignore[arg-type]
    cold = run_pass(pipeline, parse, bodies, protocol)
    best: tuple[float, float, int] | None = None
    for _ in range(args.repeat):
        writer.messages.clear()
        warm = run_pass(pipeline, parse, bodies, protocol)
        if best is None or warm[0] + warm[1] < best[0] + best[1]:
            best = warm
    assert best is not None
    n = enc.n_points

    def row(kind: str, t: tuple[float, float, int]) -> dict:
        t_parse, t_pipe, accepted = t
        if accepted != n:
            raise SystemExit(f"{protocol} {kind}: accepted {accepted} of {n} points")
        total = t_parse + t_pipe
        return {"protocol": protocol, "cache": kind, "points": n, "requests": len(bodies),
                "parse_us_per_point": round(t_parse / n * 1e6, 3),
                "pipeline_us_per_point": round(t_pipe / n * 1e6, 3),
                "total_us_per_point": round(total / n * 1e6, 3),
                "points_per_cpu_s": round(n / total)}

    return {"cold": row("cold", cold), "warm": row("warm", best),
            "messages": len(writer.messages), "message_bytes": sum(len(m[3]) for m in writer.messages)}


def bench_produce(messages_per_request: list[list[Message]], points: int, port: int, settings: Settings) -> dict:
    """CPU of producing the pipeline's messages with KafkaWriter (acks=all) to a private broker."""
    from metricsflow.stack import kafka
    from metricsflow.topics import ensure_topics

    with tempfile.TemporaryDirectory(prefix="mf-bench-collector-") as tmp:
        node = kafka.KafkaNode(Path(tmp), port=port, controller_port=port + 1)
        kafka.start(node)
        try:
            s = dataclasses.replace(settings, kafka_bootstrap=node.bootstrap)

            async def main() -> tuple[float, float]:
                await ensure_topics(s, timeout_s=60)
                writer = KafkaWriter(s.kafka_bootstrap, ack_timeout_s=30.0)
                writer.start()
                while not writer.ready:
                    await asyncio.sleep(0.05)
                await writer.write(messages_per_request[0])  # metadata, connections
                c0, w0 = time.process_time(), time.perf_counter()
                for msgs in messages_per_request:
                    await writer.write(msgs)
                c1, w1 = time.process_time(), time.perf_counter()
                await writer.close()
                return c1 - c0, w1 - w0

            cpu_s, wall_s = asyncio.run(main())
        finally:
            kafka.stop(node)
    return {"produce_us_per_point": round(cpu_s / points * 1e6, 3), "produce_points_per_cpu_s": round(points / cpu_s),
            "produce_wall_s": round(wall_s, 3), "requests": len(messages_per_request)}


def start_collector(stack: Stack, code_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A collector process running the code in ``code_dir``; (process, gRPC target)."""
    root = stack.root
    env = stack.env()
    env["PYTHONPATH"] = str(code_dir)
    http_port, grpc_port = stack.collector_http_base, stack.collector_grpc_base
    log = open(root / "collector.log", "ab")  # the child keeps writing to it
    popen = subprocess.Popen([sys.executable, "-m", "metricsflow", "collector", "--http-port", str(http_port),
                              "--grpc-port", str(grpc_port)], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env, cwd=code_dir, start_new_session=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            health = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2).read()
            if b'"kafka_connected":true' in health.replace(b" ", b""):
                break
        except OSError:
            pass
        if popen.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"collector did not start; see {root / 'collector.log'}")
        time.sleep(0.3)
    return popen, f"127.0.0.1:{grpc_port}"


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    ys = sorted(xs)
    return round(ys[min(len(ys) - 1, int(q * len(ys)))], 2)


def bench_e2e(args: argparse.Namespace) -> dict:
    """Bulk send (maximum, points per CPU-s) then a steady phase at half the maximum (ack latency)."""
    base = args.port_base
    stack = Stack(root=Path(args.root), kafka_port=base + 92, collector_http_base=base + 80,
                  collector_grpc_base=base + 51, topic_prefix="mfbc.", app_id="mfbc")
    stack.start_kafka()
    popen = None
    try:
        popen, target = start_collector(stack, Path(args.code_dir).resolve())
        pid = popen.pid
        enc = requests.build("grpc", args.hosts, args.e2e_points)
        profiler = None
        if args.profile:
            out = Path(args.root) / "collector.folded.txt"
            # C frames need the process stopped while its stack is read (py-spy refuses --nonblocking).
            how = ["--native"] if args.profile_native else ["--nonblocking"]
            profiler = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--rate", "200",
                                         *how, "--format", "raw", "-o", str(out), "--pid", str(pid)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)

        async def bulk() -> tuple[object, float, float]:
            async with Client("grpc", "", target, args.concurrency) as client:
                c0, w0 = proc_cpu(pid), time.perf_counter()
                stats = await send_chains(client, enc.items, enc.n_windows, enc.n_groups, lag=4)
                return stats, proc_cpu(pid) - c0, time.perf_counter() - w0

        metrics_url = f"http://127.0.0.1:{stack.collector_http_base}/metrics"
        scraped0, threads0 = promtext.scrape(metrics_url), thread_cpu_by_name(pid)
        bulk_stats, bulk_cpu, bulk_wall = asyncio.run(bulk())
        scraped1, threads1 = promtext.scrape(metrics_url), thread_cpu_by_name(pid)
        # Where the collector's CPU went: by thread (gRPC's poller and Kafka's are not the event
        # loop's) and in Python's cyclic GC (its pauses are timed by the collector itself).
        bulk_threads = {name: round(cpu - threads0.get(name, 0.0), 2) for name, cpu in threads1.items()
                        if cpu - threads0.get(name, 0.0) >= 0.01}
        gc_pause_s = round(promtext.total(scraped1, "mf_collector_gc_pause_seconds_sum")
                           - promtext.total(scraped0, "mf_collector_gc_pause_seconds_sum"), 3)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(60)
        max_pps = bulk_stats.accepted / bulk_wall
        rate = args.steady_rate or max_pps / 2
        steady_points = max(10, int(rate * args.steady_seconds / (args.hosts * 10)) + 10)
        steady_enc = requests.build("grpc", args.hosts, steady_points)

        async def steady() -> tuple[object, float, float]:
            async with Client("grpc", "", target, args.concurrency) as client:
                c0, w0 = proc_cpu(pid), time.perf_counter()
                stats = await send_paced(client, steady_enc.items, rate, tenant="steady",
                                         stop_at=time.perf_counter() + args.steady_seconds)
                return stats, proc_cpu(pid) - c0, time.perf_counter() - w0

        steady_stats, steady_cpu, steady_wall = asyncio.run(steady())
    finally:
        if popen is not None:
            popen.terminate()  # SIGTERM: the collector drains and exits
            try:
                popen.wait(30)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
        stack.stop_kafka()
    return {
        "code_dir": str(Path(args.code_dir).resolve()),
        "bulk_points": bulk_stats.accepted, "bulk_errors": bulk_stats.errors,
        "bulk_points_per_s_wall": round(max_pps), "bulk_points_per_cpu_s": round(bulk_stats.accepted / bulk_cpu),
        "bulk_ack_p50_ms": percentile(bulk_stats.ack_ms, 0.5), "bulk_ack_p99_ms": percentile(bulk_stats.ack_ms, 0.99),
        "bulk_cpu_s": round(bulk_cpu, 2), "bulk_cpu_s_by_thread": bulk_threads, "bulk_gc_pause_s": gc_pause_s,
        "steady_rate_pps": round(rate), "steady_points": steady_stats.accepted, "steady_errors": steady_stats.errors,
        "steady_points_per_s_wall": round(steady_stats.accepted / steady_wall),
        "steady_points_per_cpu_s": round(steady_stats.accepted / steady_cpu) if steady_cpu else None,
        "steady_ack_p50_ms": percentile(steady_stats.ack_ms, 0.5),
        "steady_ack_p99_ms": percentile(steady_stats.ack_ms, 0.99),
        # Without the first window (new series for the steady tenant: checked, hashed, announced on mf.series).
        "steady_ack_p99_ms_known_series": percentile(steady_stats.ack_ms[steady_enc.n_groups:], 0.99),
        "profile": str(Path(args.root) / "collector.folded.txt") if args.profile else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000, help="1000 = the M workload (10,000 series)")
    ap.add_argument("--points", type=int, default=60, help="samples per series (10 per request)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--protocols", default="grpc,remote_write")
    ap.add_argument("--kafka-port", type=int, default=0,
                    help="start a private broker on this port (and +1 for its controller) and time the produce")
    ap.add_argument("--e2e", action="store_true", help="only the end-to-end run against a collector process")
    ap.add_argument("--port-base", type=int, default=44000)
    ap.add_argument("--e2e-points", type=int, default=120, help="samples per series of the bulk send")
    ap.add_argument("--steady-seconds", type=float, default=30.0)
    ap.add_argument("--steady-rate", type=float, default=0.0, help="points/s (default: half the bulk maximum)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--code-dir", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--root", default="/tmp/mfperf/bench-collector")
    ap.add_argument("--profile", action="store_true", help="py-spy the collector during the bulk send")
    ap.add_argument("--profile-native", action="store_true",
                    help="with --profile: C frames too (uvloop, gRPC's core, libc), not only Python's")
    args = ap.parse_args()
    settings = Settings()
    if args.e2e:
        res = bench_e2e(args)
        print(f"collector e2e (gRPC, {args.concurrency} connections, Kafka acks=all, no worker): "
              f"bulk {res['bulk_points']:,} points, {res['bulk_points_per_s_wall']:,} points/s wall, "
              f"{res['bulk_points_per_cpu_s']:,} points/CPU-s, ack p50/p99 {res['bulk_ack_p50_ms']}/"
              f"{res['bulk_ack_p99_ms']} ms; steady at {res['steady_rate_pps']:,} points/s: "
              f"ack p50/p99 {res['steady_ack_p50_ms']}/{res['steady_ack_p99_ms']} ms "
              f"(p99 {res['steady_ack_p99_ms_known_series']} ms after the first window), "
              f"{res['steady_points_per_cpu_s']} points/CPU-s")
        print(json.dumps({"bench": "collector_e2e", "hosts": args.hosts, "points": args.e2e_points, **res}))
        return 0
    results = []
    native_messages: list[list[Message]] = []
    for protocol in args.protocols.split(","):
        results.append(bench_protocol(protocol, args, settings))
    print(f"collector hot path: {args.hosts * 10:,} series x {args.points} samples, "
          f"500 x 10 per request; CPU time, warm = best of {args.repeat}")
    print(f"{'protocol':<14} {'cache':<6} {'points':>8} {'parse us/pt':>12} {'pipeline us/pt':>15} "
          f"{'total us/pt':>12} {'points/CPU-s':>13}")
    for res in results:
        for kind in ("cold", "warm"):
            r = res[kind]
            print(f"{r['protocol']:<14} {kind:<6} {r['points']:>8} {r['parse_us_per_point']:>12.3f} "
                  f"{r['pipeline_us_per_point']:>15.3f} {r['total_us_per_point']:>12.3f} {r['points_per_cpu_s']:>13,}")
    produce = None
    if args.kafka_port:
        # Messages of each native request, produced in request order like the collector does.
        enc = requests.build("grpc", args.hosts, args.points)
        writer = KeepingWriter()
        pipeline = IngestPipeline(settings, writer)  # type: ignore[arg-type]
        loop = asyncio.new_event_loop()
        for it in enc.items:
            writer.messages = []
            loop.run_until_complete(pipeline.accept("default", parse_native(it.body), "grpc"))
            native_messages.append(writer.messages)
        loop.close()
        produce = bench_produce(native_messages, enc.n_points, args.kafka_port, settings)
        print(f"kafka produce (KafkaWriter, acks=all, grpc messages): {produce['produce_us_per_point']:.3f} us/pt, "
              f"{produce['produce_points_per_cpu_s']:,} points/CPU-s")
    print(json.dumps({"bench": "collector_hot_path", "hosts": args.hosts, "points": args.points,
                      "python": platform.python_version(), "results": results, "produce": produce}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
