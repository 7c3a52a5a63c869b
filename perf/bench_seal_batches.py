#!/usr/bin/env python3
"""In process: CPU per sealed (series, block) when a seal codes its series one at a time
and in batches (``WorkerStorage._fold_many``), interleaved in one process.

    python perf/bench_seal_batches.py [--series 2000] [--rounds 2] [--batches 1,4,8,16] [--shape backlog|backfill]

No Kafka, no Faust: one WorkerStorage over real RocksDB (the tests' LocalStore, no
changelog). Per round and batch size, --series series x one 2 h block of 10 s points
(720, a rounded random walk):
- backlog: written in three cuts as segments, then every block folded into its chunk and
  1m/1h rollups by ``_fold_many``, --batch series per call;
- backfill: all in one head whose blocks the horizon has passed, so the cut folds them
  straight from the head (``_write_head``), batches fixed at --batch series.
The bytes are the same whatever the batch (tests/test_batch_coding.py); only the CPU
differs. Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from bench_seal_and_query import _storage  # noqa: E402

import tables.storage as storage_module  # noqa: E402
from tables.storage import CutStats, WorkerStorage  # noqa: E402
from tests.test_storage_segments import BLOCK_MS, HOUR_MS, T0, Feed, P  # noqa: E402


async def _backlog(n: int, seed: int) -> WorkerStorage:
    storage, feed = _storage(), Feed()
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(0, BLOCK_MS, 10_000, dtype=np.int64)
    for part in np.array_split(np.arange(ts.size), 3):
        for sid in range(1, n + 1):
            feed.send(storage, sid, ts[part], np.round(50 + rng.normal(0, 1, part.size).cumsum(), 2))
        await storage.cut(P)
    return storage


def _seal_all(storage: WorkerStorage, batch: int) -> tuple[int, float]:
    """Fold every pending block, ``batch`` series per call: (blocks, CPU seconds)."""
    st = storage.state(P)
    block = min(st.pending)
    sids = sorted(st.pending[block])
    stats = CutStats()
    cpu = time.process_time()
    for i in range(0, len(sids), batch):
        storage._fold_many(st, block, sids[i:i + batch], None, stats)
    return stats.sealed, time.process_time() - cpu


async def _backfill(n: int, seed: int, batch: int) -> tuple[int, float]:
    """One cut folding n series' blocks straight from the head, ``batch`` series per fold."""
    storage, feed = _storage(), Feed()
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(0, BLOCK_MS, 10_000, dtype=np.int64)
    for sid in range(1, n + 1):
        feed.send(storage, sid, ts, np.round(50 + rng.normal(0, 1, ts.size).cumsum(), 2))
    feed.send(storage, n + 1, [T0 + BLOCK_MS + HOUR_MS], [1.0])  # the horizon passes the block
    saved = storage_module.SEAL_BATCH_FIRST, storage_module.SEAL_BATCH_MAX
    storage_module.SEAL_BATCH_FIRST = storage_module.SEAL_BATCH_MAX = batch
    try:
        cpu = time.process_time()
        stats = await storage.cut(P)
        return stats.sealed, time.process_time() - cpu
    finally:
        storage_module.SEAL_BATCH_FIRST, storage_module.SEAL_BATCH_MAX = saved


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batches", default="1,4,8,16")
    ap.add_argument("--shape", choices=["backlog", "backfill"], default="backlog")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    per_block: dict[int, list[float]] = {b: [] for b in batches}
    for r in range(args.rounds):
        for b in batches:  # interleaved: the machine's speed drifts
            if args.shape == "backfill":
                sealed, cpu = await _backfill(args.series, r, b)
            else:
                sealed, cpu = _seal_all(await _backlog(args.series, r), b)
            per_block[b].append(cpu / sealed * 1000)
            print(f"round {r} batch {b:3d}: {sealed} blocks, {per_block[b][-1]:.3f} CPU ms per (series, block)",
                  flush=True)
    summary = {str(b): round(statistics.median(v), 3) for b, v in per_block.items()}
    print("median CPU ms per (series, block) by batch: " + ", ".join(f"{b}: {v}" for b, v in summary.items()))
    print(json.dumps({"bench": "seal_batches", "shape": args.shape, "series": args.series, "rounds": args.rounds,
                      "cpu_ms_per_block": summary}, separators=(",", ":")))


if __name__ == "__main__":
    asyncio.run(main())
