"""``metricsflow collector``: HTTP + gRPC ingest in one process, until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal

from aiohttp import web

from metricsflow import kafka_zstd
from metricsflow.collector import metrics
from metricsflow.collector.grpc_server import build_server
from metricsflow.collector.http_app import build_app
from metricsflow.collector.kafka_writer import KafkaWriter
from metricsflow.collector.pipeline import IngestPipeline
from metricsflow.collector.routes import http_routes
from metricsflow.config import Settings
from metricsflow.heap import freeze_long_lived, keep_freed_memory, time_collections
from metricsflow.topics import ensure_topics

log = logging.getLogger("metricsflow.collector")


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    kafka_zstd.use_level(settings.kafka_zstd_level)
    writer = KafkaWriter(settings.kafka_bootstrap, settings.kafka_ack_timeout_s, settings.retry_after_s,
                         compression=settings.kafka_compression, linger_ms=settings.collector_producer_linger_ms)
    writer.start()
    # Topics are created by whoever starts first; a collector without Kafka still starts (and answers 503).
    topics = asyncio.create_task(_ensure_topics_forever(settings))
    pipeline = IngestPipeline(settings, writer)
    app = build_app(pipeline, lambda: writer.ready, settings.max_body_bytes, http_routes())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.collector_host, settings.collector_http_port, backlog=1024)
    await site.start()
    grpc_server = build_server(pipeline, settings.collector_host, settings.collector_grpc_port,
                               settings.max_body_bytes)
    await grpc_server.start()
    _settle_gc()
    log.info("collector listening: http://%s:%d grpc %s:%d", settings.collector_host, settings.collector_http_port,
             settings.collector_host, settings.collector_grpc_port)
    print(f"collector ready http=http://{settings.collector_host}:{settings.collector_http_port} "
          f"grpc={settings.collector_host}:{settings.collector_grpc_port}", flush=True)
    try:
        await stop.wait()
    finally:
        topics.cancel()
        await grpc_server.stop(grace=2)
        await runner.cleanup()
        await writer.close()


def _settle_gc() -> None:
    """Keep the garbage collector off the ack path.

    Every request allocates a dict and a few arrays per series, so with the default
    gen0 threshold of 700 the collector ran ~1 young collection per 5,000 points and
    a full one every ~600,000 that walked every module object too (38 ms single, up to
    150 ms on a busy 2-core box, in perf/bench_collector.py). Freezing what startup
    created takes it out of those walks; a larger gen0 threshold makes young
    collections rarer (380 → 16 per 1.8 M points) at a few MB of extra garbage.
    """
    freeze_long_lived()
    gc.set_threshold(10_000, 10, 10)
    time_collections(lambda generation, seconds: metrics.GC_PAUSE.labels(str(generation)).observe(seconds))


async def _ensure_topics_forever(settings: Settings) -> None:
    while True:
        try:
            await ensure_topics(settings, timeout_s=10)
            return
        except Exception as exc:  # Kafka may be down; keep trying without failing the collector
            log.warning("cannot ensure topics yet: %s", exc)
            await asyncio.sleep(2)


def run(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    keep_freed_memory()  # every request allocates and frees its columns
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(main())
