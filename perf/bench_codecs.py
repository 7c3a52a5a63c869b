"""Chunk codec benchmark: bytes/point and encode/decode throughput per workload.

    .venv/bin/python perf/bench_codecs.py [--quick] [--seed N]

Workloads (one chunk per series, every codec encodes the same chunks):
  A-720 / A-120  `metricsflow load` data (metricsflow.workload.RandomWalk): random
                 walk from U(0,100), N(0,1) steps, clamped to [0,100], rounded to
                 2 decimals, one point every 10 s; chunks of 720 / 120 points.
  B-jitter       node-exporter-like mix (constants, counters, gauges) scraped every
                 15 s with independent uniform +-3 ms jitter on each timestamp.
  B-prom         the same scrapes after Prometheus' timestamp alignment (a scrape
                 within 2 ms of the expected time is stored at the expected time).
  B-real         tests/fixtures/codecs/node_exporter_sample.npz: 512 series from a
                 real node-exporter 1.5 scraped by Prometheus 2.42 every 1 s.
Rollups (--rollups runs only this part): the 1m and 1h rollup blocks of A (1,000
series x 720 points, one 2 h block each) and B-real, in the current format and in
format version 1 (re-created here as the "before" reference), as bytes per raw
point, with encode/decode CPU-µs per block (fastest of the rounds).
The "entropy" column is a reference floor: for A the empirical entropy of the
rounded steps (the spec's figure); for B the plug-in entropy of each series'
value deltas plus that of the timestamp residuals from the 15 s grid.
Throughput is points per CPU-second of this process, single thread, fastest of 7
interleaved rounds (--quick: 1). Ends with one JSON line holding every figure.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cramjam
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from metricsflow import codecs, rollup  # noqa: E402
from metricsflow.workload import INTERVAL_MS, RandomWalk  # noqa: E402

Chunk = tuple[np.ndarray, np.ndarray]
T0_MS = 1_764_000_000_000
FIXTURE = ROOT / "tests" / "fixtures" / "codecs" / "node_exporter_sample.npz"
VICTORIA_METRICS_A = 1.36  # B/point reported by VictoriaMetrics for this kind of data


def workload_a(seed: int, n_series: int, n_points: int) -> list[Chunk]:
    """The exact generator behind `metricsflow load` (metricsflow/workload.py)."""
    values = RandomWalk(n_series, seed).rounds(n_points).T
    ts = T0_MS + INTERVAL_MS * np.arange(n_points, dtype=np.int64)
    return [(ts.copy(), np.ascontiguousarray(row)) for row in values]


def entropy_bytes(samples: np.ndarray) -> float:
    """Plug-in entropy of the empirical distribution, in bytes per sample."""
    if samples.size == 0:
        return 0.0
    _, counts = np.unique(samples, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() / 8)


def entropy_a(chunks: list[Chunk]) -> float:
    steps = np.concatenate([np.rint(np.diff(v) * 100).astype(np.int64) for _, v in chunks])
    return entropy_bytes(steps)


def _scrape_times(rng: np.random.Generator, n: int, aligned: bool) -> np.ndarray:
    grid = T0_MS + 15_000 * np.arange(n, dtype=np.int64)
    actual = grid + rng.integers(-3, 4, n)
    if not aligned:
        return actual
    out = actual.copy()
    for i in range(1, n):  # Prometheus scrape loop: snap to previous + interval within 2 ms
        expected = out[i - 1] + 15_000
        out[i] = expected if abs(actual[i] - expected) <= 2 else actual[i]
    return out


def _node_exporter_host(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Value columns modelled on one node-exporter target (proportions from B-real)."""
    cols: list[np.ndarray] = []
    for _ in range(30):  # info metrics, sizes, limits: constant
        cols.append(np.full(n, float(rng.choice([1.0, 0.0, rng.integers(1, 2**40) * 4096.0]))))
    for _ in range(6):  # error/drop counters: rare +1
        cols.append(np.cumsum(rng.random(n) < 0.01).astype(np.float64) + rng.integers(0, 50))
    for _ in range(4):  # packet counters
        packets = np.cumsum(rng.poisson(rng.uniform(5, 500), n))
        cols.append(packets.astype(np.float64) + rng.integers(1_000_000))
    for _ in range(2):  # byte counters
        octets = np.cumsum(np.rint(rng.lognormal(9, 1, n)))
        cols.append(octets + rng.integers(1_000_000_000))
    for _ in range(4):  # node_cpu_seconds_total: USER_HZ ticks / 100
        ticks = np.cumsum(rng.binomial(1500, rng.uniform(0.01, 0.9), n))
        cols.append(ticks / 100.0)
    for _ in range(3):  # load averages, temperatures: slow 2-decimal gauges
        cols.append(np.round(np.abs(np.cumsum(rng.normal(0, 0.05, n)) + rng.uniform(0, 4)), 2))
    for _ in range(3):  # memory gauges in pages, changing on ~30% of scrapes
        moves = (rng.random(n) < 0.3) * rng.integers(-300, 300, n)
        cols.append((rng.integers(1_000_000, 4_000_000) + np.cumsum(moves)) * 4096.0)
    cols.append(np.round(np.abs(rng.normal(0.012, 0.002, n)), 9))  # scrape_duration_seconds
    return cols


