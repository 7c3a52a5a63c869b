#!/usr/bin/env python3
"""In process: what the worker's RocksDB writes of a load cost, with and without the write-ahead log,
what the series table's flush costs at each zstd level and the segments table's with each codec.

    python perf/bench_table_writes.py [--series 10000] [--cuts 8] [--partitions 8] [--rounds 2]

The write pattern of the M load (``bench_e2e.py --size M``) on one worker: per cut a write batch
of one ~1 KB segment per series into each partition's segments DB, then per series at its seal
the chunk, the 1m and 1h rollup blocks and the deletes of its segments, then every memtable
flushed, as the worker's stop or ``/internal/force_flush`` does. Each DB is opened as the worker
opens it (Faust's ``RocksDBOptions`` with ``tables/rocks_options``), once with RocksDB's
write-ahead log (Faust's default) and once without (``skip_wal``, what the worker runs); process
CPU (all threads, RocksDB's flush threads included) for the writes and for the flush. Then the
series table: the announcements of the load's series (``series_batch`` records of the load's
labels, 20 series each) flushed at several zstd levels, CPU and SST bytes per series.
Last, the segments table: the load's real segments (``tables.segments.encode_spans`` of 30 points per series
per cut, raw decimal as the worker writes them, a 300 s cut of 10 s points, --segment-cuts cuts;
--segment-points 720 --segment-cuts 1 is bench_e2e's bulk cut) put as a cut puts them and flushed, with zstd
(RocksDB's default level) and with LZ4 in 4, 16 (what the table uses) and 64 KB blocks: CPU and SST bytes per
point, and the CPU of a read of one segment from the table opened afresh (its block decompressed whole).
Prints tables; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from faust.stores.rocksdb import RocksDBOptions  # noqa: E402
from rocksdict import WriteBatch  # noqa: E402

from metricsflow import series_batch  # noqa: E402
from metricsflow.workload import RandomWalk, series_labels  # noqa: E402
from tables.rocks_options import BLOCK_SIZE, LZ4, ZSTD_LEVEL, skip_wal, table_options, use_zstd  # noqa: E402
from tables.segments import encode_spans  # noqa: E402

SEGMENT_BYTES, CHUNK_BYTES, ROLLUP_1M_BYTES, ROLLUP_1H_BYTES = 1000, 400, 350, 60  # the M run's sizes
SERIES_PER_RECORD = 20


class _Values:
    """Values a third random, two thirds zeros: about as compressible as the worker's."""

    def __init__(self) -> None:
        self._noise = os.urandom(1 << 20)

    def __call__(self, size: int, i: int) -> bytes:
        at = (i * 7919) % (len(self._noise) - size)
        return self._noise[at:at + size // 3] + bytes(size - size // 3)


def _load_writes(root: Path, opener: Callable[[RocksDBOptions, Path], Any],
                 args: argparse.Namespace) -> dict[str, float]:
    values = _Values()
    per_partition = args.series // args.partitions
    dbs = {table: [opener(RocksDBOptions(**(table_options(table) or {})), root / f"{table}-{p}.db")
                   for p in range(args.partitions)]
           for table in ("segments", "chunks", "rollup_1m", "rollup_1h")}
    started = time.process_time()
    for cut in range(args.cuts):
        for segments in dbs["segments"]:
            batch = WriteBatch(raw_mode=True)
            for s in range(per_partition):
                batch.put(b"seg%d_%d" % (s, cut), values(SEGMENT_BYTES, s * args.cuts + cut))
            segments.write(batch)
    for p in range(args.partitions):
        for s in range(per_partition):
            key = b"block%d" % s
            dbs["chunks"][p][key] = values(CHUNK_BYTES, s)
            dbs["rollup_1m"][p][key] = values(ROLLUP_1M_BYTES, s + 1)
            dbs["rollup_1h"][p][key] = values(ROLLUP_1H_BYTES, s + 2)
            for cut in range(args.cuts):
                del dbs["segments"][p][b"seg%d_%d" % (s, cut)]
    written = time.process_time()
    for table in dbs.values():
        for db in table:
            db.flush(True)
    flushed = time.process_time()
    for table in dbs.values():
        for db in table:
            db.close()
    return {"writes_cpu_s": written - started, "flush_cpu_s": flushed - written}


def _series_records(series: int) -> list[tuple[bytes, bytes]]:
    infos = [series_batch.encode_info("default", dict(sorted(labels.items())), 0, 1_764_000_000_000)
             for labels in series_labels(max(1, series // 10))][:series]
    ids = [(i + 1) * 0x9E3779B97F4A7C15 % (1 << 64) for i in range(len(infos))]
    records: list[tuple[bytes, bytes]] = []
    for at in range(0, len(infos), SERIES_PER_RECORD):
        records += series_batch.encode_batches(ids[at:at + SERIES_PER_RECORD], infos[at:at + SERIES_PER_RECORD])
    return records


def _series_flush(root: Path, records: list[tuple[bytes, bytes]], level: int, partitions: int) -> dict[str, float]:
    options = {**(table_options("series") or {}), ZSTD_LEVEL: level}
    cpu = 0.0
    size = 0
    for p in range(partitions):
        path = root / f"series-{level}-{p}.db"
        db = RocksDBOptions(**options).open(path)
        for key, value in records[p::partitions]:
            db[key] = value
        started = time.process_time()
        db.flush(True)
        cpu += time.process_time() - started
        db.close()
        size += sum(f.stat().st_size for f in path.glob("*.sst"))
    return {"flush_cpu_s": cpu, "sst_bytes": size}


READS = 2_000


def _segment_values(series: int, cuts: int, points: int = 30) -> list[list[bytes]]:
    """Per cut, the segment of every series: ``points`` of the load workload at 10 s."""
    walk = RandomWalk(series).rounds(cuts * points)
    out = []
    for cut in range(cuts):
        ts = 1_764_000_000_000 + (cut * points + np.arange(points, dtype=np.int64)) * 10_000
        values = np.ascontiguousarray(walk[cut * points:(cut + 1) * points].T).ravel()
        out.append(encode_spans(np.tile(ts, series), values, np.arange(series) * points, np.full(series, points),
                                decimal=True))
    return out


def _segments_flush(root: Path, values: list[list[bytes]], options: dict[str, int]) -> dict[str, float]:
    path = root / "segments.db"
    db = RocksDBOptions(**options).open(path)
    started = time.process_time()
    for cut, segs in enumerate(values):
        batch = WriteBatch(raw_mode=True)
        for s, value in enumerate(segs):
            batch.put(b"seg%d_%d" % (s, cut), value)
        db.write(batch)
    written = time.process_time()
    db.flush(True)
    flushed = time.process_time()
    db.close()
    size = sum(f.stat().st_size for f in path.glob("*.sst"))
    # A query's read of one series' segment from a table opened afresh (nothing cached yet): the
    # block it lies in is read and decompressed whole, so the block size is a read's cost.
    db = RocksDBOptions(**options).open(path)
    rng = np.random.default_rng(5)
    wanted = [b"seg%d_%d" % (s, c) for s, c in zip(rng.integers(0, len(values[0]), READS).tolist(),
                                                     rng.integers(0, len(values), READS).tolist(), strict=True)]
    read_from = time.process_time()
    found = sum(db.get(key) is not None for key in wanted)
    read = time.process_time() - read_from
    db.close()
    assert found == READS
    shutil.rmtree(path)
    return {"writes_cpu_s": written - started, "flush_cpu_s": flushed - written, "sst_bytes": size,
            "read_us": read / READS * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--cuts", type=int, default=8)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--levels", default="19,12,9,6,3", help="zstd levels of the series table to flush")
    ap.add_argument("--segment-cuts", type=int, default=24, help="cuts of 30 points per series (24: a 2 h block)")
    ap.add_argument("--segment-points", type=int, default=30,
                    help="points per series per cut (720 with --segment-cuts 1: bench_e2e's bulk cut)")
    args = ap.parse_args()
    use_zstd()
    with_wal = RocksDBOptions.open  # Faust's, before skip_wal replaces it
    skip_wal()
    without_wal = RocksDBOptions.open
    root = Path(tempfile.mkdtemp(prefix="mf-table-writes-"))
    try:
        runs: dict[str, list[dict[str, float]]] = {"wal": [], "no_wal": []}
        for r in range(args.rounds):  # alternated: the machine's speed drifts
            for mode, opener in (("wal", with_wal), ("no_wal", without_wal)):
                where = root / f"{mode}-{r}"
                where.mkdir()
                runs[mode].append(_load_writes(where, opener, args))
                shutil.rmtree(where)
                got = runs[mode][-1]
                print(f"round {r + 1} {mode:6s}: writes {got['writes_cpu_s']:.2f} CPU-s, "
                      f"flush {got['flush_cpu_s']:.2f}", flush=True)
        mb = args.series * args.cuts * SEGMENT_BYTES / 1e6
        print(f"\nthe worker's writes of {args.series:,} series x {args.cuts} cuts ({mb:.0f} MB of segments), "
              f"best of {args.rounds}:")
        best = {mode: {k: min(run[k] for run in got) for k in got[0]} for mode, got in runs.items()}
        for mode, got in best.items():
            print(f"  {mode:6s} writes {got['writes_cpu_s']:.2f} + flush {got['flush_cpu_s']:.2f} = "
                  f"{got['writes_cpu_s'] + got['flush_cpu_s']:.2f} CPU-s")
        records = _series_records(args.series)
        levels = {}
        print(f"\nseries table, {args.series:,} load series in {len(records)} records, {args.partitions} partitions:")
        for level in [int(x) for x in args.levels.split(",")]:
            got = _series_flush(root, records, level, args.partitions)
            levels[level] = {"flush_us_per_series": round(got["flush_cpu_s"] / args.series * 1e6, 1),
                             "sst_bytes_per_series": round(got["sst_bytes"] / args.series, 1)}
            print(f"  zstd {level:2d}: flush {levels[level]['flush_us_per_series']:7.1f} CPU µs per series, "
                  f"{levels[level]['sst_bytes_per_series']:5.1f} B per series on disk", flush=True)
        values = _segment_values(args.series, args.segment_cuts, args.segment_points)
        points = args.series * args.segment_cuts * args.segment_points
        codecs = {"zstd": {}, "lz4": {LZ4: 1}, "lz4 16 KB": {LZ4: 1, BLOCK_SIZE: 16 * 1024},
                  "lz4 64 KB": {LZ4: 1, BLOCK_SIZE: 64 * 1024}}
        assert table_options("segments") in codecs.values(), "the segments table's options changed: update this bench"
        flushes: dict[str, list[dict[str, float]]] = {name: [] for name in codecs}
        for _ in range(args.rounds):
            for name, options in codecs.items():
                flushes[name].append(_segments_flush(root, values, options))
        by_codec = {name: {"writes_ns_per_point": round(min(r["writes_cpu_s"] for r in got) / points * 1e9, 1),
                           "flush_ns_per_point": round(min(r["flush_cpu_s"] for r in got) / points * 1e9, 1),
                           "sst_bytes_per_point": round(got[0]["sst_bytes"] / points, 2),
                           "cold_read_us": round(min(r["read_us"] for r in got), 1)}
                    for name, got in flushes.items()}
        print(f"\nsegments table, {args.series:,} series x {args.segment_cuts} cuts of {args.segment_points} points, "
              f"best of {args.rounds}:")
        for name, got in by_codec.items():
            print(f"  {name:9s}: writes {got['writes_ns_per_point']:5.1f} + flush {got['flush_ns_per_point']:5.1f} "
                  f"CPU ns per point, {got['sst_bytes_per_point']:5.2f} B per point on disk, a cold read of one "
                  f"segment {got['cold_read_us']:5.1f} CPU µs", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"bench": "table_writes", "series": args.series, "cuts": args.cuts, "partitions": args.partitions,
                      "load_writes_cpu_s": {m: {k: round(v, 3) for k, v in got.items()} for m, got in best.items()},
                      "series_table_by_zstd_level": levels, "segments_table_by_codec": by_codec},
                     separators=(",", ":")))


if __name__ == "__main__":
    main()
