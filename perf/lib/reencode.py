"""Sizes of a stored worker dir, re-encoded with the current formats, as if every block were sealed.

Folds every (series, block) of a stopped (or copied) worker's chunks and segments tables the
way a seal does, re-encodes the samples with each chunk codec named into a fresh RocksDB
opened with Faust's options (flush + compact, then `.sst` + `.log` bytes), and computes the
1m and 1h rollups of every block. A run made with older formats can so be re-measured
without repeating it (perf/bench_real_node.py keeps its whole root with MF_BENCH_KEEP=1):

    python -m perf.lib.reencode /tmp/mf-bench-real-node/workers --codecs decimal decimal_sparse
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from metricsflow import codecs, rollup


def _blocks(worker_dir: Path) -> list[tuple[str, bytes, np.ndarray, np.ndarray]]:
    """Every (series, block) as a seal would fold it: chunk, then segments in key order, later wins."""
    from faust.stores.rocksdb import RocksDBOptions
    from rocksdict import AccessType, Rdict

    from perf.lib.rocks import table_of

    parts: dict[tuple[str, bytes], list[tuple[bytes, bytes]]] = {}
    for db_dir in sorted(worker_dir.rglob("*.db")):
        if not db_dir.is_dir() or table_of(db_dir) not in ("chunks", "segments"):
            continue
        db_name = db_dir.name.replace("segments", "chunks")
        db = Rdict(str(db_dir), options=RocksDBOptions().as_options(), access_type=AccessType.read_only())
        for key, value in db.items():
            if isinstance(key, bytes) and len(key) in (16, 24) and not key.startswith(b"__faust"):
                parts.setdefault((db_name, key[:16]), []).append((key, value))  # 16: chunk, 24: segment
        db.close()
    out = []
    for (db_name, key), stored in parts.items():
        decoded = [codecs.decode(value) for _, value in sorted(stored)]  # the chunk key sorts first
        ts = np.concatenate([t for t, _ in decoded])
        vals = np.concatenate([v for _, v in decoded])
        order = np.argsort(ts, kind="stable")
        ts, vals = ts[order], vals[order]
        last = np.append(ts[1:] != ts[:-1], True)  # of equal timestamps keep the latest written
        out.append((db_name, key, ts[last], vals[last]))
    return out


def _on_disk(rows: list[tuple[str, bytes, bytes]]) -> int:
    from faust.stores.rocksdb import RocksDBOptions
    from rocksdict import Rdict

    from perf.lib.rocks import table_of
    from tables.rocks_options import table_options, use_zstd

    use_zstd()  # the worker's own options

    root = Path(tempfile.mkdtemp(prefix="mf-reencode-"))
    try:
        dbs: dict[str, Rdict] = {}
        for name, key, value in rows:
            if name not in dbs:
                options = table_options(table_of(Path(name))) or {}
                dbs[name] = Rdict(str(root / name), options=RocksDBOptions(**options).as_options())
            dbs[name][key] = value
        for db in dbs.values():
            db.flush(True)
            db.compact_range(None, None)
            db.close()
        return sum(f.stat().st_size for f in root.rglob("*") if f.suffix in (".sst", ".log"))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(worker_dir: Path, codec_names: list[str]) -> dict[str, object]:
    decoded = _blocks(worker_dir)
    points = sum(ts.size for _, _, ts, _ in decoded) or 1
    out: dict[str, object] = {"blocks": len(decoded), "points": points}
    for codec in codec_names:
        rows = [(name, key, codecs.encode(ts, vals, codec)) for name, key, ts, vals in decoded]
        for (_, _, ts, vals), (_, _, blob) in zip(decoded, rows, strict=True):
            got_ts, got_vals = codecs.decode(blob)
            if not (np.array_equal(got_ts, ts) and np.array_equal(got_vals.view(np.uint64), vals.view(np.uint64))):
                raise AssertionError(f"{codec} does not round-trip a stored chunk")
        out[codec] = {"value_bytes_per_point": round(sum(len(b) for *_, b in rows) / points, 4),
                      "on_disk_bytes_per_point": round(_on_disk(rows) / points, 4)}
    for tier, window_ms in rollup.TIERS_MS.items():
        size = sum(len(rollup.encode(rollup.compute(ts, vals, window_ms))) for _, _, ts, vals in decoded)
        out[f"rollup_{tier}_value_bytes_per_point"] = round(size / points, 4)
    out["rollup_format_version"] = rollup.ROLLUP_FORMAT_VERSION
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("worker_dir", type=Path)
    ap.add_argument("--codecs", nargs="+", default=[codecs.DEFAULT_CODEC], choices=sorted(codecs.CODECS))
    a = ap.parse_args()
    if not a.worker_dir.is_dir():
        sys.exit(f"no such directory: {a.worker_dir}")
    print(json.dumps(measure(a.worker_dir, a.codecs)))


if __name__ == "__main__":
    main()