def workload_b(rng: np.random.Generator, n_hosts: int, n_points: int, aligned: bool) -> list[Chunk]:
    chunks: list[Chunk] = []
    for _ in range(n_hosts):
        ts = _scrape_times(rng, n_points, aligned)  # one scrape timestamps every series
        chunks.extend((ts, col) for col in _node_exporter_host(rng, n_points))
    return chunks


def workload_real() -> list[Chunk]:
    data = np.load(FIXTURE)
    return list(zip(data["timestamps_ms"], data["values"], strict=True))


def entropy_b(chunks: list[Chunk], step_ms: int) -> float:
    total_bits = 0.0
    for ts, v in chunks:
        total_bits += 8 * entropy_bytes(np.diff(v)) * (v.size - 1)
        residuals = ts - ts[0] - step_ms * np.arange(ts.size)
        total_bits += 8 * entropy_bytes(residuals) * ts.size
    return total_bits / 8 / sum(v.size for _, v in chunks)


def _cpu_seconds(run: Callable[[], object]) -> float:
    start = time.process_time()
    run()
    return time.process_time() - start


def _encode_all(chunks: list[Chunk], name: str) -> list[bytes]:
    return [codecs.encode(ts, v, name) for ts, v in chunks]


def _decode_all(blocks: list[bytes]) -> list[Chunk]:
    return [codecs.decode(b) for b in blocks]


def measure(chunks: list[Chunk], repeat: int) -> dict[str, dict[str, float]]:
    """Size and best-of-``repeat`` CPU time per codec, the codecs' timings interleaved.

    CPU time of this process, not wall time: the shared 2-vCPU VM runs other jobs (load
    4-6), and wall time measured them. Rounds alternate between codecs so each sees the
    same neighbours; a codec's figure is its fastest round.
    """
    points = sum(v.size for _, v in chunks)
    blocks: dict[str, list[bytes]] = {}
    for name in codecs.CODECS:
        blocks[name] = [codecs.encode(ts, v, name) for ts, v in chunks]
        for (ts, v), block in zip(chunks, blocks[name], strict=True):  # a wrong codec's speed is worthless
            t2, v2 = codecs.decode(block)
            assert np.array_equal(t2, ts) and np.array_equal(v2.view(np.uint64), v.view(np.uint64)), name
    enc = dict.fromkeys(codecs.CODECS, float("inf"))
    dec = dict.fromkeys(codecs.CODECS, float("inf"))
    for _ in range(repeat):
        for name in codecs.CODECS:
            enc[name] = min(enc[name], _cpu_seconds(partial(_encode_all, chunks, name)))
            dec[name] = min(dec[name], _cpu_seconds(partial(_decode_all, blocks[name])))
    return {
        name: {
            "bytes_per_point": round(sum(map(len, blocks[name])) / points, 4),
            "encode_mpts": round(points / enc[name] / 1e6, 3),
            "decode_mpts": round(points / dec[name] / 1e6, 3),
        }
        for name in codecs.CODECS
    }


def encode_rollup_v1(r: rollup.Rollup) -> bytes:
    """Rollup format version 1, the "before" reference: zstd of 8 raw 64-bit columns + digests."""
    cols = np.concatenate([r.starts.astype("<i8").view("<f8"), *(r.column(c).astype("<f8") for c in rollup.COLUMNS)])
    packed = bytes(cramjam.zstd.compress(cols.tobytes(), 1))
    out = [struct.pack("<BBI", 1, 1 if r.digests is not None else 0, len(r)), struct.pack("<I", len(packed)), packed]
    for d in r.digests or []:
        raw = d.to_bytes()
        out += [struct.pack("<I", len(raw)), raw]
    return b"".join(out)


def measure_rollups(chunks: list[Chunk], window_ms: int, repeat: int) -> dict[str, float]:
    """Bytes per raw point and CPU-µs per block of both rollup formats for one tier."""
    points = sum(v.size for _, v in chunks)
    rollups = [rollup.compute(ts, v, window_ms) for ts, v in chunks]
    encoders = {"v1": encode_rollup_v1, "v2": rollup.encode}
    blocks = {name: [enc(r) for r in rollups] for name, enc in encoders.items()}
    for r, block in zip(rollups, blocks["v2"], strict=True):  # a wrong encoding's size is worthless
        back = rollup.decode(block, window_ms)
        assert np.array_equal(back.starts, r.starts)
        assert all(np.array_equal(back.column(c).view(np.uint64), r.column(c).view(np.uint64)) for c in rollup.COLUMNS)
    enc = dict.fromkeys(encoders, float("inf"))
    dec = dict.fromkeys(encoders, float("inf"))
    for _ in range(repeat):
        for name, encoder in encoders.items():
            enc[name] = min(enc[name], _cpu_seconds(lambda e=encoder: [e(r) for r in rollups]))
            dec[name] = min(dec[name], _cpu_seconds(lambda b=blocks[name]: [rollup.decode(x, window_ms) for x in b]))
    out: dict[str, float] = {"windows_per_block": round(sum(map(len, rollups)) / len(rollups), 1)}
    for name in encoders:
        out[f"{name}_bytes_per_point"] = round(sum(map(len, blocks[name])) / points, 4)
        out[f"{name}_encode_us_per_block"] = round(enc[name] / len(rollups) * 1e6, 1)
        out[f"{name}_decode_us_per_block"] = round(dec[name] / len(rollups) * 1e6, 1)
    return out


