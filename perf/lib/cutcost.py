"""Per-block cost of the worker's head cut, piece by piece (single thread, CPU time).

    python -m perf.lib.cutcost [--points 720] [--blocks 300] [--cut-points 30]

For blocks of the TSBS-like data (2 decimals, 10 s apart) it times what a cut did
for one (series, block) before segments (``rewrite_*``: chunk decode + merge +
re-encode, rollup compute and encode for the 1m and 1h tiers, on every cut), and
what ``tables.storage.WorkerStorage`` does now: per series-cut one segment of
the cut's ``--cut-points`` new points (raw decimal, as the worker writes them, encoded
for all series in one pass, ``tables.segments.encode_runs``), and once per block at seal the fold of
points/cut-points segments into one chunk plus both rollup tiers. Prints one JSON
line (µs per block, per series-cut and per point). Codec and numpy work only: the
RocksDB put and the changelog send per value come on top (one per segment, three
per seal, one tombstone per folded segment). Used to explain the e2e profile and
to size the capacity model.

    python -m perf.lib.cutcost --live [--series 5000] [--cuts 6]

measures the same end to end on a private Kafka + worker (ports 29192/26166, data
under /tmp/mfperf/cutlive): PointBatches go straight to mf.points in the real-time
shape (every series one point per round, 30 rounds per 15 s cut, i.e. a 300 s cut
at 10 s scrape sped up 20x) after a prefill of half a block, and the worker's
utime+stime over ``--cuts`` cuts, idle rate subtracted, is divided by the series-cuts
it ran (mf_worker_blocks_written), measured from idle to idle. That figure includes the per-point path of the
30 points and the RocksDB puts and changelog messages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np

from metricsflow import codecs, rollup
from metricsflow.config import Settings
from metricsflow.samples import merge
from metricsflow.workload import RandomWalk
from tables import segments


def _cpu(fn, reps: int) -> float:
    t0 = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=720)
    ap.add_argument("--blocks", type=int, default=300)
    ap.add_argument("--cut-points", type=int, default=30, help="new points per series per cut (300 s at 10 s)")
    ap.add_argument("--live", action="store_true", help="end to end on a private Kafka + worker")
    ap.add_argument("--series", type=int, default=5000)
    ap.add_argument("--cuts", type=int, default=6)
    ap.add_argument("--message-points", type=int, default=Settings().max_points_per_message,
                    help="live: at most this many points per mf.points message (a round of a partition is split)")
    ap.add_argument("--compression", default=Settings().kafka_compression, choices=("none", "gzip", "lz4", "zstd"),
                    help="live: how mf.points batches are compressed (the collector's MF_KAFKA_COMPRESSION)")
    ap.add_argument("--worker-env", action="append", default=[], metavar="MF_X=V",
                    help="live: a setting for the worker (repeatable), e.g. MF_FETCH_FILL_MS=50")
    a = ap.parse_args()
    if a.live:
        print(json.dumps(_live(a.series, a.cuts, a.cut_points, a.message_points, a.compression, a.worker_env)))
        return
    n = a.points
    vals = RandomWalk(a.blocks, 7).rounds(n).T.copy()  # (blocks, n)
    ts = 1_795_000_000_000 - 1_795_000_000_000 % 7_200_000 + 10_000 * np.arange(n, dtype=np.int64)
    blocks = [(ts, vals[i]) for i in range(a.blocks)]
    encoded = [codecs.encode(t, v) for t, v in blocks]
    half = n // 2
    out: dict[str, float] = {}

    def each(fn):
        return _cpu(lambda: [fn(i) for i in range(a.blocks)], 1) / a.blocks * 1e6

    out["chunk_encode_us"] = each(lambda i: codecs.encode(*blocks[i]))
    out["chunk_decode_us"] = each(lambda i: codecs.decode(encoded[i]))
    old = [codecs.encode(ts[:half], vals[i][:half]) for i in range(a.blocks)]
    out["chunk_decode_merge_reencode_us"] = each(
        lambda i: codecs.encode(*merge(*codecs.decode(old[i]), ts[half:], vals[i][half:])))
    r1m = [rollup.compute(t, v, rollup.TIERS_MS["1m"]) for t, v in blocks]
    r1h = [rollup.compute(t, v, rollup.TIERS_MS["1h"]) for t, v in blocks]
    out["rollup_1m_compute_us"] = each(lambda i: rollup.compute(*blocks[i], rollup.TIERS_MS["1m"]))
    out["rollup_1h_compute_us"] = each(lambda i: rollup.compute(*blocks[i], rollup.TIERS_MS["1h"]))
    out["rollup_1m_encode_us"] = each(lambda i: rollup.encode(r1m[i]))
    out["rollup_1h_encode_us"] = each(lambda i: rollup.encode(r1h[i]))
    out["rollup_1m_bytes"] = float(np.mean([len(rollup.encode(r)) for r in r1m]))
    out["rollup_1h_bytes"] = float(np.mean([len(rollup.encode(r)) for r in r1h]))
    out["chunk_bytes"] = float(np.mean([len(e) for e in encoded]))
    out["cut_per_block_us"] = (out["chunk_decode_merge_reencode_us"] + out["rollup_1m_compute_us"]
                               + out["rollup_1h_compute_us"] + out["rollup_1m_encode_us"] + out["rollup_1h_encode_us"])
    out["rollup_share_of_cut"] = (out["rollup_1m_compute_us"] + out["rollup_1h_compute_us"] + out["rollup_1m_encode_us"]
                                  + out["rollup_1h_encode_us"]) / out["cut_per_block_us"]
    out.update(_segment_costs(ts, vals, a.cut_points))
    out = {k: round(v, 3 if v < 10 else 1) for k, v in out.items()}
    out.update(points_per_block=n, blocks=a.blocks, cut_points=a.cut_points)
    print(json.dumps(out))


def _segment_costs(ts: np.ndarray, vals: np.ndarray, cut_points: int) -> dict[str, float]:
    """Per series-cut and per seal cost of the segment design, over all ``vals`` rows as series."""
    n_series, n = vals.shape
    cuts = max(1, n // cut_points)
    # One cut's head: every series' next cut_points samples, sorted by (series, ts) as Head.view() gives them.
    head_ts = np.tile(ts[:cut_points], n_series)
    head_vals = vals[:, :cut_points].reshape(-1).copy()
    bounds = list(range(0, head_ts.size + 1, cut_points))
    seg_us = _cpu(lambda: segments.encode_runs(head_ts, head_vals, bounds, True), 5) / n_series * 1e6
    seg_bytes = float(np.mean([len(b) for b in segments.encode_runs(head_ts, head_vals, bounds, True)]))
    cut_slices = [slice(c * cut_points, (c + 1) * cut_points) for c in range(cuts)]
    stored = [[segments.encode_runs(ts[s], vals[i][s], [0, cut_points], True)[0] for s in cut_slices]
              for i in range(n_series)]

    def seal(i: int) -> None:
        t, v = segments.fold([codecs.decode(b) for b in stored[i]])
        codecs.encode(t, v)
        for tier in ("1m", "1h"):
            rollup.encode(rollup.compute(t, v, rollup.TIERS_MS[tier]))

    seal_us = _cpu(lambda: [seal(i) for i in range(n_series)], 1) / n_series * 1e6
    return {"segment_encode_us_per_series_cut": seg_us, "segment_bytes": seg_bytes,
            "seal_per_block_us": seal_us, "segments_per_block": float(cuts),
            "segment_cut_amortised_us_per_series_cut": seg_us + seal_us / cuts}


def _live(n_series: int, cuts: int, cut_points: int, message_points: int, compression: str = "zstd",
          worker_env: list[str] | None = None, cut_interval_s: float = 15.0) -> dict[str, float]:
    from perf.lib import procs, promtext
    from perf.lib.stack import Stack, env_settings

    stack = Stack(root=Path("/tmp/mfperf/cutlive"), kafka_port=29192, worker_web_base=26166,
                  cut_interval_s=cut_interval_s, extra_env=env_settings(worker_env or []))
    try:
        stack.start_kafka()
        worker = stack.start_worker()
        return asyncio.run(_live_send(stack, worker, n_series, cuts, cut_points, message_points, compression,
                                      cut_interval_s, procs, promtext))
    finally:
        stack.stop_all()


async def _live_send(stack, worker, n_series, cuts, cut_points, message_points, compression, cut_interval_s,
                     procs, promtext) -> dict[str, float]:
    from aiokafka import AIOKafkaProducer

    from metricsflow.pointbatch import encode_batches
    from perf.lib import rocks

    parts = stack.partitions
    sids = (np.arange(1, n_series + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    by_part = [sids[sids % np.uint64(parts) == p] for p in range(parts)]
    step_ms = 10_000
    now_ms = int(time.time() * 1000)
    block_ms = 7_200_000
    # Half a block before the measured phase, as in steady state the open block is on average half full.
    t0 = now_ms // block_ms * block_ms + block_ms // 2 - 360 * step_ms
    metrics_url = worker.url + "/metrics"
    producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{stack.kafka_port}", acks="all",
                                max_request_size=8 << 20,
                                compression_type=None if compression == "none" else compression)
    await producer.start()
    sent = messages = 0

    async def send_rounds(first: int, count: int) -> None:
        nonlocal sent, messages
        ts = t0 + step_ms * np.arange(first, first + count, dtype=np.int64)
        for p, ps in enumerate(by_part):
            runs = [(int(sid), ts, np.round(np.sin(ts / 1e6 + i), 2)) for i, sid in enumerate(ps.tolist())]
            for msg in encode_batches(runs, message_points, int(time.time() * 1000)):
                await producer.send_and_wait(stack.topic_prefix + "points", msg, partition=p)
                messages += 1
        sent += n_series * count

    def consumed() -> float:
        return promtext.total(promtext.scrape(metrics_url), "mf_worker_points_consumed_total")

    def written() -> float:
        return promtext.total(promtext.scrape(metrics_url), "mf_worker_blocks_written_total")

    async def settle() -> None:
        while consumed() < sent:
            await asyncio.sleep(0.5)
        while promtext.total(promtext.scrape(metrics_url), "mf_worker_head_points") > 0:
            await asyncio.sleep(0.5)

    try:
        for r in range(0, 360, 60):
            await send_rounds(r, 60)
        await settle()
        procs.wait_idle([worker.pid], max_wait=180.0)  # the prefill's cuts and RocksDB flushes are done
        idle = procs.idle_rates({"w": worker.pid}, 5.0)["w"]
        bytes0 = rocks.kafka_topic_sizes(stack.kafka_dir)
        cpu0, blocks0, messages0, started = procs.proc_cpu(worker.pid), written(), messages, time.monotonic()
        threads0 = procs.thread_cpu(worker.pid)
        rounds = cuts * cut_points
        for r in range(360, 360 + rounds):
            await send_rounds(r, 1)
            await asyncio.sleep(max(0.0, started + (r - 359) * cut_interval_s / cut_points - time.monotonic()))
        await settle()
        procs.wait_idle([worker.pid], max_wait=180.0)
        elapsed = time.monotonic() - started
        cpu = procs.proc_cpu(worker.pid) - cpu0 - idle * elapsed
        threads = {tid: c - threads0.get(tid, 0.0) for tid, c in procs.thread_cpu(worker.pid).items()}
        series_cuts = written() - blocks0
        bytes1 = rocks.kafka_topic_sizes(stack.kafka_dir)
    finally:
        await producer.stop()
    return {"series": n_series, "cut_points": cut_points, "compression": compression, "points": n_series * rounds,
            "series_cuts": series_cuts,
            "worker_cpu_s_net": round(cpu, 3), "idle_rate": round(idle, 4), "elapsed_s": round(elapsed, 1),
            "messages": messages - messages0,
            "points_per_message": round(n_series * rounds / max(1, messages - messages0)),
            # The event loop's thread, and the busiest other one: Faust's Kafka consumer thread (idle included).
            "main_thread_cpu_s": round(threads.get(worker.pid, 0.0), 3),
            "consumer_thread_cpu_s": round(max((c for t, c in threads.items() if t != worker.pid), default=0.0), 3),
            "us_per_series_cut_incl_points": round(cpu / max(1.0, series_cuts) * 1e6, 1),
            "points_per_cpu_s": round(n_series * rounds / max(cpu, 1e-9)),
            # Kafka bytes (RF 1, log segments) per measured point: what the worker writes, and mf.points itself.
            "kafka_bytes_per_point": _bytes_per_point(bytes0, bytes1, n_series * rounds, stack.topic_prefix)}


def _bytes_per_point(before: dict[str, int], after: dict[str, int], points: int, prefix: str) -> dict[str, float]:
    grown = {t: after.get(t, 0) - before.get(t, 0) for t in after}
    out = {t: round(b / points, 2) for t, b in sorted(grown.items()) if b > 0}
    out["worker_total"] = round(sum(b for t, b in grown.items() if t.endswith("-changelog")) / points, 2)
    return out


if __name__ == "__main__":
    main()
