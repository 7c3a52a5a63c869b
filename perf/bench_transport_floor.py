"""What receiving the load costs before any of our code runs: the transport's floor.

A server process that only receives and acknowledges — gRPC ``metricsflow.v1.Ingest/Write``
(grpc.aio on uvloop, bytes in, an empty WriteResponse out, as the collector is set up), the
same requests on one ``WriteStreamAcked`` stream per connection (``grpc_stream``), or
aiohttp ``POST /v1/metrics`` answering 202 — gets the same pre-encoded requests as
perf/bench_e2e.py (500 series × 10 samples each, 4 connections, the anchors' chain
schedule). The ``parse`` handler also runs ``parse_native`` on each body (the collector's
first step), so the parser's share shows apart from the transport's. The ``noop`` server's
CPU (utime + stime from /proc, idle subtracted) is the part of the collector's figure no
change to metricsflow's own code can remove.

``--kafka-port P`` also measures the Kafka clients' floor on a private broker (P and P+1):
the collector's pipeline turns the same requests into their mf.points / mf.series messages
in memory first, then (1) the collector's ``KafkaWriter`` (aiokafka, acks=all, idempotent,
zstd at each of ``--zstd-levels``, on topics of its own) produces them two requests per write
with four writes in flight, as the collector's group commit does under this load, and (2) a
bare aiokafka consumer reads mf.points back and runs only ``decode_batch`` on each record,
the worker's first step: the CPU of this process for each, on uvloop. Neither includes
Faust, the worker's head or the broker.

    python perf/bench_transport_floor.py [--size M] [--protocols grpc,grpc_stream,http] [--handlers noop,parse]
                                         [--kafka-port 47392 [--zstd-levels 3,1] [--kafka-rounds 3]]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from perf.lib import procs  # noqa: E402
from perf.lib.requests import SIZES, build  # noqa: E402
from perf.lib.send import Client, send_chains  # noqa: E402

GRPC_SERVICE = "metricsflow.v1.Ingest"


def serve(protocol: str, handler: str, port: int) -> None:
    """The receiving end, in this process until SIGTERM."""
    import uvloop

    from metricsflow.ingest.native import parse_native
    from metricsflow.pb import metricsflow_pb2 as pb

    uvloop.install()
    parse = handler == "parse"
    empty = pb.WriteResponse().SerializeToString()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        if protocol in ("grpc", "grpc_stream"):  # one server for both: the client picks the method
            import grpc
            from grpc import aio

            async def write(body: bytes, context: object) -> bytes:
                if parse:
                    parse_native(body)
                return empty

            async def write_stream_acked(bodies, context: object):
                async for body in bodies:
                    if parse:
                        parse_native(body)
                    yield empty

            handlers = {"Write": grpc.unary_unary_rpc_method_handler(
                write, request_deserializer=lambda b: b, response_serializer=lambda b: b),
                "WriteStreamAcked": grpc.stream_stream_rpc_method_handler(
                write_stream_acked, request_deserializer=lambda b: b, response_serializer=lambda b: b)}
            server = aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(GRPC_SERVICE, handlers),))
            server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            print("ready", flush=True)
            await stop.wait()
            await server.stop(grace=1)
        else:
            from aiohttp import web

            async def metrics(request: web.Request) -> web.Response:
                body = await request.read()
                if parse:
                    parse_native(body)
                return web.Response(status=202)

            app = web.Application(client_max_size=64 << 20)
            app.router.add_post("/v1/metrics", metrics)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
            print("ready", flush=True)
            await stop.wait()
            await runner.cleanup()

    asyncio.run(main())


def measure(protocol: str, handler: str, port: int, enc, concurrency: int) -> dict[str, object]:
    server = subprocess.Popen([sys.executable, __file__, "--serve", protocol, "--handler", handler,
                               "--port", str(port)], stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise SystemExit(f"{protocol} server did not start")
        idle = procs.idle_rates({"server": server.pid}, 2.0)["server"]

        async def send():
            async with Client(protocol, f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", concurrency) as c:
                return await send_chains(c, enc.items, enc.n_windows, enc.n_groups)

        cpu0, t0 = procs.proc_cpu(server.pid), time.perf_counter()
        st = asyncio.run(send())
        wall = time.perf_counter() - t0
        cpu = procs.proc_cpu(server.pid) - cpu0 - idle * wall
    finally:
        server.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(10)
        if server.poll() is None:
            server.kill()
            server.wait()
    if st.errors:
        raise SystemExit(f"{protocol}/{handler}: {st.errors} errors, e.g. {st.err_samples}")
    return {"protocol": protocol, "handler": handler, "points": st.accepted, "requests": st.requests,
            "wall_s": round(wall, 3), "server_cpu_s": round(cpu, 3),
            "points_per_cpu_s": round(st.accepted / max(cpu, 1e-9)),
            "server_us_per_request": round(cpu / st.requests * 1e6, 1)}


def kafka_floor(enc, port: int, levels: list[int], rounds: int) -> list[dict[str, object]]:
    """The Kafka clients' CPU for the load's messages: produce as the collector does, consume + decode;
    at each zstd level in turn, ``rounds`` times."""
    import dataclasses
    import tempfile

    import uvloop
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from metricsflow import kafka_zstd
    from metricsflow.collector.kafka_writer import KafkaWriter
    from metricsflow.collector.pipeline import IngestPipeline
    from metricsflow.config import load_settings
    from metricsflow.errors import BackendUnavailable
    from metricsflow.ingest.native import parse_native
    from metricsflow.pointbatch import decode_batch
    from metricsflow.stack import kafka
    from metricsflow.topics import ensure_topics

    writes: list[list] = []

    class Keeping:
        ready = True

        async def write(self, messages) -> None:
            writes.append(list(messages))

    # Two requests per write, merged into one message per partition as the collector's group
    # commit merges the requests that wait for a write (1.96 per write in perf/bench_e2e.py's M run).
    settings = dataclasses.replace(load_settings(), collector_linger_ms=60_000,
                                   collector_linger_points=2 * enc.items[0].points)
    pipeline = IngestPipeline(settings, Keeping())  # type: ignore[arg-type]

    async def build_messages() -> None:
        for lo in range(0, len(enc.items), 2):
            await asyncio.gather(*(pipeline.accept("default", parse_native(it.body), "grpc")
                                   for it in enc.items[lo:lo + 2]))

    print(f"kafka    building the mf.points messages of {len(enc.items):,} requests ...", flush=True)
    asyncio.run(build_messages())
    points_messages = sum(1 for w in writes for m in w if m[0] == settings.topic("points"))
    uvloop.install()
    with tempfile.TemporaryDirectory(prefix="mf-floor-") as tmp:
        node = kafka.KafkaNode(Path(tmp), port=port, controller_port=port + 1)
        kafka.start(node)
        runs: list[dict[str, object]] = []
        try:
            async def produce(s) -> float:
                kafka_zstd.use_level(s.kafka_zstd_level)  # as the collector's serve() does
                await ensure_topics(s, timeout_s=60)
                writer = KafkaWriter(s.kafka_bootstrap, 60.0, compression=s.kafka_compression)
                writer.start()
                while not writer.ready:
                    await asyncio.sleep(0.05)
                # Metadata, connections, every mf.points leader (empty values, which the consumer skips).
                # mf.series is compacted: it takes no record without a key, so its leaders are met by the load.
                warm = [(s.topic("points"), p, None, b"") for p in range(s.partitions)]
                deadline = time.monotonic() + 30
                while True:  # new topics: their leaders may not be known yet
                    try:
                        await writer.write(warm)
                        break
                    except BackendUnavailable:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.2)
                in_flight = asyncio.Semaphore(4)
                renamed = {settings.topic(t): s.topic(t) for t in ("points", "series")}
                moved = [[(renamed.get(t, t), *rest) for t, *rest in w] for w in writes]

                async def one(messages) -> None:
                    async with in_flight:
                        await writer.write(messages)

                c0 = time.process_time()
                await asyncio.gather(*(one(w) for w in moved))
                cpu = time.process_time() - c0
                await writer.close()
                return cpu

            async def consume(s) -> tuple[float, int]:
                consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False,
                                            auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20)
                await consumer.start()
                parts = [TopicPartition(s.topic("points"), p) for p in range(s.partitions)]
                consumer.assign(parts)
                await consumer.seek_to_beginning(*parts)
                ends = await consumer.end_offsets(parts)
                points, left = 0, {tp: ends[tp] for tp in parts if ends[tp]}
                c0 = time.process_time()
                while left:
                    batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
                    for tp, records in batches.items():
                        for record in records:
                            if record.value:
                                points += int(decode_batch(record.value).timestamps_ms.size)
                        if records and records[-1].offset + 1 >= left.get(tp, 0):
                            left.pop(tp, None)
                cpu = time.process_time() - c0
                await consumer.stop()
                return cpu, points

            for r in range(rounds):
                for level in levels:
                    # Each level's messages on topics of their own: the consumer reads exactly them.
                    s = dataclasses.replace(settings, kafka_bootstrap=node.bootstrap, kafka_zstd_level=level,
                                            topic_prefix=f"floor{r}l{level}.".replace("-", "m"))
                    print(f"kafka    producing {len(writes)} writes on {node.bootstrap}, zstd level {level} ...",
                          flush=True)
                    produce_cpu = asyncio.run(produce(s))
                    consume_cpu, consumed = asyncio.run(consume(s))
                    if consumed != enc.n_points:
                        raise SystemExit(f"consumed {consumed:,} points of {enc.n_points:,}")
                    topic_bytes = sum(f.stat().st_size for f in Path(tmp).rglob(f"{s.topic('points')}-*/*.log"))
                    runs.append({"zstd_level": level, "round": r, "writes": len(writes),
                                 "points_messages": points_messages,
                                 "produce_cpu_s": round(produce_cpu, 3), "consume_decode_cpu_s": round(consume_cpu, 3),
                                 "produce_us_per_message": round(produce_cpu / points_messages * 1e6, 1),
                                 "consume_us_per_message": round(consume_cpu / points_messages * 1e6, 1),
                                 "points_bytes_per_point": round(topic_bytes / enc.n_points, 3)})
                    print(f"kafka    zstd level {level:>3} round {r}: produce {produce_cpu:.3f} CPU-s, consume + "
                          f"decode {consume_cpu:.3f} CPU-s, {topic_bytes / enc.n_points:.3f} B per point", flush=True)
        finally:
            kafka.stop(node)
    return runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="M")
    ap.add_argument("--protocols", default="grpc,grpc_stream,http",
                    help="grpc: a unary Write per request; grpc_stream: one WriteStreamAcked per connection")
    ap.add_argument("--handlers", default="noop,parse")
    ap.add_argument("--rounds", type=int, default=2, help="each (protocol, handler) this many times, interleaved")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--port", type=int, default=47300)
    ap.add_argument("--kafka-port", type=int, default=0, help="also the Kafka clients' floor, on a private broker")
    ap.add_argument("--zstd-levels", default="1",
                    help="with --kafka-port: the producer's zstd levels to compare, e.g. 3,1 (aiokafka's own is 3)")
    ap.add_argument("--kafka-rounds", type=int, default=1,
                    help="with --kafka-port: each level this many times, interleaved")
    ap.add_argument("--serve", choices=("grpc", "grpc_stream", "http"), help=argparse.SUPPRESS)
    ap.add_argument("--handler", default="noop", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(a.serve, a.handler, a.port)
        return 0
    hosts, points = SIZES[a.size]
    runs: list[dict[str, object]] = []
    for protocol in a.protocols.split(","):
        enc = build(protocol, hosts, points)
        for r in range(a.rounds):
            for handler in a.handlers.split(","):
                run = measure(protocol, handler, a.port, enc, a.concurrency)
                run["round"] = r
                runs.append(run)
                print(f"{protocol:11} {handler:6} round {r}: {run['server_cpu_s']:.2f} CPU-s, "
                      f"{run['points_per_cpu_s']:>11,} points per CPU-s, {run['server_us_per_request']} µs "
                      f"per request, wall {run['wall_s']:.2f} s", flush=True)
    print("-" * 78)
    print(f"{'protocol':12}{'handler':8}{'server CPU-s (best)':>22}{'points per CPU-s':>20}{'µs per request':>16}")
    best: dict[tuple[str, str], dict[str, object]] = {}
    for run in runs:
        key = (str(run["protocol"]), str(run["handler"]))
        if key not in best or run["server_cpu_s"] < best[key]["server_cpu_s"]:  # type: ignore[operator]
            best[key] = run
    for (protocol, handler), run in best.items():
        print(f"{protocol:12}{handler:8}{run['server_cpu_s']:>22}{run['points_per_cpu_s']:>20,}"
              f"{run['server_us_per_request']:>16}")
    kafka_runs = None
    if a.kafka_port:
        levels = [int(v) for v in a.zstd_levels.split(",")]
        kafka_runs = kafka_floor(build("grpc", hosts, points), a.kafka_port, levels, a.kafka_rounds)
        for level in levels:
            of_level = [r for r in kafka_runs if r["zstd_level"] == level]
            produce = min(of_level, key=lambda r: r["produce_cpu_s"])
            consume = min(of_level, key=lambda r: r["consume_decode_cpu_s"])
            print(f"kafka    zstd level {level:>3}: produce (KafkaWriter) {produce['produce_cpu_s']:>7} CPU-s, "
                  f"{produce['produce_us_per_message']} µs per mf.points message ({produce['points_messages']:,}); "
                  f"consume + decode_batch {consume['consume_decode_cpu_s']} CPU-s, "
                  f"{consume['consume_us_per_message']} µs per message; {produce['points_bytes_per_point']} B per "
                  f"point on the broker (best of {len(of_level)})")
    print("-" * 78)
    print(json.dumps({"bench": "transport_floor", "size": a.size, "machine": {
        "nproc": os.cpu_count(), "python": platform.python_version()}, "cmd": "python " + " ".join(sys.argv),
        "runs": runs, "kafka": kafka_runs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
