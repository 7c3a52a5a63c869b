"""Warm a freshly started Kafka broker's JIT before a benchmark measures anything beside it.

A new broker compiles its produce, fetch and group paths while the first load runs: in a
``bench_e2e.py --size M`` window its C2 and C1 compiler threads took 4.15 of the JVM's 5.64
CPU-seconds (request handling 2.95), on the two cores our collector and worker share with it.
A broker in service compiled them long ago. This drives the same paths (acks=all produces of
zstd batches of PointBatches, fetches, a consumer group's commits) on a scratch topic until the
compiler threads go quiet, so the measured window sees the broker as users run it. What the JIT
still took during the window is reported beside it (``kafka_cpu_s_by_thread``).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from metricsflow import kafka_zstd, pointbatch
from perf.lib import procs

JIT_THREADS = ("C2 CompilerThre", "C1 CompilerThre")


def _jit_cpu(pid: int) -> float:
    kinds = procs.thread_cpu_by_kind(pid)
    return sum(kinds.get(name, 0.0) for name in JIT_THREADS)


def _batches(n: int, series: int = 64, points: int = 20) -> list[bytes]:
    """``n`` PointBatches shaped like a collector's (runs of a series' points, random-walk values)."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        sids = rng.integers(1, 1 << 62, series, dtype=np.uint64)
        lengths = np.full(series, points, dtype=np.uint32)
        ts = np.tile(1_700_000_000_000 + 10_000 * np.arange(points, dtype=np.int64), series) + i
        vals = np.round(rng.uniform(0, 100, series * points), 2)
        out.extend(pointbatch.encode_columns(sids, lengths, ts, vals, series * points, 0))
    return out


async def warm(bootstrap: str, pid: int, topic: str, max_s: float = 120.0, min_s: float = 15.0,
               window_s: float = 3.0, quiet_cores: float = 0.05, zstd_level: int = -1,
               progress: bool = True) -> dict[str, float]:
    """Produce and consume on ``topic`` until the broker's compiler threads use under ``quiet_cores``
    over ``window_s`` (at least ``min_s``, at most ``max_s``); the JIT's CPU-seconds and the time taken."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    kafka_zstd.use_level(zstd_level)
    payloads = _batches(32)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="zstd",
                                linger_ms=2, max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{topic}-group",
                                auto_offset_reset="earliest", enable_auto_commit=True, auto_commit_interval_ms=500)
    await producer.start()
    await consumer.start()
    started = time.monotonic()
    jit0 = last_jit = _jit_cpu(pid)
    last_at = started
    sent = consumed = 0
    try:
        while True:
            sends = [await producer.send(topic, payloads[(sent + k) % len(payloads)], partition=k % 8)
                     for k in range(16)]
            await asyncio.gather(*sends)
            sent += len(sends)
            got = await consumer.getmany(timeout_ms=5, max_records=64)
            consumed += sum(len(v) for v in got.values())
            now = time.monotonic()
            if now - last_at >= window_s:
                jit = _jit_cpu(pid)
                rate = (jit - last_jit) / (now - last_at)
                if progress:
                    print(f"[kafka warm-up] {now - started:5.1f} s: {sent:,} batches sent, {consumed:,} read, "
                          f"JIT {rate:.2f} cores", flush=True)
                if (now - started >= min_s and rate < quiet_cores) or now - started >= max_s:
                    break
                last_jit, last_at = jit, now
    finally:
        await consumer.stop()
        await producer.stop()
    return {"seconds": round(time.monotonic() - started, 1), "jit_cpu_s": round(_jit_cpu(pid) - jit0, 2),
            "batches_sent": sent, "batches_read": consumed}
