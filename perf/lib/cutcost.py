"""Per-block cost of the worker's head cut, piece by piece (single thread, CPU time).

    python -m perf.lib.cutcost [--points 720] [--blocks 300]

For blocks of the TSBS-like data (2 decimals, 10 s apart) it times what
``tables.storage.WorkerStorage._write_blocks`` does for one (series, block):
chunk decode + merge (when the block already exists), chunk encode, rollup compute
and rollup encode for the 1m and 1h tiers. Prints one JSON line (µs per block and
per point). Used to explain the e2e profile and to size the capacity model.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from metricsflow import codecs, rollup
from metricsflow.samples import merge
from metricsflow.workload import RandomWalk


def _cpu(fn, reps: int) -> float:
    t0 = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=720)
    ap.add_argument("--blocks", type=int, default=300)
    a = ap.parse_args()
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
    out = {k: round(v, 3 if v < 10 else 1) for k, v in out.items()}
    out.update(points_per_block=n, blocks=a.blocks)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
