#!/usr/bin/env python3
"""In process: CPU per sealed (series, block) in each coding step of a seal.

    python perf/bench_seal_phases.py [--series 512] [--points 720] [--batch 16] [--repeat 5]

--series blocks of the `metricsflow load` workload (``workload.RandomWalk``: --points
points at 10 s, two decimals; fewer than 720 make the short blocks a series' first block
or a backfill's last one seal, whose 1m rollups have at most 16 windows), coded --batch
at a time as ``WorkerStorage._fold_many`` codes them: the raw chunks
(``codecs.encode_many``), the 1m and 1h rollups computed (``rollup.compute_many``) and
coded (``rollup.encode_many``), and one chunk decoded. The best of --repeat passes per
step (the machine's speed drifts); RocksDB writes and the segment reads of a real seal
are not in it (perf/bench_seal_batches.py has the whole seal). Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from metricsflow import codecs, rollup  # noqa: E402
from metricsflow.workload import RandomWalk  # noqa: E402

BLOCK_MS = 7_200_000
T0 = 1_764_000_000_000 // BLOCK_MS * BLOCK_MS


def _best_us_per_block(step: Callable[[int, int], object], n: int, batch: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        cpu = time.process_time()
        for i in range(0, n, batch):
            step(i, min(n, i + batch))
        best = min(best, time.process_time() - cpu)
    return best / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=512)
    ap.add_argument("--points", type=int, default=720, help="points per block (720: a full 2 h block)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = args.series
    points = args.points
    walk = RandomWalk(n).rounds(points)
    ts = T0 + np.arange(points, dtype=np.int64) * 10_000
    blocks = [(ts.copy(), walk[:, i].copy()) for i in range(n)]
    plain = [False] * n
    chunks = codecs.encode_many(blocks)
    tiers = {tier: rollup.compute_many(blocks, ms, plain) for tier, ms in rollup.TIERS_MS.items()}
    steps: dict[str, Callable[[int, int], object]] = {
        "chunk_encode": lambda a, b: codecs.encode_many(blocks[a:b]),
        "chunk_decode": lambda a, b: [codecs.decode(c) for c in chunks[a:b]],
    }
    for tier, ms in rollup.TIERS_MS.items():
        steps[f"rollup_{tier}_compute"] = lambda a, b, ms=ms: rollup.compute_many(blocks[a:b], ms, plain[a:b])
        steps[f"rollup_{tier}_encode"] = lambda a, b, tier=tier: rollup.encode_many(tiers[tier][a:b])
    figures = {name: round(_best_us_per_block(step, n, args.batch, args.repeat), 1) for name, step in steps.items()}
    for name, us in figures.items():
        print(f"{name:22s} {us:7.1f} CPU us per (series, block)")
    print(f"{'total':22s} {sum(figures.values()):7.1f}")
    sizes = {"chunk": sum(map(len, chunks)) / (n * points)}
    sizes.update({f"rollup_{tier}": sum(map(len, rollup.encode_many(r))) / (n * points) for tier, r in tiers.items()})
    print("bytes per raw point: " + ", ".join(f"{k} {v:.3f}" for k, v in sizes.items()))
    print(json.dumps({"bench": "seal_phases", "series": n, "points": points, "batch": args.batch,
                      "us_per_block": figures, "bytes_per_point": {k: round(v, 4) for k, v in sizes.items()}},
                     separators=(",", ":")))


if __name__ == "__main__":
    main()