def rollup_section(seed: int, quick: bool) -> dict[str, object]:
    repeat = 1 if quick else 5
    chunks_a = workload_a(seed, 200 if quick else 1000, 720)
    results: dict[str, object] = {}
    print("\n## Rollup blocks: bytes per raw point, CPU-µs per block (v1 = format version 1)")
    print(f"{'workload':<9}{'tier':<5}{'win/blk':>8}{'chunk B/pt':>11}{'v1 B/pt':>9}{'v2 B/pt':>9}"
          f"{'v1 enc':>8}{'v2 enc':>8}{'v1 dec':>8}{'v2 dec':>8}")
    for wname, chunks in (("A-720", chunks_a), ("B-real", workload_real())):
        points = sum(v.size for _, v in chunks)
        chunk_bpp = round(sum(len(codecs.encode(ts, v)) for ts, v in chunks) / points, 4)
        for tier, window_ms in rollup.TIERS_MS.items():
            m = measure_rollups(chunks, window_ms, repeat)
            results[f"{wname}/{tier}"] = {"chunk_bytes_per_point": chunk_bpp, **m}
            print(f"{wname:<9}{tier:<5}{m['windows_per_block']:>8}{chunk_bpp:>11.3f}{m['v1_bytes_per_point']:>9.3f}"
                  f"{m['v2_bytes_per_point']:>9.3f}{m['v1_encode_us_per_block']:>8.0f}{m['v2_encode_us_per_block']:>8.0f}"
                  f"{m['v1_decode_us_per_block']:>8.0f}{m['v2_decode_us_per_block']:>8.0f}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer series, one timing run")
    parser.add_argument("--rollups", action="store_true", help="only the rollup-block section")
    parser.add_argument("--seed", type=int, default=20261126)
    args = parser.parse_args()
    if args.rollups:
        print(json.dumps({"bench": "rollups", "tiers": rollup_section(args.seed, args.quick)}))
        return
    scale, repeat = (1, 1) if args.quick else (4, 7)
    rng = np.random.default_rng(args.seed)
    workloads: dict[str, tuple[list[Chunk], float, str]] = {}
    a720 = workload_a(args.seed, 50 * scale, 720)
    workloads["A-720"] = (a720, entropy_a(a720), "entropy of rounded steps")
    a120 = workload_a(args.seed + 1, 300 * scale, 120)
    workloads["A-120"] = (a120, entropy_a(a120), "entropy of rounded steps")
    for name, aligned in (("B-jitter", False), ("B-prom", True)):
        chunks = workload_b(rng, 2 * scale, 720, aligned)
        workloads[name] = (chunks, entropy_b(chunks, 15_000), "plug-in entropy, deltas + ts residuals")
    real = workload_real()
    workloads["B-real"] = (real, entropy_b(real, 1_000), "plug-in entropy, deltas + ts residuals")

    results: dict[str, dict[str, object]] = {}
    for wname, (chunks, entropy, what) in workloads.items():
        points = sum(v.size for _, v in chunks)
        print(f"\n## {wname}: {len(chunks)} chunks, {points} points; {what}: {entropy:.3f} B/point")
        print(f"{'codec':<15}{'B/point':>9}{'x entropy':>11}{'enc Mpt/s':>11}{'dec Mpt/s':>11}")
        row: dict[str, object] = {"points": points, "entropy_bytes_per_point": round(entropy, 4)}
        for cname, m in measure(chunks, repeat).items():
            row[cname] = m
            ratio = m["bytes_per_point"] / entropy if entropy else float("nan")
            print(
                f"{cname:<15}{m['bytes_per_point']:>9.3f}{ratio:>11.2f}"
                f"{m['encode_mpts']:>11.2f}{m['decode_mpts']:>11.2f}"
            )
        if wname.startswith("A"):
            print(f"(VictoriaMetrics reports {VICTORIA_METRICS_A} B/point on such data)")
        results[wname] = row
    rollups = rollup_section(args.seed, args.quick)
    print(json.dumps({"bench": "codecs", "default_codec": codecs.DEFAULT_CODEC, "workloads": results,
                      "rollups": rollups}))


if __name__ == "__main__":
    main()
